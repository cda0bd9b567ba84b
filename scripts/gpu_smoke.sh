#!/usr/bin/env bash
# The first GPU run in one command (docs/gpu_race.md "Smoke test (first GPU run)"). From the project root:
#   bash scripts/gpu_smoke.sh OUT [gpu_smoke.py options]
# Installs the wheels of ${NMT_WHEELS:-.whl} (made by scripts/gpu_wheels.sh where pip reaches PyPI) into
# ${NMT_SITE:-/tmp/nmt_site} and puts that first on PYTHONPATH, then runs scripts/gpu_smoke.py OUT ...
# Without wheels it runs the smoke test on the packages already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
wheels=${NMT_WHEELS:-.whl}
start=$(date +%s.%N)
if compgen -G "$wheels/*.whl" >/dev/null; then
  site=${NMT_SITE:-/tmp/nmt_site}
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$wheels"/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  echo "gpu_smoke.sh: installed $(ls "$wheels"/*.whl | wc -l) wheels from $wheels into $site" >&2
fi
NMT_SMOKE_INSTALL_S=$(python3 -c "import time; print(round(time.time() - $start, 1))")
export NMT_SMOKE_INSTALL_S
exec python3 scripts/gpu_smoke.py "$@"
