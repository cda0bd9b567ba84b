"""Run directories: what a running or finished training keeps on disk (config, tokenizers, lock) and the rules
of resuming it."""
from __future__ import annotations

import fcntl
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from nmt.common import atomic_write_bytes, atomic_write_text, file_sha256
from nmt.data.tokenizer import SubwordTokenizer


log = logging.getLogger(__name__)

# What a resume may change: the budget, where it runs, logging, and the final beam evaluation.
RESUME_MAY_CHANGE = ("trainer.max_steps", "trainer.max_epochs", "trainer.max_time_s", "trainer.device",
                     "trainer.num_threads", "trainer.resume", "trainer.log_every", "logger.", "decode.", "run_dir",
                     "data.root", "data.cache_dir")
# Corpus keys that hold paths (made absolute at training time, moved by data_root=).
CORPUS_PATH_KEYS = ("root", "directory", "path_template")


class RunDirError(RuntimeError):
    """A run directory that cannot be used as asked."""


class RunLockError(RunDirError):
    """Another process is training in this run directory."""


def run_meta(cfg: DictConfig, src_tok: SubwordTokenizer, tgt_tok: SubwordTokenizer) -> dict:
    """What must match between a checkpoint and the config that resumes or loads it."""
    return {"model": OmegaConf.to_yaml(cfg.model, resolve=True), "src_vocab": len(src_tok),
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


def save_run_files(run_dir: Path, cfg: DictConfig, src_tok: SubwordTokenizer, tgt_tok: SubwordTokenizer) -> None:
    """Resolved config and the sentencepiece models, so evaluate/translate need nothing else.

    Written atomically: nmt-translate / nmt-evaluate may read the run while a resume rewrites them."""
    for side, tok in (("src", src_tok), ("tgt", tgt_tok)):
        atomic_write_bytes(run_dir / "tokenizer" / f"{side}.model", Path(tok.model_path).read_bytes())
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))


def absolute_data_paths(cfg: DictConfig) -> None:
    """data.root, data.cache_dir and the corpus paths made absolute (in place), so the stored config
    works from any working directory. data.root first: the corpus paths interpolate it."""
    data = cfg.data
    data.root = os.path.abspath(data.root)
    data.cache_dir = os.path.abspath(data.cache_dir)
    for key in CORPUS_PATH_KEYS:
        value = data.corpus.get(key)
        if isinstance(value, str) and not os.path.isabs(value):
            data.corpus[key] = os.path.abspath(value)


def rebase_data_root(data: DictConfig, new_root: str) -> None:
    """Point a stored (resolved) data config at another data root, in place: every corpus path under
    the stored data.root moves with it, whatever the corpus kind (Multi30k root, TextDir directory,
    TSV/JSONL path_template)."""
    old, new = str(data.root).rstrip("/"), os.path.abspath(new_root)
    moved = []
    for key in CORPUS_PATH_KEYS:
        value = data.corpus.get(key)
        if isinstance(value, str) and (value == old or value.startswith(old + "/")):
            data.corpus[key] = new + value[len(old):]
            moved.append(key)
    paths = {k: data.corpus[k] for k in CORPUS_PATH_KEYS if k in data.corpus}
    if paths and not moved:
        log.warning("data_root=%s changes nothing: the run's corpus paths %s are not under its data.root %s",
                    new_root, paths, old)
    data.root = new


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


def flat_leaves(cfg: DictConfig, resolve: bool = True) -> dict:
    """{dotted key: value} of every leaf (lists are leaves), interpolations resolved unless resolve=False."""
    out = {}

    def walk(node, prefix):
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = v
    walk(OmegaConf.to_container(cfg, resolve=resolve), "")
    return out


def may_change_on_resume(key: str) -> bool:
    return any(key == a or (a.endswith(".") and key.startswith(a)) for a in RESUME_MAY_CHANGE)


def resume_config(stored: DictConfig, defaults: DictConfig, given: DictConfig, named: list[str]) -> DictConfig:
    """The config of a resume: the run's stored config.yaml with the keys the user touched now applied.

    Touched = leaves that differ between `given` (defaults + the user's overrides) and `defaults`, plus
    the keys the overrides name (`named`). A touched key may change only if RESUME_MAY_CHANGE allows it;
    any other difference from the stored value raises RunDirError with one line per key and a command
    that works. A new data.root moves the stored corpus paths with it (rebase_data_root).
    """
    have, base, now = flat_leaves(stored), flat_leaves(defaults), flat_leaves(given)
    touched = sorted({k for k in base.keys() | now.keys() if base.get(k) != now.get(k)} | (set(named) & set(now)))
    derived = {f"data.corpus.{k}" for k in CORPUS_PATH_KEYS} if "data.root" in touched else set()
    differ = [k for k in touched if k in now and k not in derived and have.get(k) != now[k]]
    refused = [k for k in differ if not may_change_on_resume(k)]
    if refused:
        kept = [f"{k}={now[k]}" for k in differ if k not in refused and k not in ("run_dir", "trainer.resume")]
        raise RunDirError(resume_refusal(now["run_dir"], [(k, have.get(k), now[k]) for k in refused], kept))
    out = stored.copy()
    for k in settings_added_since(have, now):  # e.g. decode.nbest in a run trained before it existed
        log.info("%s is not in the run's config.yaml (a setting added since): using %r", k, now[k])
        OmegaConf.update(out, k, now[k], force_add=True)
    for k in differ:
        if k == "data.root":
            if os.path.abspath(now[k]) != have.get(k):
                rebase_data_root(out.data, now[k])
        else:
            OmegaConf.update(out, k, now[k], force_add=True)
    return out


SETTINGS_GROUPS = ("trainer", "optim", "decode", "logger")  # one key set per group: TrainSettings etc.


def settings_added_since(have: dict, now: dict) -> list[str]:
    """Keys of the settings groups that the composed config has and the stored one lacks. Model and data
    groups are left alone: their keys depend on the chosen type (a Transformer has no model.attention)."""
    return sorted(k for k in now if k not in have and k.split(".")[0] in SETTINGS_GROUPS)


def resume_refusal(run_dir: str, refused: list[tuple], allowed: list[str]) -> str:
    lines = "\n".join(f"  {k}: {run} (run) vs {given} (given)" for k, run, given in refused)
    return (f"trainer.resume=true continues the run's own config ({run_dir}/config.yaml); a resume may change "
            f"only the budget (trainer.max_steps, max_epochs, max_time_s), trainer.device, threads, logging "
            f"and decode.*, not:\n{lines}\n"
            f"Continue the run with: nmt-train trainer.resume=true run_dir={run_dir} {' '.join(allowed)}".rstrip()
            + f"\nor train a new run with these settings into another run_dir=<new directory>")
