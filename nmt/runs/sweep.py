"""The finished runs below a folder (a multirun sweep, or any folder of runs): each run's metrics.json and
resolved config.yaml, as nmt-compare reads them."""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from nmt.runs.config import RunConfig

log = logging.getLogger("nmt.compare")


@dataclass
class Run:
    name: str           # path below the sweep directory, e.g. "2_local_p"
    path: Path
    metrics: dict
    config: RunConfig   # its resolved config.yaml


def natural_key(name: str) -> list:
    """"10_x" after "9_x": numbers compare as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def find_runs(sweep: Path) -> list[Run]:
    """Every directory below `sweep` with metrics.json and config.yaml (a finished nmt-train), in natural order."""
    runs = []
    for metrics in sweep.rglob("metrics.json"):
        run_dir = metrics.parent
        if not (run_dir / "config.yaml").is_file():
            log.warning("skipping %s: no config.yaml next to metrics.json", run_dir)
            continue
        config = RunConfig.load(run_dir / "config.yaml")
        runs.append(Run(run_dir.relative_to(sweep).as_posix(), run_dir, json.loads(metrics.read_text()), config))
    return sorted(runs, key=lambda r: natural_key(r.name))


def metric(run: Run, path: tuple) -> float | None:
    """A value of the run's metrics.json by key path, e.g. ("test", "bleu"); None when absent."""
    value = run.metrics
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value
