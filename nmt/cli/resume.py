"""The rules of resuming a run (nmt-train trainer.resume=true): the run's stored config.yaml, with the keys the
user touched now applied where a resume may change them. Entry-point code: it works on Hydra's DictConfig."""
from __future__ import annotations

import logging
import os

from omegaconf import DictConfig, OmegaConf

from nmt.runs.config import CORPUS_PATH_KEYS, RunConfig
from nmt.runs.run_dir import RunDirError

log = logging.getLogger(__name__)

# What a resume may change: the budget, where it runs, logging, and the final beam evaluation.
RESUME_MAY_CHANGE = ("trainer.max_steps", "trainer.max_epochs", "trainer.max_time_s", "trainer.device",
                     "trainer.num_threads", "trainer.prefetch", "trainer.resume", "trainer.log_every", "logger.",
                     "decode.", "run_dir", "data.root", "data.cache_dir")


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
    that works. A new data.root moves the stored corpus paths with it (DataSettings.rebased).
    """
    stored = migrated(stored)
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
                out.data = rebased_data(out, now[k])
        else:
            OmegaConf.update(out, k, now[k], force_add=True)
    return out


def migrated(stored: DictConfig) -> DictConfig:
    """A stored config.yaml read with today's meaning of its keys.

    Before trainer.align_loss.centre_weight became a weight of its own (default 0), every run stored
    `centre_weight: 1.0`, which only applied beside weight > 0. A stored run with weight 0 and no
    data.alignment had no supervision then and has none now: its centre_weight is read as 0 (today it would
    ask for data.alignment, or be refused on a model without local-p attention)."""
    align = OmegaConf.select(stored, "trainer.align_loss")
    if (align is None or not align.get("centre_weight") or align.get("weight")
            or OmegaConf.select(stored, "data.alignment") is not None):
        return stored
    log.info("trainer.align_loss.centre_weight=%s in the run's config.yaml predates the independent centre "
             "weight; with weight 0 and no data.alignment it was off: using 0", align.centre_weight)
    out = stored.copy()
    out.trainer.align_loss.centre_weight = 0.0
    return out


def rebased_data(cfg: DictConfig, new_root: str) -> DictConfig:
    """A resolved config's data group under another data root (DataSettings.rebased)."""
    config = RunConfig(OmegaConf.to_container(cfg, resolve=True))
    return OmegaConf.create(config.with_data(config.data.rebased(new_root)).values["data"])


SETTINGS_GROUPS = ("trainer", "optim", "decode", "logger")  # one key set per group: TrainSettings etc.


def settings_added_since(have: dict, now: dict) -> list[str]:
    """Keys of the settings groups that the composed config has and the stored one lacks. Model and data
    groups are left alone: their keys depend on the chosen type (a Transformer has no model.attention)."""
    return sorted(k for k in now if k not in have and k.split(".")[0] in SETTINGS_GROUPS)


def resume_refusal(run_dir: str, refused: list[tuple], allowed: list[str]) -> str:
    lines = "\n".join(f"  {k}: {run} (run) vs {given} (given)" for k, run, given in refused)
    return (f"trainer.resume=true continues the run's own config ({run_dir}/config.yaml); a resume may change "
            f"only the budget (trainer.max_steps, max_epochs, max_time_s), trainer.device, threads, prefetch, logging "
            f"and decode.*, not:\n{lines}\n"
            f"Continue the run with: nmt-train trainer.resume=true run_dir={run_dir} {' '.join(allowed)}".rstrip()
            + f"\nor train a new run with these settings into another run_dir=<new directory>")
