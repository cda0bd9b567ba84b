"""TensorBoard writer and atomic JSON run summaries."""
from __future__ import annotations

import json
import os
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter


def write_json(path: Path, data: dict) -> None:
    """Atomic JSON write (temporary file + rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


class RunLogger:
    """Scalars to TensorBoard under <run_dir>/tb; `purge_step` drops events a resumed run redoes."""

    def __init__(self, run_dir: Path, tensorboard: bool, purge_step: int | None = None):
        self.run_dir = Path(run_dir)
        self.tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=purge_step) if tensorboard else None

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.tb is None:
            return
        for name, value in values.items():
            self.tb.add_scalar(name, value, step)

    def flush(self) -> None:
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
