"""Alignment losses on attention weights (supervised / guided attention), as pure functions on tensors.

The targets A (B, T, S) come from nmt.alignment.supervision.alignment_targets: row t (the decoder row that
predicts target piece t; the eos row last) is uniform over the source pieces linked to it and sums to 1;
a row with no link is all zero and adds nothing. The weights W (B, T, S) are one head of one cross slot of
the maps a forward pass with need_weights=True returns (supervised_weights). Every function returns a
*sum* over the linked rows, so a training step can normalise over a whole accumulated batch
(linked_rows(...).sum() per micro-batch, like n_tgt_tokens); align_loss is the per-batch mean.

    soft   (global, local-m, local-p, a Transformer head): KL(A_t || W_t) per linked row (Garg et al. 2019,
           Sec. 4; Liu et al. 2016 use the cross-entropy, which differs by the constant entropy of A)
    hard   (HardAttention's one-hot sample): log max A_t - log A_t(s*) for the sampled s*
    centre (local-p): ((p_t - c_t) / D)^2, c_t = sum_s A_t(s) s, the mean linked source position
"""
from __future__ import annotations

import torch
from torch import Tensor

from nmt.attention.slot import Slot

EPS = 1e-6  # inside every log: a linked piece with weight 0 costs log(1 / EPS) ~ 13.8, not infinity
KINDS = ("soft", "hard")


def supervised_weights(maps: dict[str, Tensor], slot: str, head: int) -> Tensor:
    """The supervised head: maps {slot: (B, H, T, S)} (DecoderOutput.attention) -> (B, T, S) of `head`."""
    if slot not in maps:
        cross = [s for s in maps if Slot(s).is_cross]
        hint = ("the maps are empty: run the model with need_weights=True" if not maps else
                f"the model's cross slots are {cross}")
        raise ValueError(f"no attention map for slot {slot!r}; {hint}")
    if not Slot(slot).is_cross:
        raise ValueError(f"slot {slot!r} is not decoder->encoder attention; alignment supervision needs a cross "
                         f"slot: {[s for s in maps if Slot(s).is_cross]}")
    weights = maps[slot]  # (B, H, T, S)
    if weights.size(-1) == 0:
        raise ValueError(f"slot {slot!r} returned no weights (the fused path); run the model with need_weights=True")
    if not 0 <= head < weights.size(1):
        raise ValueError(f"head {head} of slot {slot!r}, which has heads 0..{weights.size(1) - 1}")
    return weights[:, head]  # (B, T, S)


def penultimate_cross(slots: list[str]) -> Slot:
    """Garg et al. 2019's choice: the cross slot of the penultimate decoder layer (the only one for an RNN
    decoder's "cross" or a one-layer decoder)."""
    cross = sorted((Slot(s) for s in slots if Slot(s).is_cross), key=lambda s: s.depth)
    if not cross:
        raise ValueError(f"no cross-attention slot among {list(slots)}; alignment needs decoder->encoder attention")
    return cross[-2] if len(cross) > 1 else cross[0]


def linked_rows(target: Tensor) -> Tensor:
    """target (B, T, S) -> (B, T) bool: rows with at least one link (the rows that count)."""
    return target.sum(-1) > 0


def soft_align_sum(weights: Tensor, target: Tensor) -> Tensor:
    """sum over linked rows of KL(A_t || W_t) = sum_s A log((A + EPS) / (W + EPS)): weights, target (B, T, S).

    The cross-entropy -sum A log W of Garg et al. 2019 (Sec. 4) minus the entropy of A, a constant, so the
    gradient is the same and the loss is exactly 0 when W_t = A_t. With A_t uniform over its links (as
    alignment_targets builds it) and sum_s W_t <= 1 (local-p's Gaussian-scaled rows sum to less), it is
    positive for every other W_t (Jensen). Rows without a link have A_t = 0 and add exactly 0.
    """
    w, a = weights.float(), target.float()  # (B, T, S)
    return (a * ((a + EPS).log() - (w + EPS).log())).sum()


def hard_align_sum(weights: Tensor, target: Tensor) -> Tensor:
    """sum over linked rows of log max_s A_t - sum_s W_t(s) log A_t(s): weights one-hot (B, T, S), target (B, T, S).

    HardAttention's sample s* is one-hot in W, so this is the sampled position's negative log-probability
    under the alignment distribution, shifted to be 0 when s* is a linked piece (of a uniform row) and about
    log(1 / EPS) when it is not. Its gradient reaches the scores through the straight-through relaxation that
    HardAttention's weights carry in training.
    """
    w, a = weights.float(), target.float()  # (B, T, S)
    log_a = (a + EPS).log()  # (B, T, S)
    per_row = log_a.max(-1).values - (w * log_a).sum(-1)  # (B, T)
    return (per_row * linked_rows(a)).sum()


def centre_sum(centres: Tensor, target: Tensor, half_width: int) -> Tensor:
    """sum over linked rows of ((p_t - c_t) / D)^2: centres p_t (B, T) of local-p (DecoderOutput.centres),
    target (B, T, S), D the window's half width; c_t = sum_s A_t(s) s, the mean linked source position."""
    a = target.float()  # (B, T, S)
    positions = torch.arange(a.size(-1), device=a.device, dtype=a.dtype)  # (S,)
    aligned = (a * positions).sum(-1)  # (B, T) c_t
    error = (centres.float() - aligned) / half_width  # (B, T)
    return (error.pow(2) * linked_rows(a)).sum()


def align_loss(weights: Tensor, target: Tensor, kind: str) -> Tensor:
    """The mean over this batch's linked rows of the soft or hard loss; 0 when no row has a link."""
    if kind not in KINDS:
        raise ValueError(f"trainer.align_loss.kind must be one of {KINDS}, got {kind!r}")
    total = soft_align_sum(weights, target) if kind == "soft" else hard_align_sum(weights, target)
    return total / linked_rows(target).sum().clamp(min=1)  # no host sync
