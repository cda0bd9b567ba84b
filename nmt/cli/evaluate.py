"""nmt-evaluate: BLEU/chrF/TER of a trained run on a split, with the sacrebleu signature."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from nmt.cli.common import config_dir
from nmt.common import pick_device, setup_logging
from nmt.evaluation.evaluate import DecodeSettings, evaluate_texts
from nmt.common import write_json
from nmt.training.run import load_trained

log = logging.getLogger("nmt.evaluate")


def run(cfg: DictConfig) -> dict:
    setup_logging()
    device = pick_device(cfg.device)
    run_dir = Path(cfg.run_dir)
    trained = load_trained(run_dir, cfg.checkpoint, device)
    data = trained.cfg.data
    if cfg.data_root is not None:
        data.corpus.root = cfg.data_root
    split_name = data.splits.get(cfg.split, cfg.split)
    ds = instantiate(data.corpus).load(split_name)
    src_ids = trained.src_tok.encode(ds["src"])
    decode = DecodeSettings(cfg.beam_size, cfg.length_penalty, cfg.max_len_a, cfg.max_len_b, cfg.max_sentences)
    scores, texts = evaluate_texts(trained.model, src_ids, ds["tgt"], trained.tgt_tok, decode, device)
    stem = f"{cfg.split}.{cfg.checkpoint if cfg.checkpoint in ('best', 'last') else 'ckpt'}.beam{cfg.beam_size}"
    (run_dir / f"{stem}.hyp.txt").write_text("\n".join(texts) + "\n")
    result = {"split": cfg.split, "corpus_split": split_name, "sentences": len(texts), "step": trained.step,
              "beam_size": cfg.beam_size, **scores, "hypotheses": str(run_dir / f"{stem}.hyp.txt")}
    write_json(run_dir / f"{stem}.scores.json", result)
    print(json.dumps(result, indent=2))
    return result


@hydra.main(config_path=config_dir(), config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
