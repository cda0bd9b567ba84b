"""Align a corpus with a trained model: forced decoding, every cross-attention selection, AER per selection."""
from __future__ import annotations

import torch

from nmt.alignment.aer import aer_scores
from nmt.alignment.extract import AlignSettings, piece_words, selections, sentence_links
from nmt.alignment.links import GoldAlignment, Link
from nmt.decoding.inspect import output_maps
from nmt.models.seq2seq import Seq2Seq


def word_count(pieces: list[str]) -> int:
    return max(piece_words(pieces), default=-1) + 1


def check_word_counts(lines: list[str], ids: list[list[int]], tok, side: str) -> list[int]:
    """Words per line from the pieces; they must equal the whitespace tokens of the line (else the
    tokeniser normalised spaces away and word indices would not match a gold file)."""
    counts = []
    for n, (line, seq) in enumerate(zip(lines, ids), start=1):
        c = word_count(tok.pieces(seq))
        if c != len(line.split()):
            raise ValueError(f"{side} line {n}: {len(line.split())} whitespace words but the tokenizer sees {c}; "
                             "remove control or zero-width characters so both agree")
        counts.append(c)
    return counts


def shift_rows(model: Seq2Seq) -> int:
    """Rows between a target piece's own row and the first row whose query has read it (Chen et al. 2020's
    shift, nmt.alignment.extract): 1 + the decoder's query_lag, so 2 for the Bahdanau flow (row t's query is
    s_{t-1}, Bahdanau et al. 2015, Eq. 4-6), 1 for the Luong flow (h_t, Luong et al. 2015, Eq. 5) and the
    Transformer decoder."""
    return 1 + model.decoder.query_lag


@torch.no_grad()
def align_ids(model: Seq2Seq, src_ids: list[list[int]], tgt_ids: list[list[int]], src_tok, tgt_tok,
              settings: AlignSettings, device: torch.device, chunk: int) -> dict[str, list[set[Link]]]:
    """Forced decoding of tgt_ids (no bos/eos) on src_ids -> {selection: [links per pair]}.

    With settings.shift, target piece t reads row t + shift_rows(model); for an offset of 2 one more eos
    is forced (it changes no earlier row: decoders are causal). A pair with an empty side gets no links.
    """
    links: dict[str, list[set[Link]]] = {}
    keep = [k for k in range(len(src_ids)) if src_ids[k] and tgt_ids[k]]
    offset = shift_rows(model) if settings.shift else 0
    extra = [tgt_tok.eos_id] * (max(offset, 1) - 1)  # forced after the pieces (output_maps adds one eos)
    found: dict[int, dict[str, set[Link]]] = {}
    for start in range(0, len(keep), chunk):
        idx = keep[start: start + chunk]
        forced = [tgt_ids[k] + extra for k in idx]
        maps = output_maps(model, [src_ids[k] for k in idx], forced, tgt_tok, device, chunk)
        for k, m in zip(idx, maps):
            src_w = piece_words(src_tok.pieces(m.src_ids))
            tgt_w = piece_words(tgt_tok.pieces(tgt_ids[k]))
            found[k] = {name: sentence_links(mp, src_w, tgt_w, offset, settings.threshold)
                        for name, mp in selections(m.maps).items()}
    for name in selection_names(model, tgt_tok, device):
        links[name] = [found[k][name] if k in found else set() for k in range(len(src_ids))]
    return links


def selection_names(model: Seq2Seq, tok, device: torch.device) -> list[str]:
    """The model's selections (from a one-token forced pass), known even when no pair is aligned."""
    return list(selections(output_maps(model, [[tok.eos_id]], [[tok.eos_id]], tok, device)[0].maps))


def score_all(links: dict[str, list[set[Link]]], golds: list[GoldAlignment]) -> dict[str, dict[str, float]]:
    """{selection: links} -> {selection: {precision, recall, aer}}."""
    return {name: aer_scores(pred, golds) for name, pred in links.items()}

