"""Errors a person can act on: user errors print one or two plain lines (what, key, value, fix) and exit
non-zero without a traceback; internal errors keep theirs. HYDRA_FULL_ERROR=1 shows every traceback.

The entry points compose and check the config here *before* Hydra runs, so a bad config leaves no
directory behind, and a typo gets the closest real key instead of Hydra's `+key=value` (which would
add an unused key).
"""
from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nmt.alignment.links import AlignmentFileError
from nmt.cli.common import config_dir, decode_settings, job, register_resolvers
from nmt.cli.resume import flat_leaves
from nmt.common import setup_logging
from nmt.data.corpus import CorpusError
from nmt.runs.checkpoint import CheckpointError
from nmt.runs.run_dir import RunDirError
from nmt.training.session import EvaluationInterrupted
from nmt.training.trainer import StepOutOfMemory

# Raised while a command runs: the user's doing (files, run dirs, data), never a bug of ours.
RUN_ERRORS = (RunDirError, CheckpointError, CorpusError, EvaluationInterrupted, OmegaConfBaseException,
              AlignmentFileError, StepOutOfMemory)
# Raised while the config is composed and checked (before anything runs): all of them are the config's.
CONFIG_ERRORS = (*RUN_ERRORS, HydraException, ValueError, TypeError)
RUN_ROOTS = ("outputs", "runs", "multirun")


class UserError(Exception):
    """A plain message for the console (no traceback)."""


@contextmanager
def user_errors(prog: str, kinds: tuple = RUN_ERRORS) -> Iterator[None]:
    """Turn `kinds` (and Ctrl-C) into `prog: message` on stderr and exit 1 (130 for an interrupt)."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        yield
        return
    try:
        yield
    except (UserError, *kinds) as e:
        sys.stderr.write(f"{prog}: {e}\n")
        raise SystemExit(130 if isinstance(e, EvaluationInterrupted) else 1) from None
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted (Ctrl-C)\n")
        raise SystemExit(130) from None


def hydra_flags(args: list[str]) -> bool:
    """Flags (-m, --config-dir, --help, ...) and hydra.* overrides: leave those runs to Hydra alone."""
    return any(a.startswith("-") or a.lstrip("+~").startswith("hydra.") for a in args)


def compose_checked(config_name: str, overrides: list[str]) -> DictConfig:
    """Compose like the entry point will; an unknown key names the closest real one."""
    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        try:
            return compose(config_name=config_name, overrides=overrides)
        except HydraException as e:
            match = re.search(r"Could not override '([^']+)'", str(e))
            if match is None:
                raise UserError(str(e).splitlines()[0]) from None
            raise UserError(unknown_key(config_name, overrides, match.group(1))) from None


def unknown_key(config_name: str, overrides: list[str], key: str) -> str:
    """`trainer.max_step=40: no such key; did you mean trainer.max_steps=40?`"""
    given = next((o for o in overrides if o.lstrip("~").split("=", 1)[0] == key), key)
    value = given.split("=", 1)[1] if "=" in given else ""
    others = [o for o in overrides if o is not given]
    try:
        cfg = compose(config_name=config_name, overrides=others)
    except HydraException:
        cfg = compose(config_name=config_name, overrides=[])
    keys = config_keys(cfg)
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    parent = key.rsplit(".", 1)[0] + "." if "." in key else ""
    siblings = [k for k in keys if k.startswith(parent) and "." not in k[len(parent):]] or \
        [k for k in keys if "." not in k]
    fix = f"did you mean {close[0]}={value}?" if close else f"the keys here are: {', '.join(siblings)}"
    return f"{given}: no such key in the {config_name} config; {fix}"


def config_keys(cfg: DictConfig) -> list[str]:
    """Every dotted key of a config: the leaves and the nodes above them."""
    keys = {}  # dict: ordered and unique
    for leaf in flat_leaves(cfg, resolve=False):
        parts = leaf.split(".")
        keys.update(dict.fromkeys(".".join(parts[:i]) for i in range(1, len(parts) + 1)))
    return list(keys)


def check_mandatory(cfg: DictConfig) -> None:
    """A missing `???` value (run_dir, src): say what to pass; for run_dir, list the newest runs."""
    missing = [str(k) for k in cfg if OmegaConf.is_missing(cfg, k)]
    if not missing:
        return
    message = f"pass {' '.join(f'{k}=<...>' for k in missing)}"
    if "run_dir" in missing:
        message = f"pass run_dir=<a training run directory>{newest_runs()}"
    raise UserError(message)


def newest_runs(limit: int = 5) -> str:
    """The newest run directories (a config.yaml inside) under outputs/, runs/ and multirun/."""
    found = [p.parent for root in RUN_ROOTS if Path(root).is_dir() for p in Path(root).rglob("config.yaml")
             if p.parent.name != ".hydra"]
    if not found:
        return f"; no runs found under {', '.join(r + '/' for r in RUN_ROOTS)} here"
    found.sort(key=lambda d: (d / "config.yaml").stat().st_mtime, reverse=True)
    return "; the newest runs here:\n" + "\n".join(f"  run_dir={d}" for d in found[:limit])


def precheck(prog: str, config_name: str) -> None:
    """For the commands that read a run (evaluate, translate, align, explain): compose the command line
    as Hydra will and check it (unknown keys, missing run_dir, decode.* values) before anything runs."""
    args = sys.argv[1:]
    if hydra_flags(args):
        return
    with user_errors(prog, CONFIG_ERRORS):
        cfg = compose_checked(config_name, args)
        check_mandatory(cfg)
        if "decode" in cfg:
            decode_settings(cfg)


def job_command(prog: str, config_name: str, cls: type, action: Callable[[object], object]) -> Callable[[], None]:
    """The main() of a command that reads a run (nmt-align, -explain, -score, -average): check the command
    line (precheck), compose it with Hydra, build the typed settings `cls` (a bad value: one line naming
    the key), then run `action(settings)`, a user error in one line."""
    @hydra.main(config_path=config_dir(), config_name=config_name, version_base="1.3")
    def run(cfg: DictConfig) -> None:
        setup_logging()
        with user_errors(prog, CONFIG_ERRORS):
            settings = job(cls, cfg)
        with user_errors(prog):
            action(settings)

    def main() -> None:
        precheck(prog, config_name)
        run()
    return main
