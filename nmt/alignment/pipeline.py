"""What nmt-align, nmt-compare --gold and scripts/alignment_report.py share: align texts with a trained
model, score every selection against a gold file, pick one selection, print the table; align_run is nmt-align."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from nmt.alignment.corpus import align_ids, check_word_counts, score_all
from nmt.alignment.extract import AlignSettings, last_selection
from nmt.alignment.links import Link, check_bounds, read_gold, write_pharaoh
from nmt.common import pick_device, write_json
from nmt.data.corpus import read_lines
from nmt.decoding import DecodeSettings, decode_texts
from nmt.training.run_dir import load_trained


def align_texts(trained, src_lines: list[str], tgt_lines: list[str] | None, settings: AlignSettings,
                decode: DecodeSettings | None, device: torch.device, chunk: int) -> tuple[dict[str, list[set[Link]]], list[str]]:
    """Force-decode tgt_lines (the reference), or the model's own translation (decode settings) when tgt_lines is None.

    -> ({selection: links per pair}, the target lines aligned). Words are whitespace tokens.
    """
    src_ids, tok = trained.src_tok.encode(src_lines), trained.tgt_tok
    check_word_counts(src_lines, src_ids, trained.src_tok, "source")
    if tgt_lines is None and decode is None:
        raise ValueError("align_texts: give the target lines, or decode settings to translate the source")
    if tgt_lines is None:  # the output's words are its pieces' words (bos/pad dropped, as decode does)
        tgt_lines, hyp = decode_texts(trained.model, src_ids, tok, decode, device)
        tgt_ids = [[i for i in t if i not in (tok.pad_id, tok.bos_id)] for t in hyp.tokens]
    else:
        if len(tgt_lines) != len(src_lines):
            raise ValueError(f"{len(src_lines)} source lines but {len(tgt_lines)} target lines; the files must be "
                             "line-aligned")
        tgt_ids = tok.encode(tgt_lines)
        check_word_counts(tgt_lines, tgt_ids, tok, "target")
    return align_ids(trained.model, src_ids, tgt_ids, trained.src_tok, trained.tgt_tok, settings, device, chunk), tgt_lines


def gold_scores(links: dict[str, list[set[Link]]], src_lines: list[str], tgt_lines: list[str], gold: str,
                gold_format: str, one_based: bool) -> dict[str, dict[str, float]]:
    """{selection: {precision, recall, aer}} against a gold file of the same sentence pairs."""
    golds = read_gold(gold, gold_format, len(src_lines), one_based)
    check_bounds(golds, [len(s.split()) for s in src_lines], [len(t.split()) for t in tgt_lines], gold,
                 one_based and gold_format == "pharaoh")
    return score_all(links, golds)


def pick_selection(names: list[str], select: str, scores: dict[str, dict[str, float]] | None) -> str:
    """select = last (the last layer's cross-attention, heads averaged) | best (lowest AER) | a name."""
    if select == "last":
        return last_selection(names)
    if select == "best":
        if not scores:
            raise ValueError("select=best needs gold=<file> to know which selection aligns best")
        return min(names, key=lambda n: _nan_last(scores[n]["aer"]))
    if select not in names:
        raise ValueError(f"select={select!r} is not a selection of this model; choose last, best or one of "
                         f"{', '.join(names)}")
    return select


def scores_markdown(scores: dict[str, dict[str, float]], title: str) -> str:
    """| selection | AER | precision | recall | in the order given (slots, then heads and means)."""
    lines = [f"### {title}", "", "| selection | AER | precision | recall |", "|---|---:|---:|---:|"]
    for name, s in scores.items():
        lines.append(f"| {name} | {s['aer']:.3f} | {s['precision']:.3f} | {s['recall']:.3f} |")
    return "\n".join(lines) + "\n"


def _nan_last(x: float) -> float:
    return math.inf if math.isnan(x) else x


def align_run(cfg: DictConfig) -> dict:
    """-> {"selection": the one written to out, "scores": {selection: {aer, precision, recall}} or {}}."""
    device = pick_device(cfg.device)
    trained = load_trained(Path(cfg.run_dir), cfg.checkpoint, device)
    src = read_lines(cfg.src, "src")
    tgt = None if cfg.tgt is None else read_lines(cfg.tgt, "tgt")
    decode = DecodeSettings(**OmegaConf.to_container(cfg.decode, resolve=True))
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
