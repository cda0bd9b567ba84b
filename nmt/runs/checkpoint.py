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


def rng_state(device: torch.device) -> dict:
    """Every RNG this process touches, as tensors and plain data. Of CUDA only the generator of `device` (this
    rank's GPU): saving every visible device's made a resume with fewer visible GPUs fail."""
    py = random.getstate()
    np_state = np.random.get_state()
    state = {"python": [py[0], list(py[1]), py[2]],
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
             "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(states: list[dict] | dict, rank: int, world: int, device: torch.device) -> None:
    """Restore rank `rank`'s RNGs from a checkpoint's per-rank list (rng_state of every rank, in rank order).

    A checkpoint of another number of ranks, or one without this device's CUDA generator, warns and goes on:
    the run continues, but not bit-identically. A checkpoint written before the per-rank list (one dict whose
    "cuda" holds every visible device's generator) is read as rank 0's, with this device's entry."""
    if isinstance(states, dict):  # the older format: one state for all ranks
        states = [older_rng_state(states, device)]
    if len(states) != world:
        log.warning("the checkpoint holds the RNG states of %d rank(s), this run has %d: rank %d takes rank %d's; "
                    "the resumed run is not bit-identical", len(states), world, rank, rank % len(states))
    state = states[rank % len(states)]
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    torch.set_rng_state(state["torch"])
    if device.type != "cuda":
        return
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    else:
        log.warning("the checkpoint holds no CUDA RNG state for rank %d (written on CPU?): %s keeps its seed; "
                    "the resumed run is not bit-identical", rank, device)


def older_rng_state(state: dict, device: torch.device) -> dict:
    """A checkpoint's RNG state from before the per-rank list ("cuda": every visible device's generator) as
    one rank's: this device's generator, or none when this machine shows more devices than it saved."""
    cuda, index = state.get("cuda"), device.index or 0
    rest = {k: v for k, v in state.items() if k != "cuda"}
    return {**rest, "cuda": cuda[index]} if isinstance(cuda, list) and index < len(cuda) else rest


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
