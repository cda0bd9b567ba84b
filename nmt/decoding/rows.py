"""Attention rows kept per hypothesis during search: which cross-attention is read (decode.selection), and the
GNMT coverage penalty computed from it (decode.coverage_penalty).

A selection names one cross slot and how its heads become one row per target step, as nmt-align names them
(nmt.alignment.extract.selections): "cross" (the RNN decoder's one attention), "<slot>" (a single-head
slot), "<slot>:mean" (heads averaged, Garg et al. 2019) or "<slot>:h<h>" (head h). "auto" is the last decoder
layer's cross-attention, heads averaged; nmt-translate reads the supervised head instead when the run was
trained with trainer.align_loss.

Coverage penalty (Wu et al. 2016, Sec. 7, Eq. 14), added to the length-normalised score of a finished
hypothesis:

    cp(X; Y) = beta * sum_j log(min(sum_t a_tj, 1.0))

over the real source pieces j (padding left out), t over the output's rows (its tokens and eos), a_tj the
selection's weight. A piece that received no attention at all (a sparse normaliser, hard or local attention)
counts log(COVERAGE_FLOOR) instead of -inf, so such hypotheses are still ranked.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nmt.attention.slot import Slot

COVERAGE_FLOOR = 1e-6  # log(1e-6) ~ -13.8 per unattended source piece instead of -inf
ALIGNMENTS = ("none", "hard", "soft")  # decode.alignment


@dataclass(frozen=True)
class RowSelection:
    """One cross slot and the head read from it (None: the heads averaged)."""
    slot: Slot
    head: int | None

    def reduce(self, rows: Tensor) -> Tensor:
        """rows (..., H, T, S) of the slot -> (..., T, S): head `head`, or the mean over heads."""
        return rows.mean(-3) if self.head is None else rows.select(-3, self.head)


def check_selection(name: str) -> None:
    """Syntax of decode.selection, before any model is loaded: auto | <cross slot>[:mean | :h<h>]."""
    slot, _, head = name.partition(":")
    try:
        ok = name == "auto" or (Slot(slot).is_cross and (head in ("", "mean") or head[:1] == "h" and head[1:].isdigit()))
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"decode.selection={name!r} is not a cross-attention selection; use auto, cross (an RNN), "
                         "dec.<i>.cross:mean or dec.<i>.cross:h<h> (a Transformer)")


def resolve_selection(name: str, model) -> RowSelection:
    """decode.selection against a model's slots (Seq2Seq.attention_modules); a slot or head the model lacks, or an
    ensemble (one map per model), is a ValueError naming the choices."""
    modules = getattr(model, "attention_modules", None)
    if modules is None:
        raise ValueError("decode.coverage_penalty and decode.alignment read one model's attention; an ensemble has "
                         "one per model: pass a single run_dir, or set decode.coverage_penalty=0 decode.alignment=none")
    heads = {slot: getattr(m, "num_heads", 1) for slot, m in modules().items() if slot.is_cross}
    if not heads:
        raise ValueError("decode.coverage_penalty and decode.alignment need decoder->encoder attention; this model "
                         "has none: set decode.coverage_penalty=0 decode.alignment=none")
    check_selection(name)
    if name == "auto":
        return RowSelection(max(heads, key=lambda s: s.depth), None)
    slot, _, head = name.partition(":")
    slot, choices = Slot(slot), "; ".join(f"{s}:mean, {s}:h0..{n - 1}" if n > 1 else str(s) for s, n in heads.items())
    if slot not in heads:
        raise ValueError(f"decode.selection={name!r}: this model has no slot {slot}; choose auto or {choices}")
    n = heads[slot]
    if head == "mean":
        return RowSelection(slot, None)
    if not head and n > 1 or head and int(head[1:]) >= n:
        raise ValueError(f"decode.selection={name!r}: slot {slot} has {n} head(s); choose auto or {choices}")
    return RowSelection(slot, int(head[1:]) if head else 0)


def coverage_penalty(coverage: Tensor, mask: Tensor, beta: float) -> Tensor:
    """GNMT cp = beta * sum_j log(min(coverage_j, 1)) over mask's real source pieces (Wu et al. 2016, Eq. 14).

    coverage (..., S) = sum over the hypothesis' rows of the selection's weights, mask (..., S) bool True = real
    piece -> (...,) <= 0; log(COVERAGE_FLOOR) for a piece without attention."""
    logs = coverage.float().clamp(min=COVERAGE_FLOOR, max=1.0).log()  # (..., S)
    return beta * logs.masked_fill(~mask, 0.0).sum(-1)
