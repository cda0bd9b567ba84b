"""What nmt-align, nmt-compare --gold and scripts/alignment_report.py share: align texts with a trained
model, score every selection against a gold file, pick one selection, print the table; align_run is nmt-align.

No oracle pick: "best" is the selection with the lowest AER on the odd-numbered gold pairs (lines 1, 3,
5, ...) and its AER is reported on the even-numbered pairs (lines 2, 4, ...), which the choice never saw.
Choosing and reporting on the same pairs would bias the figure down (the minimum of many noisy AERs).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
from dataclasses import dataclass

from nmt.alignment.corpus import align_ids, check_word_counts, score_all, shift_rows
from nmt.alignment.extract import AlignSettings, last_selection
from nmt.alignment.links import GoldAlignment, Link, check_bounds, read_gold, write_pharaoh
from nmt.common import pick_device, write_json
from nmt.data.corpus import read_lines
from nmt.decoding import DecodeSettings, decode_texts
from nmt.decoding.forced import check_line_aligned
from nmt.runs.trained import load_trained


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
        check_line_aligned(src_lines, tgt_lines)
        tgt_ids = tok.encode(tgt_lines)
        check_word_counts(tgt_lines, tgt_ids, tok, "target")
    return align_ids(trained.model, src_ids, tgt_ids, trained.src_tok, trained.tgt_tok, settings, device, chunk), tgt_lines


def gold_scores(links: dict[str, list[set[Link]]], src_lines: list[str], tgt_lines: list[str], gold: str,
                gold_format: str, one_based: bool) -> dict[str, dict[str, float]]:
    """{selection: {precision, recall, aer (all pairs), aer_pick, aer_held_out}} against a gold file of the
    same sentence pairs (split_scores)."""
    golds = read_gold(gold, gold_format, len(src_lines), one_based)
    check_bounds(golds, [len(s.split()) for s in src_lines], [len(t.split()) for t in tgt_lines], gold,
                 one_based and gold_format == "pharaoh")
    return split_scores(links, golds)


def halves(n: int) -> tuple[list[int], list[int]]:
    """n sentence pairs -> (pick, held-out) indices: odd-numbered lines (1st, 3rd, ...) choose a selection,
    even-numbered lines (2nd, 4th, ...) report it. Deterministic and interleaved, so both halves span the file."""
    return list(range(0, n, 2)), list(range(1, n, 2))


def split_scores(links: dict[str, list[set[Link]]], golds: list[GoldAlignment]) -> dict[str, dict[str, float]]:
    """{selection: links per pair} -> {selection: {precision, recall, aer} on all pairs, "aer_pick" on the
    odd-numbered pairs and "aer_held_out" on the even-numbered ones (halves)}."""
    def part(idx: list[int]) -> dict[str, dict[str, float]]:
        return score_all({name: [pred[i] for i in idx] for name, pred in links.items()}, [golds[i] for i in idx])
    pick, held = halves(len(golds))
    whole, on_pick, on_held = score_all(links, golds), part(pick), part(held)
    return {name: {**whole[name], "aer_pick": on_pick[name]["aer"], "aer_held_out": on_held[name]["aer"]}
            for name in links}


def best_selection(scores: dict[str, dict[str, float]]) -> str:
    """The selection with the lowest AER on the pick half (aer_pick); report its aer_held_out, never its
    aer_pick or its all-pairs aer, which would be an oracle figure."""
    return min(scores, key=lambda n: _nan_last(scores[n]["aer_pick"]))


def pick_selection(names: list[str], select: str, scores: dict[str, dict[str, float]] | None) -> str:
    """select = last (the last layer's cross-attention, heads averaged) | best (best_selection) | a name."""
    if select == "last":
        return last_selection(names)
    if select == "best":
        if not scores:
            raise ValueError("select=best needs gold=<file> to know which selection aligns best")
        return best_selection(scores)
    if select not in names:
        raise ValueError(f"select={select!r} is not a selection of this model; choose last, best or one of "
                         f"{', '.join(names)}")
    return select


def scores_markdown(scores: dict[str, dict[str, float]], title: str) -> str:
    """| selection | AER | precision | recall | AER pick half | AER held-out half |, then the held-out best."""
    lines = [f"### {title}", "", "| selection | AER | precision | recall | AER odd lines (pick) | "
             "AER even lines (held-out) |", "|---|---:|---:|---:|---:|---:|"]
    for name, s in scores.items():
        lines.append(f"| {name} | {s['aer']:.3f} | {s['precision']:.3f} | {s['recall']:.3f} | {s['aer_pick']:.3f} | "
                     f"{s['aer_held_out']:.3f} |")
    best = best_selection(scores)
    lines += ["", f"Best selection, chosen on the odd-numbered pairs: `{best}`; its AER on the held-out "
              f"even-numbered pairs: {scores[best]['aer_held_out']:.3f}."]
    return "\n".join(lines) + "\n"


def shift_note(offset: int) -> str:
    """The line nmt-align prints with shift=true: which row each target piece read, and why."""
    why = ("Bahdanau flow: row t's query is s_{t-1}, so row t + 1 has not yet read piece t" if offset == 2 else
           "Luong flow / Transformer: row t's query h_t has read the decoder input of step t")
    return f"shift (Chen et al. 2020): target piece t reads attention row t + {offset} ({why})\n"


def _nan_last(x: float) -> float:
    return math.inf if math.isnan(x) else x


@dataclass
class AlignJob:
    """nmt-align's settings: mirrors configs/align.yaml (built by nmt.cli.common.job)."""
    run_dir: str
    checkpoint: str              # best | last | a checkpoint path
    device: str
    src: str                     # source sentences, one per line
    tgt: str | None              # the targets to force-decode; None: the model's own translation
    gold: str | None             # gold alignment: AER, precision, recall of every selection
    gold_format: str             # pharaoh | talp
    gold_one_based: bool
    out: str | None              # Pharaoh file of the chosen selection
    scores: str | None           # JSON of every selection's scores
    select: str                  # last | best | a selection name
    shift: bool                  # Chen et al. 2020 (see shift_note)
    threshold: float | None      # None: arg-max links; a number: every link with weight >= it
    chunk: int                   # sentences per forced-decoding pass
    decode: DecodeSettings       # for tgt None


def align_run(cfg: AlignJob) -> dict:
    """-> {"selection": the one written to out, "scores": {selection: {aer, precision, recall}} or {}}."""
    device = pick_device(cfg.device)
    trained = load_trained(Path(cfg.run_dir), cfg.checkpoint, device)
    src = read_lines(cfg.src, "src")
    tgt = None if cfg.tgt is None else read_lines(cfg.tgt, "tgt")
    links, tgt = align_texts(trained, src, tgt, AlignSettings(cfg.shift, cfg.threshold), cfg.decode, device, cfg.chunk)
    if cfg.shift:
        sys.stdout.write(shift_note(shift_rows(trained.model)))
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
