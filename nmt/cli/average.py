"""nmt-average: average a run's newest step checkpoints into checkpoints/avg_last<N>.pt.

    nmt-average run_dir=<run> last=5        # then checkpoint=avg_last5 in nmt-evaluate, -translate, -align, -score
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from nmt.cli.common import config_dir, job
from nmt.cli.errors import CONFIG_ERRORS, precheck, user_errors
from nmt.common import setup_logging
from nmt.runs.average import AverageJob, average_run

PROG = "nmt-average"


@hydra.main(config_path=config_dir(), config_name="average", version_base="1.3")
def run(cfg: DictConfig) -> None:
    setup_logging()
    with user_errors(PROG, CONFIG_ERRORS):  # last=abc, last=0: one line naming the key
        settings = job(AverageJob, cfg)
    with user_errors(PROG):
        print(average_run(settings))


def main() -> None:
    precheck(PROG, "average")
    run()


if __name__ == "__main__":
    main()
