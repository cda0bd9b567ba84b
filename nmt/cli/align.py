"""nmt-align: word alignments from a trained model's attention; AER against a gold file.

    nmt-align run_dir=<run> src=FILE tgt=FILE gold=FILE    # AER / precision / recall per slot, layer, head
    nmt-align run_dir=<run> src=FILE tgt=FILE out=ALIGN     # Pharaoh "i-j" word alignments
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from nmt.alignment.pipeline import AlignJob, align_run
from nmt.cli.common import config_dir, job
from nmt.cli.errors import precheck, user_errors
from nmt.common import setup_logging

PROG = "nmt-align"


@hydra.main(config_path=config_dir(), config_name="align", version_base="1.3")
def run(cfg: DictConfig) -> None:
    setup_logging()
    with user_errors(PROG):
        align_run(job(AlignJob, cfg))


def main() -> None:
    precheck(PROG, "align")
    run()


if __name__ == "__main__":
    main()
