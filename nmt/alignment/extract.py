"""Word alignments from attention maps: any cross-attention slot, layer and head, or their averages.

Luong et al. 2015, Sec. 5.4 (Table 6) and Garg et al. 2019 (Sec. 4: average the heads of a layer)
read an alignment off the attention of forced decoding: the target is given (the reference, or the
model's own output) and each target word is linked to the source word it attends most.

Subword -> word (documented in docs/alignment.md): a word is a whitespace token of the text, i.e. a
run of sentencepiece pieces starting at a piece with the "▁" word-start marker. For target word j
and source word i,

    W[j, i] = mean_{t in pieces of j} sum_{s in pieces of i} a_t(s)

(sum over source pieces: a word receives all the attention of its pieces; mean over target pieces:
each target word counts once). Link (i, j) for i = argmax_i W[j, i], or, with a threshold, every i
with W[j, i] >= threshold. Rows without mass (a local-m query past its source) link nothing.

Shift (Chen et al. 2020, Sec. 3): the attention of the first step whose query has *read* target piece
y_t often aligns y_t better than the row that predicts it. Forced steps are numbered from 0 (input bos,
predicting y_0); target piece t is the input of step t + 1. In the Luong flow and the Transformer, row k's
query (h_k) has read the input of step k, so piece t reads row t + 1 (offset 1; the eos row serves the last
piece). In the Bahdanau flow, row k's query is s_{k-1}, which has read only the inputs up to step k - 1,
so piece t reads row t + 2 (offset 2; one more eos is forced so the last piece has its row). The offset
per model is nmt.alignment.corpus.shift_rows.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nmt.alignment.links import Link
from nmt.attention.slot import Slot

WORD_START = "▁"  # sentencepiece's word-start marker (U+2581)


@dataclass
class AlignSettings:
    """Mirrors the extraction keys of configs/align.yaml."""
    shift: bool               # Chen et al. 2020: target piece t reads row t + shift_rows(model)
    threshold: float | None   # None: argmax per target word; else every link with W[j, i] >= threshold


def piece_words(pieces: list[str]) -> list[int]:
    """Word index of every piece: a piece starting with "▁" starts a new word (the first piece always
    belongs to word 0). ["▁Ein", "▁Hund", "e", "▁."] -> [0, 1, 1, 2]."""
    words, current = [], -1
    for k, piece in enumerate(pieces):
        if piece.startswith(WORD_START) or k == 0:
            current += 1
        words.append(current)
    return words


def piece_text_words(pieces: list[str]) -> list[str]:
    """The words the pieces spell (grouped as piece_words): ["▁Ein", "▁Hund", "e"] -> ["Ein", "Hunde"]."""
    words = [""] * (max(piece_words(pieces), default=-1) + 1)
    for w, piece in zip(piece_words(pieces), pieces):
        words[w] += piece.lstrip(WORD_START)
    return words


def word_matrix(piece_map: Tensor, src_words: list[int], tgt_words: list[int]) -> Tensor:
    """piece_map (Tq, Tk) rows = target pieces, columns = source pieces -> W (Tw, Sw): sum over the
    source pieces of a word, mean over the target pieces of a word."""
    Tq, Tk = piece_map.shape
    if Tq != len(tgt_words) or Tk != len(src_words):
        raise ValueError(f"map of {Tq} x {Tk} pieces for {len(tgt_words)} target and {len(src_words)} source pieces")
    sum_src = torch.zeros(Tk, max(src_words) + 1, dtype=piece_map.dtype)  # (Tk, Sw) one-hot
    sum_src[torch.arange(Tk), torch.tensor(src_words)] = 1.0
    mean_tgt = torch.zeros(max(tgt_words) + 1, Tq, dtype=piece_map.dtype)  # (Tw, Tq)
    mean_tgt[torch.tensor(tgt_words), torch.arange(Tq)] = 1.0
    mean_tgt = mean_tgt / mean_tgt.sum(-1, keepdim=True)  # rows average a word's pieces
    return mean_tgt @ piece_map @ sum_src  # (Tw, Sw)


def target_rows(sentence_map: Tensor, n_tgt_pieces: int, offset: int) -> Tensor:
    """sentence_map (T + max(offset, 1), S): rows of the forced steps (output pieces + eos, + one more eos
    for offset 2) -> (T, S) row t + offset for target piece t (offset 0: no shift)."""
    rows = n_tgt_pieces + max(offset, 1)
    if sentence_map.size(0) != rows:
        raise ValueError(f"a map with {sentence_map.size(0)} rows for {n_tgt_pieces} target pieces and a row "
                         f"offset of {offset} (expected {rows} rows)")
    return sentence_map[offset: offset + n_tgt_pieces]  # (T, S)


def links_from_matrix(W: Tensor, threshold: float | None) -> set[Link]:
    """W (Tw, Sw) -> {(i, j)}: argmax per target word j (rows with mass only), or all W[j, i] >= threshold."""
    live = W.sum(-1) > 0  # (Tw,)
    if threshold is None:
        best = W.argmax(-1)  # (Tw,)
        return {(int(best[j]), j) for j in range(W.size(0)) if live[j]}
    j_idx, i_idx = torch.nonzero(W >= threshold, as_tuple=True)
    return {(int(i), int(j)) for i, j in zip(i_idx, j_idx) if live[j]}


def sentence_links(sentence_map: Tensor, src_words: list[int], tgt_words: list[int], offset: int,
                   threshold: float | None) -> set[Link]:
    """One sentence: map (T + max(offset, 1), S) over pieces (+ eos rows) -> word links {(src word, tgt word)},
    target piece t read from row t + offset (target_rows)."""
    rows = target_rows(sentence_map.float(), len(tgt_words), offset)  # (T, S)
    return links_from_matrix(word_matrix(rows, src_words, tgt_words), threshold)


def argmax_alignments(maps: dict[str, Tensor], src_pieces: list[str], out_pieces: list[str]) -> dict[str, set[Link]]:
    """One sentence's maps {slot: (H, T + 1, S)} over its pieces (out_pieces without the final eos) ->
    {selection: argmax word links} for every cross selection; {} when a side is empty."""
    if not src_pieces or not out_pieces:
        return {}
    src_w, out_w = piece_words(src_pieces), piece_words(out_pieces)
    return {name: sentence_links(m, src_w, out_w, 0, None) for name, m in selections(maps).items()}


def is_cross(slot: str) -> bool:
    """Slots whose keys are the source and queries the target: "cross" (RNN), "dec.<i>.cross"."""
    return Slot(slot).is_cross


def selections(maps: dict[str, Tensor]) -> dict[str, Tensor]:
    """{slot: (H, Tq, Tk)} -> {name: (Tq, Tk)} for every cross slot: "<slot>" (one head), "<slot>:h<h>" and
    "<slot>:mean" (heads averaged, Garg et al. 2019), and "all:mean" over every layer and head."""
    out, layer_means = {}, []
    for slot, m in maps.items():
        if not is_cross(slot):
            continue
        if m.size(0) == 1:
            out[slot] = m[0]
        else:
            out.update({f"{slot}:h{h}": m[h] for h in range(m.size(0))})
            out[f"{slot}:mean"] = m.mean(0)  # (Tq, Tk)
        layer_means.append(m.mean(0))
    if len(layer_means) > 1:
        out["all:mean"] = torch.stack(layer_means).mean(0)  # (Tq, Tk)
    return out


def last_selection(names: list[str]) -> str:
    """The default selection: the last layer's cross-attention, heads averaged ("cross" for an RNN)."""
    cross = [n for n in names if not n.startswith("all:") and (":" not in n or n.endswith(":mean"))]
    if not cross:
        raise ValueError(f"no cross-attention slot among {names}; alignment needs decoder->encoder attention")
    return max(cross, key=lambda n: Slot(n.partition(":")[0]).depth)  # "<slot>" or "<slot>:mean"
