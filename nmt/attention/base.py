"""The attention contract: AttentionOutput, the one masked softmax, and score functions (the other
normalisers, sparsemax and entmax, are in nmt.attention.normalisers).

Every attention module of this package has one call signature::

    out = attention(query, keys, values, mask, *, query_positions=None, key_positions=None, state=None,
                    need_weights=True)

    query (B, Tq, Dq), keys (B, Tk, Dk), values (B, Tk, Dv)
    mask  bool, broadcastable to (B, Tq, Tk), True = may attend (or None: attend everywhere)
    query_positions (B, Tq) long, key_positions (B, Tk) long: absolute positions of the queries and keys (None:
          the default, keys at 0..Tk-1 and queries aligned so the last query sits on the last key)
    state the attention's own per-step state (coverage C_{t-1}), None at the first step or for a stateless type
    -> AttentionOutput(context (B, Tq, Dv), weights (B, H, Tq, Tk), centres (B, Tq) | None, state | None)

A stateful type returns its next state in `out.state`; the decoder keeps it batch-first in its own state
(beam search reorders it like h and c) and passes it back at the next step. A stateless type returns None
and is never given a state.

Beside the call, the contract has two attributes (nmt/attention/contract.py checks all of it, for a user's own
type too):

    intervention       None, or a hook (nmt.attention.intervention) the module passes its normalised weights
                       through before they weight the values; counterfactuals (nmt-explain) set it
    window_half_width  D when the module attends a window [centre - D, centre + D] (local-m / local-p: the
                       target position or p_t; a sliding window: the query position), else None; the explorer
                       draws the window from it

Score modules map ``query (..., Tq, Dq), keys (..., Tk, Dk) -> scores (..., Tq, Tk)``; the
leading dimensions are free so multi-head attention can score (B, H, Tq, dh) per head.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class AttentionOutput:
    """What every attention module returns.

    context: (B, Tq, Dv) weights @ values (multi-head: after the output projection).
    weights: (B, H, Tq, Tk) attention weights, H = 1 for single-head modules; rows sum to 1
        over attended keys and are exactly 0 on masked keys (local_p: Gaussian-scaled, see
        LocalAttention). Never None.
    centres: (B, Tq) float window centres p_t of local_p attention, else None.
    state: the attention's state after this call (batch-first, e.g. coverage (B, Tk)), None when stateless.
    """

    context: Tensor
    weights: Tensor
    centres: Tensor | None = None
    state: Tensor | None = None


@runtime_checkable
class Attention(Protocol):
    """The one signature of every attention module (see the module docstring for shapes).

    A new attention type is one class with this call and one YAML under
    configs/model/attention/ (`_target_`, `label`, `flow` for the RNN decoder, its arguments):
    docs/architecture.md has the recipe.
    """

    intervention: object           # None or WeightHook: see nmt.attention.intervention
    window_half_width: int | None  # D of a local window, None for none

    def __call__(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None, *,
                 query_positions: Tensor | None = None, key_positions: Tensor | None = None,
                 state: Tensor | None = None, need_weights: bool = True) -> AttentionOutput: ...


@runtime_checkable
class KVAttention(Protocol):
    """What a Transformer slot needs beyond Attention: keys/values projected once and cached.

    project_kv(keys (B, Tk, D), values (B, Tk, D), *, key_positions (B, Tk) | None) -> the cache k, v of those
    keys (multi-head: (B, Hkv, Tk, dh) each; a position method that rotates keys stores them rotated);
    extend_kv((past_k, past_v), keys (B, T, D), values (B, T, D), *, key_positions (B, T)) -> the cache after T
    more keys (multi-head: the concatenation; a running-sum slot: the new sum); attend(query, k, v, mask, *,
    query_positions, key_positions, need_weights) -> AttentionOutput, equal to forward(query, keys, values, ...).
    """

    def project_kv(self, keys: Tensor, values: Tensor, *,
                   key_positions: Tensor | None = None) -> tuple[Tensor, Tensor]: ...

    def extend_kv(self, past: tuple[Tensor, Tensor], keys: Tensor, values: Tensor, *,
                  key_positions: Tensor | None = None) -> tuple[Tensor, Tensor]: ...

    def attend(self, query: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, *,
               query_positions: Tensor | None = None, key_positions: Tensor | None = None,
               need_weights: bool = True) -> AttentionOutput: ...


def masked_softmax(scores: Tensor, mask: Tensor | None, dim: int = -1) -> Tensor:
    """Softmax over `dim` restricted to keys where `mask` is True.

    scores: (..., Tq, Tk); mask: bool broadcastable to scores, True = attend, or None.
    Masked keys get exactly 0. A row whose keys are all masked gives all zeros (not NaN),
    and its gradient is zero (not NaN): masked scores are filled with the dtype's finite
    minimum instead of -inf, so no `-inf - (-inf)` ever happens inside the softmax.
    """
    if mask is None:
        return torch.softmax(scores, dim=dim)
    filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)  # (..., Tq, Tk)
    probs = torch.softmax(filled, dim=dim)  # all-masked rows are uniform here ...
    return probs.masked_fill(~mask, 0.0)  # ... and exactly zero here


def _require_equal_dims(name: str, query_dim: int, key_dim: int) -> None:
    if query_dim != key_dim:
        raise ValueError(
            f"the {name!r} score needs query_dim == key_dim, got {query_dim} and {key_dim}; "
            f"use 'general', 'concat' or 'additive' for different sizes")


class DotScore(nn.Module):
    """score(h_t, h_s) = h_t^T h_s (Luong et al. 2015, Eq. 8, 'dot'). Needs Dq == Dk.

    sdpa_scale: the `scale` of F.scaled_dot_product_attention that computes this score
    (None on score classes it cannot compute).
    """

    def __init__(self, query_dim: int, key_dim: int):
        super().__init__()
        _require_equal_dims("dot", query_dim, key_dim)
        self.sdpa_scale = 1.0

    def forward(self, query: Tensor, keys: Tensor) -> Tensor:
        """query (..., Tq, D), keys (..., Tk, D) -> (..., Tq, Tk)."""
        return query @ keys.transpose(-1, -2)  # (..., Tq, Tk)


class ScaledDotScore(nn.Module):
    """score(q, k) = q^T k / sqrt(D) (Vaswani et al. 2017, Eq. 1). Needs Dq == Dk."""

    def __init__(self, query_dim: int, key_dim: int):
        super().__init__()
        _require_equal_dims("scaled_dot", query_dim, key_dim)
        self.scale = 1.0 / math.sqrt(key_dim)
        self.sdpa_scale = self.scale

    def forward(self, query: Tensor, keys: Tensor) -> Tensor:
        """query (..., Tq, D), keys (..., Tk, D) -> (..., Tq, Tk)."""
        return (query * self.scale) @ keys.transpose(-1, -2)  # (..., Tq, Tk)


class GeneralScore(nn.Module):
    """score(h_t, h_s) = h_t^T W_a h_s (Luong et al. 2015, Eq. 8, 'general').

    W_a (Dq, Dk) is stored as nn.Linear(Dq, Dk).weight = W_a^T and applied to the query,
    (W_a^T h_t)^T h_s: one (Tq, Dq) projection instead of a (Tk, Dk) one per decoder step.
    """

    def __init__(self, query_dim: int, key_dim: int):
        super().__init__()
        self.sdpa_scale = None  # not a dot product: no fused kernel
        self.W_a = nn.Linear(query_dim, key_dim, bias=False)

    def forward(self, query: Tensor, keys: Tensor) -> Tensor:
        """query (..., Tq, Dq), keys (..., Tk, Dk) -> (..., Tq, Tk)."""
        return self.W_a(query) @ keys.transpose(-1, -2)  # (..., Tq, Dk) @ (..., Dk, Tk)


def _mlp_score(q_part: Tensor, k_part: Tensor, v: nn.Linear, extra: Tensor | None = None) -> Tensor:
    """v^T tanh(q_part + k_part [+ extra]): q_part (..., Tq, A), k_part (..., Tk, A) -> (..., Tq, Tk).

    extra: None, or a further term (..., Tq, Tk, A) inside the tanh: coverage's V C_{t-1,j} (nmt.attention.coverage).
    """
    hidden = q_part.unsqueeze(-2) + k_part.unsqueeze(-3)  # (..., Tq, Tk, A)
    if extra is not None:
        hidden = hidden + extra  # (..., Tq, Tk, A)
    return v(torch.tanh(hidden)).squeeze(-1)  # (..., Tq, Tk)


class ConcatScore(nn.Module):
    """score(h_t, h_s) = v_a^T tanh(W_a [h_t; h_s]) (Luong et al. 2015, Eq. 8, 'concat').

    W_a (A, Dq + Dk), A = key_dim, is one matrix as in the paper; it is applied as its query
    and key column blocks, W_a[h_t; h_s] = W_q h_t + W_k h_s, so the (Tq, Tk, Dq + Dk)
    concatenation is never built. Same function class as AdditiveScore (only the flow and the
    query differ between the papers).
    """

    def __init__(self, query_dim: int, key_dim: int):
        super().__init__()
        self.sdpa_scale = None  # not a dot product: no fused kernel
        self.query_dim = query_dim
        self.W_a = nn.Linear(query_dim + key_dim, key_dim, bias=False)
        self.v_a = nn.Linear(key_dim, 1, bias=False)

    def forward(self, query: Tensor, keys: Tensor, extra: Tensor | None = None) -> Tensor:
        """query (..., Tq, Dq), keys (..., Tk, Dk), extra (..., Tq, Tk, A) | None (coverage) -> (..., Tq, Tk)."""
        w_q = self.W_a.weight[:, : self.query_dim]  # (A, Dq)
        w_k = self.W_a.weight[:, self.query_dim:]  # (A, Dk)
        return _mlp_score(F.linear(query, w_q), F.linear(keys, w_k), self.v_a, extra)


class AdditiveScore(nn.Module):
    """e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j) (Bahdanau et al. 2015, Eq. 6 / App. A.1.2).

    Hidden size A = key_dim. U_a h_j does not depend on the decoder step; it is recomputed
    per call, which costs one (Tk, Dk) x (Dk, A) product per step.
    """

    def __init__(self, query_dim: int, key_dim: int):
        super().__init__()
        self.sdpa_scale = None  # not a dot product: no fused kernel
        self.W_a = nn.Linear(query_dim, key_dim, bias=False)
        self.U_a = nn.Linear(key_dim, key_dim, bias=False)
        self.v_a = nn.Linear(key_dim, 1, bias=False)

    def forward(self, query: Tensor, keys: Tensor, extra: Tensor | None = None) -> Tensor:
        """query (..., Tq, Dq), keys (..., Tk, Dk), extra (..., Tq, Tk, A) | None (coverage) -> (..., Tq, Tk)."""
        return _mlp_score(self.W_a(query), self.U_a(keys), self.v_a, extra)


class LocationScore(nn.Module):
    """a_t = softmax(W_a h_t) (Luong et al. 2015, Eq. 8, 'location'): the scores depend on the query only.

    W_a (max_keys, Dq) scores every source *position* up to max_keys; the (..., Tq, max_keys) projection is
    cut to the Tk keys of the batch, and the attention's mask removes padding as for any score. The keys'
    contents are never read. Positions from max_keys on have no row of W_a: they score -inf, so a source
    longer than max_keys pieces is attended on its first max_keys pieces only (set max_keys above the
    longest source, e.g. data.max_len + 1 for the eos).
    """

    def __init__(self, query_dim: int, key_dim: int, max_keys: int):
        super().__init__()
        if max_keys < 1:
            raise ValueError(f"model.attention.max_keys must be >= 1 (the longest source the location score "
                             f"attends), got {max_keys}")
        self.sdpa_scale = None  # not a dot product: no fused kernel
        self.max_keys = max_keys
        self.W_a = nn.Linear(query_dim, max_keys, bias=False)

    def forward(self, query: Tensor, keys: Tensor) -> Tensor:
        """query (..., Tq, Dq), keys (..., Tk, Dk) (only Tk is read) -> (..., Tq, Tk)."""
        Tk = keys.size(-2)
        scores = self.W_a(query)[..., :Tk]  # (..., Tq, min(Tk, max_keys))
        return F.pad(scores, (0, Tk - scores.size(-1)), value=float("-inf"))  # (..., Tq, Tk)


SCORES: dict[str, type[nn.Module]] = {
    "dot": DotScore,
    "scaled_dot": ScaledDotScore,
    "general": GeneralScore,
    "concat": ConcatScore,
    "additive": AdditiveScore,
    "location": LocationScore,
}


def build_score(name: str, query_dim: int, key_dim: int, max_keys: int | None = None) -> nn.Module:
    """The score module called `name` (one of SCORES) for the given query and key sizes.

    max_keys: the 'location' score's number of source positions (model.attention.max_keys), None for the
    scores that read the keys' contents.
    """
    if name not in SCORES:
        raise ValueError(f"model.attention.score must be one of {sorted(SCORES)}, got {name!r}")
    if (name == "location") != (max_keys is not None):
        raise ValueError(f"model.attention.max_keys goes with score 'location' only (got score {name!r}, "
                         f"max_keys {max_keys}): set both, e.g. score=location max_keys=128, or neither")
    return SCORES[name](query_dim, key_dim, max_keys) if name == "location" else SCORES[name](query_dim, key_dim)
