"""Run directories: what a running or finished training keeps on disk (config, tokenizers, lock). The rules of
resuming a run (which keys a resume may change) belong to its entry point: nmt.cli.resume."""
from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nmt.common import atomic_write_bytes, atomic_write_text, file_sha256
from nmt.data.tokenizer import SubwordTokenizer
from nmt.runs.config import RunConfig, model_yaml


class RunDirError(RuntimeError):
    """A run directory that cannot be used as asked."""


class RunLockError(RunDirError):
    """Another process is training in this run directory."""


def run_meta(model: dict, src_tok: SubwordTokenizer, tgt_tok: SubwordTokenizer) -> dict:
    """What must match between a checkpoint and the config that resumes or loads it (the model node as YAML:
    nmt.training.trainer.check_meta compares it parsed)."""
    return {"model": model_yaml(model), "src_vocab": len(src_tok),
            "tgt_vocab": len(tgt_tok), "src_spm": file_sha256(src_tok.model_path)[:16],
            "tgt_spm": file_sha256(tgt_tok.model_path)[:16]}


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """Refuse to train into a directory that holds another run unless resuming it."""
    has_run = any((run_dir / "checkpoints").glob("step_*.pt")) if (run_dir / "checkpoints").is_dir() else False
    if has_run and not resume:
        raise RunDirError(f"run_dir {run_dir} already holds a training run; pass trainer.resume=true to "
                          "continue it, or choose another run_dir")
    if resume and not has_run:
        raise RunDirError(f"trainer.resume=true but {run_dir} has no checkpoints/step_*.pt; set run_dir "
                          "to the directory of the run to continue")


def save_run_files(run_dir: Path, config: RunConfig, src_tok: SubwordTokenizer, tgt_tok: SubwordTokenizer) -> None:
    """Resolved config and the sentencepiece models, so evaluate/translate need nothing else.

    Written atomically: nmt-translate / nmt-evaluate may read the run while a resume rewrites them."""
    for side, tok in (("src", src_tok), ("tgt", tgt_tok)):
        atomic_write_bytes(run_dir / "tokenizer" / f"{side}.model", Path(tok.model_path).read_bytes())
    atomic_write_text(run_dir / "config.yaml", config.to_yaml())


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold <run_dir>/.lock (fcntl.flock) while training: one training process per run directory.

    The OS drops the lock when the holder dies (kill -9 included). The same process may take it again
    (the CLI takes it before Hydra writes anything; train() takes it too). A second process fails at
    once naming the holder's PID and host, and writes nothing (the directory and .lock already exist).
    """
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"run_dir={run_dir} cannot be created ({e.strerror}); choose a directory you can "
                          "write, e.g. run_dir=runs/<name>") from None
    me = f"{os.getpid()} {socket.gethostname()}"
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
        os.close(fd)
        if holder != me:
            raise RunLockError(lock_message(run_dir, holder)) from None
        yield  # this process holds it already (through another descriptor)
        return
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (me + "\n").encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def check_unlocked(run_dir: Path) -> None:
    """Raise RunLockError if a live process holds <run_dir>/.lock; creates and writes nothing."""
    try:
        fd = os.open(run_dir / ".lock", os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RunLockError(lock_message(run_dir, os.pread(fd, 200, 0).decode(errors="replace").strip())) from None
    finally:
        os.close(fd)


def lock_message(run_dir: Path, holder: str) -> str:
    pid, _, host = holder.partition(" ")
    who = f"PID {pid} on host {host}" if pid else "a process that has not yet written its PID"
    return (f"run_dir={run_dir} is in use: another nmt-train ({who}) is training there. Wait for it to "
            f"finish, or stop it (kill {pid or '<pid>'}) and continue it with: "
            f"nmt-train trainer.resume=true run_dir={run_dir}")
