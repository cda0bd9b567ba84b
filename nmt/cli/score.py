"""nmt-score: the trained model's log-probability of given translations, one JSON line per sentence pair.

    nmt-score run_dir=<run> src=FILE tgt=FILE [out=FILE] [checkpoint=best|last|avg_last5|PATH]
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from nmt.cli.common import config_dir, job
from nmt.cli.errors import CONFIG_ERRORS, precheck, user_errors
from nmt.common import setup_logging
from nmt.evaluation.score import ScoreJob, score_run

PROG = "nmt-score"


@hydra.main(config_path=config_dir(), config_name="score", version_base="1.3")
def run(cfg: DictConfig) -> None:
    setup_logging()
    with user_errors(PROG, CONFIG_ERRORS):  # chunk=abc, chunk=0: one line naming the key
        settings = job(ScoreJob, cfg)
    with user_errors(PROG):
        score_run(settings)


def main() -> None:
    precheck(PROG, "score")
    run()


if __name__ == "__main__":
    main()
