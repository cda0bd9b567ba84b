"""nmt-explain: does the attention explain the output? Counterfactual weights per slot, one table.

    nmt-explain run_dir=<run> split=valid
Writes <run_dir>/explain.md and explain.json (or out=FILE and FILE.json) and prints the table.
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from nmt.alignment.explain import explain_run
from nmt.cli.common import config_dir
from nmt.common import setup_logging


@hydra.main(config_path=config_dir(), config_name="explain", version_base="1.3")
def main(cfg: DictConfig) -> None:
    setup_logging()
    explain_run(cfg)


if __name__ == "__main__":
    main()
