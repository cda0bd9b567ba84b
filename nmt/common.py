"""One home for the small helpers every part of nmt uses: atomic writes, file hashes, seeding,
device choice and console logging (nanochat's common.py). Nothing here imports the rest of nmt."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import secrets
import sys
import types
import typing
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
import torch


def atomic_write(path: Path | str, write: Callable[[BinaryIO], None]) -> None:
    """Call write(f) on a temporary file beside path, fsync, rename, fsync the directory.

    A crash or an exception leaves the old file or the new one, never half of one, and no
    temporary file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def create_temp(path: Path) -> tuple[int, str]:
    """A new temporary file beside path, opened for writing: (fd, its path).

    Created with mode 0o666 so the umask decides the final mode, as for any file open() creates
    (tempfile.mkstemp would give 0600, and the renamed file would keep it).
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path} after 100 tries")


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path | str, data: dict) -> None:
    """Atomic, human-readable JSON (sorted keys)."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True))


def file_sha256(path: Path | str) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks (no whole-file copy in memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> cuda when available; asking for cuda without one is an error naming the fix."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device cuda requested but CUDA is not available; use trainer=cpu (or device=cpu)")
    return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)


def enable_tf32(device: torch.device, on: bool) -> None:
    """trainer.tf32 on a CUDA device: float32 matmuls may run on TF32 tensor cores (10-bit mantissa inputs,
    float32 accumulation), as cuDNN's convolutions and RNNs already do by default. The setting is
    process-wide, so it is applied once per training job; a CPU run is left untouched."""
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high" if on else "highest")


@dataclass(frozen=True)
class HostLengths:
    """A batch's source lengths kept on the host, as the collator built them (nmt.data.batching.Batch.host).

    lengths (B,) long, on the CPU: pack_padded_sequence reads its lengths there, so an RNN encoder given these
    makes no device->host copy per micro-batch. padded: some row is shorter than the batch's source length
    (False: nothing is masked, and a Transformer encoder attends without a mask: the fused kernels' fast path).
    A plain object, not a tensor: DDP's forward moves every tensor argument to the device (inside tuples,
    lists and dicts too) and would undo this; Batch.to leaves it where it is.
    """
    lengths: torch.Tensor
    padded: bool


def setup_logging() -> None:
    """Console logging unless someone (Hydra's job_logging, pytest) already set handlers up."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s",
                            datefmt="%H:%M:%S", stream=sys.stderr)
    root.setLevel(min(root.level, logging.INFO) if root.level else logging.INFO)


def typed(cls: type, group: str, values: dict):
    """cls(**values) after checking each value against the field's type: `trainer.max_steps=abc` is a
    ValueError naming the key, not a TypeError deep inside the loop."""
    hints = typing.get_type_hints(cls)
    values = {k: (typed(hints[k], f"{group}.{k}", v) if k in hints and is_dataclass(hints[k]) and isinstance(v, dict)
                  else v) for k, v in values.items()}  # a nested group (trainer.align_loss) is typed too
    for f in fields(cls):
        if f.name in values and not fits(values[f.name], hints[f.name]):
            want = " or ".join(t.__name__ for t in typing.get_args(hints[f.name]) or [hints[f.name]])
            key = f"{group}.{f.name}" if group else f.name
            raise ValueError(f"{key}={values[f.name]!r} must be of type {want}; pass e.g. {key}=<{want}>")
    return cls(**values)


def fits(value, hint) -> bool:
    """isinstance for the plain field types of the settings dataclasses (an int is a float; a bool is
    not an int)."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for t in options:
        origin = typing.get_origin(t) or t
        if t is type(None) and value is None or t is float and type(value) is int:
            return True
        if isinstance(origin, type) and isinstance(value, origin) and not (origin is int and type(value) is bool):
            return True
        if not isinstance(origin, type):  # Literal, Any, ...: the dataclass checks it
            return True
    return False
