"""nmt-align: word alignments from a trained model's attention; AER against a gold file.

    nmt-align run_dir=<run> src=FILE tgt=FILE gold=FILE    # AER / precision / recall per slot, layer, head
    nmt-align run_dir=<run> src=FILE tgt=FILE out=ALIGN     # Pharaoh "i-j" word alignments
"""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from nmt.alignment.extract import AlignSettings
from nmt.alignment.links import write_pharaoh
from nmt.alignment.pipeline import align_texts, gold_scores, pick_selection, read_text_lines, scores_markdown
from nmt.cli.common import config_dir
from nmt.common import pick_device, setup_logging, write_json
from nmt.evaluation.evaluate import DecodeSettings
from nmt.training.run import load_trained


def run(cfg: DictConfig) -> dict:
    """-> {"selection": the one written to out, "scores": {selection: {aer, precision, recall}} or {}}."""
    setup_logging()
    device = pick_device(cfg.device)
    trained = load_trained(Path(cfg.run_dir), cfg.checkpoint, device)
    src = read_text_lines(cfg.src, "src")
    tgt = None if cfg.tgt is None else read_text_lines(cfg.tgt, "tgt")
    d = cfg.decode
    decode = DecodeSettings(d.beam_size, d.length_penalty, d.max_len_a, d.max_len_b, d.max_sentences)
    links, tgt = align_texts(trained, src, tgt, AlignSettings(cfg.shift, cfg.threshold), decode, device, cfg.chunk)
    scores = {}
    if cfg.gold is not None:
        scores = gold_scores(links, src, tgt, cfg.gold, cfg.gold_format, cfg.gold_one_based)
        sys.stdout.write(scores_markdown(scores, f"{cfg.run_dir}: AER against {cfg.gold}"))
    if cfg.scores is not None:
        write_json(cfg.scores, scores)
    selection = pick_selection(list(links), cfg.select, scores)
    if cfg.out is not None:
        write_pharaoh(cfg.out, links[selection])
    return {"selection": selection, "scores": scores}


@hydra.main(config_path=config_dir(), config_name="align", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
