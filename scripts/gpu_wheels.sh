#!/usr/bin/env bash
# Wheels of the Python packages nmt needs that the GPU machine's image lacks (no internet there), for
# scripts/gpu_smoke.sh (docs/gpu_race.md "Smoke test (first GPU run)"). Run from anywhere pip reaches PyPI:
#   bash scripts/gpu_wheels.sh [DIR [NAME==VERSION ...]]   # default DIR: .whl (git-ignored: carry it)
# Extra pins are fetched too (e.g. pyarrow==26.0.1 if the image's pyarrow is older than datasets needs).
# The image has torch, sentencepiece, sacrebleu, tensorboard, matplotlib, tqdm, pyarrow, pandas, fsspec and
# huggingface_hub (Python 3.12, x86-64); these are the rest, pinned. A DIR that already holds another version
# of one of them is refused (two versions stop the install there); nothing is downloaded then.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.whl}
shift || true
pins=(hydra-core==1.3.8 omegaconf==2.3.1 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 importlib_metadata==8.7.0 "$@")
if grep -q '"entmax' pyproject.toml; then pins+=(entmax==1.3); fi
sdist=antlr4-python3-runtime==4.9.3   # only an sdist on PyPI: built here into a pure-Python wheel

norm() { echo "$1" | tr 'A-Z.-' 'a-z__'; }
for pin in "${pins[@]}" "$sdist"; do
  name=$(norm "${pin%%==*}") version=${pin##*==}
  for whl in "$dir"/*.whl; do
    [ -e "$whl" ] || continue
    base=$(basename "$whl"); have=$(norm "${base%%-*}"); rest=${base#*-}
    if [ "$have" = "$name" ] && [ "${rest%%-*}" != "$version" ]; then
      echo "gpu_wheels.sh: $whl is another version of $pin; remove it (or pass another DIR)" >&2
      exit 1
    fi
  done
done
mkdir -p "$dir"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$dir" "${pins[@]}"
python3 -m pip wheel -q --no-deps -w "$dir" "$sdist"
ls -l "$dir"/*.whl
echo "gpu_wheels.sh: $(ls "$dir"/*.whl | wc -l) wheels, $(du -sh "$dir" | cut -f1) in $dir (carry it to the GPU machine)"
