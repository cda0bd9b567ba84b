"""nmt-train: compose the Hydra config (configs/train.yaml) and call nmt.training.session.train."""
from __future__ import annotations

import sys

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nmt.cli.common import config_dir, default_trainer_override, register_resolvers
from nmt.training.session import train


@hydra.main(config_path=config_dir(), config_name="train", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float:
    if cfg.run_dir is None:  # outputs/<date>/<time>, or a multirun job's sweep subdirectory
        cfg.run_dir = HydraConfig.get().runtime.output_dir
    metrics = train(cfg)
    return metrics.get("valid", {}).get("bleu", 0.0)


def main() -> None:
    register_resolvers()
    sys.argv = [sys.argv[0], *default_trainer_override(sys.argv[1:], torch.cuda.is_available())]
    _hydra_main()


if __name__ == "__main__":
    main()
