"""nmt-evaluate: BLEU/chrF/TER of a trained run on a split, with the sacrebleu signature."""
from __future__ import annotations

import json

import hydra
from omegaconf import DictConfig

from nmt.cli.common import config_dir, decode_settings, run_dir_list
from nmt.cli.errors import precheck, user_errors
from nmt.common import pick_device, setup_logging
from nmt.evaluation.evaluate import evaluate_run

PROG = "nmt-evaluate"


@hydra.main(config_path=config_dir(), config_name="evaluate", version_base="1.3")
def run(cfg: DictConfig) -> None:
    setup_logging()
    with user_errors(PROG):
        decode = decode_settings(cfg)
        result = evaluate_run(run_dir_list(cfg.run_dir), cfg.split, cfg.checkpoint, decode, pick_device(cfg.device),
                              cfg.data_root)
    print(json.dumps(result, indent=2))


def main() -> None:
    precheck(PROG, "evaluate")
    run()


if __name__ == "__main__":
    main()
