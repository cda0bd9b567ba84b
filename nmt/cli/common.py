"""Shared helpers of the entry points (config location, logging, seeding, device)."""
from __future__ import annotations

import logging
import random
import sys
from pathlib import Path

import numpy as np
import torch


def config_dir() -> str:
    """configs/ shipped in the wheel as nmt/configs, else the repository's top-level configs/."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "configs", here.parent / "configs"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"nmt configs not found next to {here}; reinstall the package")


def setup_logging() -> None:
    """Console logging unless someone (Hydra's job_logging, pytest) already set handlers up."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s",
                            datefmt="%H:%M:%S", stream=sys.stderr)
    root.setLevel(min(root.level, logging.INFO) if root.level else logging.INFO)


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


def default_trainer_override(argv: list[str], cuda: bool) -> list[str]:
    """Pick trainer=gpu when CUDA is available and the user chose no trainer (train.yaml says cpu).

    The override goes just before the user's first override: argparse (Hydra's CLI) takes the
    overrides as one contiguous run of positional arguments.
    """
    if not cuda or any(a.lstrip("+~").startswith("trainer=") for a in argv):
        return argv
    first = next((i for i, a in enumerate(argv) if "=" in a and not a.startswith("-")), len(argv))
    return [*argv[:first], "trainer=gpu", *argv[first:]]
