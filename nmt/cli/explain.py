"""nmt-explain: does the attention explain the output? Counterfactual weights per slot, one table.

    nmt-explain run_dir=<run> split=valid
Writes <run_dir>/explain.md and explain.json (or out=FILE and FILE.json) and prints the table.
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from nmt.alignment.explain import ExplainJob, explain_run
from nmt.cli.common import config_dir, job
from nmt.cli.errors import precheck, user_errors
from nmt.common import setup_logging

PROG = "nmt-explain"


@hydra.main(config_path=config_dir(), config_name="explain", version_base="1.3")
def run(cfg: DictConfig) -> None:
    setup_logging()
    with user_errors(PROG):
        explain_run(job(ExplainJob, cfg))


def main() -> None:
    precheck(PROG, "explain")
    run()


if __name__ == "__main__":
    main()
