"""What only the entry points need: where the configs are, the trainer=gpu default, and the one boundary
where a composed config becomes the typed settings the library takes (job, decode_settings)."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from nmt.common import typed
from nmt.decoding import DecodeSettings


def run_dir_list(value) -> str | list[str]:
    """run_dir=R (one run) or run_dir=[A,B] (an ensemble, nmt.runs.trained.load_runs) as plain data."""
    return OmegaConf.to_container(value) if OmegaConf.is_list(value) else str(value)


def decode_settings(cfg: DictConfig) -> DecodeSettings:
    """The decode group (configs/decode/), resolved and type-checked: the one way entry points build it."""
    return typed(DecodeSettings, "decode", OmegaConf.to_container(cfg.decode, resolve=True))


def job(cls: type, cfg: DictConfig):
    """A command's composed config as its settings dataclass `cls` (e.g. nmt.alignment.pipeline.AlignJob):
    the top-level keys named by cls's fields, type-checked, and its `decode` field from the decode group."""
    node = OmegaConf.to_container(cfg, resolve=True)
    values = {f.name: node[f.name] for f in fields(cls) if f.name != "decode"}
    if "decode" in {f.name for f in fields(cls)}:
        values["decode"] = decode_settings(cfg)
    return typed(cls, "", values)


def config_dir() -> str:
    """configs/ shipped in the wheel as nmt/configs, else the repository's top-level configs/."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "configs", here.parent / "configs"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"nmt configs not found next to {here}; reinstall the package")


def default_trainer_override(argv: list[str], cuda: bool) -> list[str]:
    """Pick trainer=gpu when CUDA is available and the user chose no trainer (train.yaml says cpu).

    The override goes just before the user's first override: argparse (Hydra's CLI) takes the
    overrides as one contiguous run of positional arguments.
    """
    if not cuda or any(a.lstrip("+~").startswith("trainer=") for a in argv):
        return argv
    first = next((i for i, a in enumerate(argv) if "=" in a and not a.startswith("-")), len(argv))
    return [*argv[:first], "trainer=gpu", *argv[first:]]


def register_resolvers() -> None:
    """The resolvers configs/train.yaml uses: `path_safe` (sweep subdirectory names from overrides,
    '/' -> '-') and `run_dir_or` (Hydra's run directory is run_dir when one is given)."""
    if not OmegaConf.has_resolver("path_safe"):
        OmegaConf.register_new_resolver("path_safe", lambda s: s.replace("/", "-"))
    if not OmegaConf.has_resolver("run_dir_or"):
        OmegaConf.register_new_resolver("run_dir_or", lambda run_dir, default: default if run_dir is None else run_dir)
