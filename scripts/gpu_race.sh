#!/usr/bin/env bash
# nmt vs JoeyNMT 2.3.0 on one GPU, same data and budget (docs/gpu_race.md). From the project root:
#   bash scripts/gpu_race.sh OUT [RUN ...] [report] [--budget 300 ...]
# With OUT alone: every run, then the report (about 40 minutes on an H100: more than one device call).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -eq 1 ]; then
  set -- "$1" nmt_transformer nmt_rnn_luong joey_transformer nmt_transformer_base_mfu \
    nmt_rnn_bahdanau joey_rnn_luong joey_rnn_bahdanau report
fi
exec python3 scripts/gpu_race.py "$@"
