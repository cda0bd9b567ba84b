"""Atomic, safely-loadable checkpoints (tensors and plain data only; weights_only=True)."""
from __future__ import annotations

import logging
import random
import re
from pathlib import Path

import numpy as np
import torch
import yaml

from nmt.common import atomic_write

log = logging.getLogger(__name__)
STEP_RE = re.compile(r"step_(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (corrupt, unsafe, or from another model)."""


def meta_differs(saved: dict, current: dict) -> list[str]:
    """The keys where two checkpoint metas (nmt.runs.run_dir.run_meta) differ; the model node (YAML text) is
    compared parsed, so checkpoints written by another YAML writer still match."""
    def value(meta: dict, key: str):
        v = meta.get(key)
        return yaml.safe_load(v) if key == "model" and isinstance(v, str) else v
    return [k for k in sorted(set(saved) | set(current)) if value(saved, k) != value(current, k)]


def rng_state() -> dict:
    """Every RNG the run touches, as tensors and plain data."""
    py = random.getstate()
    np_state = np.random.get_state()
    state = {"python": [py[0], list(py[1]), py[2]],
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(payload: dict, path: Path) -> None:
    """torch.save through atomic_write: a crash leaves the old file or the new, never half."""
    atomic_write(path, lambda f: torch.save(payload, f))


def load(path: Path) -> dict:
    """Load with weights_only=True: a file holding pickled code is refused, not run."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises several types for bad files
        raise CheckpointError(f"cannot load checkpoint {path}: {type(e).__name__}: {e}") from e


def step_checkpoints(ckpt_dir: Path) -> list[Path]:
    """step_N.pt files, newest first."""
    found = [(int(m.group(1)), p) for p in Path(ckpt_dir).glob("step_*.pt") if (m := STEP_RE.search(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def load_latest(ckpt_dir: Path) -> tuple[Path, dict] | None:
    """Newest loadable step checkpoint; a corrupt one is skipped with a warning."""
    for path in step_checkpoints(ckpt_dir):
        try:
            return path, load(path)
        except CheckpointError as e:
            log.warning("%s -- falling back to the previous checkpoint", e)
    return None


def save_step(payload: dict, ckpt_dir: Path, step: int, keep_last: int) -> Path:
    """Write step_<step>.pt atomically, then prune to the newest `keep_last` (never below 1)."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / f"step_{step}.pt"
    atomic_save(payload, path)
    for old in step_checkpoints(ckpt_dir)[max(keep_last, 1):]:
        old.unlink(missing_ok=True)
    return path
