"""Attention statistics per slot: entropy, final-source-token mass, monotonicity, local-p centre error,
cross-attention coverage (under/over-attended source tokens) and self-attention mean distance per head.

The exact definitions (and why) are in docs/attention_stats.md. Every statistic is computed on
rows renormalised to sum 1 (local-p rows sum to at most 1 before that, Luong et al. 2015, Eq. 10);
rows with no mass at all (a local-m query past the end of its source) are left out.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from nmt.attention.slot import Slot

_TINY = 1e-12
# coverage c_s = sum_t p_t(s) (Tu et al. 2016, Sec. 3): a source token is under-attended below half an
# output token's attention, over-attended above two output tokens' worth (docs/attention_stats.md)
UNDER_COVERAGE, OVER_COVERAGE = 0.5, 2.0


def key_is_source(slot: str) -> bool:
    """Cross-attention ("cross", "dec.<i>.cross") and encoder self-attention attend the source."""
    return Slot(slot).keys_are_source


def normalise_rows(weights: Tensor) -> tuple[Tensor, Tensor]:
    """weights (..., Tk) -> (rows renormalised to sum 1, (...) bool: the row has any mass)."""
    mass = weights.sum(-1, keepdim=True)
    live = mass.squeeze(-1) > _TINY
    return weights / mass.clamp_min(_TINY), live


def row_entropy(probs: Tensor) -> Tensor:
    """probs (..., Tk), rows summing to 1 -> (...) entropy in nats, with 0 log 0 = 0.

    A uniform row over Tk keys gives log(Tk), the maximum; a one-hot row gives 0.
    """
    return -(probs * probs.clamp_min(_TINY).log()).sum(-1)


def average_ranks(x: Tensor) -> Tensor:
    """(N,) values -> (N,) float ranks 1..N, ties given their average rank (as Spearman's rho needs)."""
    values, inverse, counts = torch.unique(x, sorted=True, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()            # (U,) last rank of each distinct value
    mean_rank = ends - (counts.double() - 1) / 2  # (U,) average of ranks ends-count+1 .. ends
    return mean_rank[inverse]


def spearman(x: Tensor, y: Tensor) -> float:
    """Spearman's rank correlation of two (N,) sequences; 0 when either is constant, nan when N < 2."""
    if x.numel() < 2:
        return math.nan
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = float((rx.pow(2).sum() * ry.pow(2).sum()).sqrt())
    return float((rx * ry).sum()) / denom if denom > 0 else 0.0


def monotonicity(weights: Tensor) -> list[float]:
    """weights (H, Tq, Tk) -> per head: Spearman rho between the query position t and argmax_s a_t(s).

    A diagonal map gives 1, an anti-diagonal (reversal) -1, rows attending one fixed key 0.
    Heads with fewer than two live rows give nan.
    """
    probs, live = normalise_rows(weights)
    out = []
    for h in range(weights.size(0)):
        rows = live[h].nonzero().squeeze(-1)  # (Tlive,) query positions with mass
        out.append(spearman(rows.double(), probs[h, rows].argmax(-1).double()))
    return out


def centre_errors(weights: Tensor, centres: Tensor) -> Tensor:
    """weights (H, Tq, Tk), centres p_t (Tq,) -> (Tlive,) |p_t - argmax_s a_t(s)| over heads' live rows."""
    probs, live = normalise_rows(weights)
    err = (centres.to(probs.dtype)[None, :] - probs.argmax(-1).to(probs.dtype)).abs()  # (H, Tq)
    return err[live]


def coverage(weights: Tensor) -> Tensor:
    """weights (H, Tq, Tk) -> (H, Tk) total attention c_s = sum_t p_t(s) each key receives over the live
    rows (Tu et al. 2016, Sec. 3: the coverage of source word s)."""
    probs, live = normalise_rows(weights)
    return (probs * live[..., None]).sum(-2)  # (H, Tk)


def mean_distance(weights: Tensor) -> list[float]:
    """weights (H, T, T) of self-attention -> per head: mean over live rows of sum_s p_t(s) |t - s|,
    the mean attention distance in tokens (query t sits at key position t); nan for a head with no live row."""
    probs, live = normalise_rows(weights)
    T = weights.size(-1)
    pos = torch.arange(T, dtype=probs.dtype)
    dist = (pos[:, None] - pos[None, :]).abs()[: weights.size(-2)]  # (Tq, Tk) |t - s|
    per_row = (probs * dist).sum(-1)  # (H, Tq)
    return [float(per_row[h][live[h]].mean()) if live[h].any() else math.nan for h in range(weights.size(0))]


def coverage_and_distance(slot: str, maps: list[Tensor]) -> dict[str, float]:
    """coverage_under / coverage_over (shares of source tokens, heads and sentences pooled) for cross slots;
    distance_head<h> and distance (mean over heads and sentences) for self-attention slots."""
    if Slot(slot).is_cross:
        cov = torch.cat([coverage(w.double()).reshape(-1) for w in maps])  # every (head, source token)
        return {"coverage_under": float((cov < UNDER_COVERAGE).double().mean()),
                "coverage_over": float((cov > OVER_COVERAGE).double().mean())}
    if Slot(slot).kind != "self":
        return {}
    per_head = torch.tensor([mean_distance(w.double()) for w in maps], dtype=torch.float64)  # (N, H)
    heads = {f"distance_head{h}": float(per_head[:, h].nanmean()) for h in range(per_head.size(1))}
    return {**heads, "distance": float(per_head.nanmean())}


def slot_stats(slot: str, maps: list[Tensor], centres: list[Tensor] | None = None) -> dict[str, float]:
    """Statistics of one attention slot over sentences: maps [(H, Tq, Tk)], centres [(Tq,)] for local-p.

    entropy / support / eos_mass / centre_error: means over every live row of every head and sentence (support:
    the keys with a non-zero weight, all attended keys under a softmax, fewer under sparsemax or entmax);
    monotonicity: mean over (sentence, head) pairs with at least two live rows. eos_mass (the share
    on the last key = the sentence's final source subword) only where the keys are the source.
    """
    ent, supp, last, mono, cerr = [], [], [], [], []
    for i, w in enumerate(maps):
        probs, live = normalise_rows(w.double())
        ent.append(row_entropy(probs)[live])
        supp.append((probs > 0).sum(-1)[live].double())  # (Tlive,) keys with non-zero weight
        last.append(probs[..., -1][live])
        mono.extend(m for m in monotonicity(w) if not math.isnan(m))
        if centres is not None:
            cerr.append(centre_errors(w.double(), centres[i]))
    stats = {"entropy": _mean(ent), "support": _mean(supp)}
    if key_is_source(slot):
        stats["eos_mass"] = _mean(last)
    stats["monotonicity"] = sum(mono) / len(mono) if mono else math.nan
    if centres is not None:
        stats["centre_error"] = _mean(cerr)
    return {**stats, **coverage_and_distance(slot, maps)}


def attention_stats(sentences: list[tuple[dict[str, Tensor], dict[str, Tensor]]]) -> dict[str, dict[str, float]]:
    """[(maps {slot: (H, Tq, Tk)}, centres {slot: (Tq,)})] per sentence -> {slot: {stat: value}}."""
    if not sentences:
        return {}
    result = {}
    for slot in sentences[0][0]:
        cen = [c[slot] for _, c in sentences] if slot in sentences[0][1] else None
        result[slot] = slot_stats(slot, [m[slot] for m, _ in sentences], cen)
    return result


def _mean(parts: list[Tensor]) -> float:
    values = torch.cat([p.reshape(-1) for p in parts]) if parts else torch.zeros(0)
    return float(values.mean()) if values.numel() else math.nan
