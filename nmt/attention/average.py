"""Average attention network: a decoder self-attention slot whose weights are a cumulative average
(Zhang, Xiong & Su 2018, "Accelerating Neural Transformer via an Average Attention Network", Sec. 3)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from nmt.attention.base import AttentionOutput
from nmt.attention.intervention import WeightHook, intervene
from nmt.attention.windows import aligned_positions, causal_mask


class AverageAttention(nn.Module):
    """The average attention network (AAN) of Zhang et al. 2018 as a Transformer decoder self-attention slot.

    For the inputs y_1..y_j of a target prefix (the slot's `values`; `query` is y_j itself):

        Eq. 1   g_j = FFN((1/j) * sum_{k<=j} y_k)                  the cumulative average, then ...
        Eq. 2   FFN(x) = max(0, x W_1 + b_1) W_2 + b_2              ... its position-wise feed-forward
        Eq. 3   i_j, f_j = sigmoid(W [y_j; g_j] + b)                input and forget gates (one (2D, 2D) W)
        Eq. 4   h~_j = i_j * y_j + f_j * g_j                        the slot's output, context (B, Tq, D)
        Eq. 5   h_j = LayerNorm(y_j + h~_j)

    Eq. 5 is not in this module: the decoder's Residual block wraps every self-attention slot alike
    (nmt.models.transformer.Residual). Post-norm is exactly Eq. 5 with dropout on h~_j,
    LayerNorm(y + Dropout(h~)); pre-norm feeds y = LayerNorm(x) and adds x + Dropout(h~) (Wang et al. 2019).

    The weights are the average itself: a (B, 1, Tq, Tk) uniform lower-triangular matrix, row j holding
    1/j on the j keys at or before the query (and allowed by the mask), so the explorer, the statistics
    and the counterfactuals read it like any slot's. H = 1; query_dim must equal key_dim (Eq. 4 adds y_j
    and g_j). Keys are not read (an average has no scores): only values.

    The cache (KVAttention) has two forms, told apart by k's last dim:
      running sum   k (B, 1, t, 0): no data, its dim 2 counts the t positions seen;
                    v (B, 1, T, D): the float32 prefix sums S_j = sum_{k<=j} y_k at the T positions of the
                    last extend_kv; the next call continues from S of the last one. One decoding step
                    (T = 1) leaves D floats per sentence whatever t: O(d), not O(t d) as multi-head keys.
      explicit      k = v (B, 1, t, D): every input so far, kept only while an intervention is set
                    (counterfactuals re-decode with a hook: the hook's weights must weight real values).
    The running sum serves a decoder only: its queries are the T newest positions and every key at or
    before a query is attended (the decoder's causal mask), so `mask` and query_positions are not read.

    The intervention hook (nmt.attention.intervention) gets the caller's mask as `allowed`: in a decoder
    that is the causal mask, so a counterfactual redistributes over the prefix, where every counterfactual
    of nmt.alignment.counterfactual leaves the already-uniform average unchanged (the AAN's answer: nothing
    to explain); called alone with a padding mask, a hook may also weight keys after the query.
    """

    intervention: WeightHook | None = None  # counterfactuals only: forces the explicit path and cache
    window_half_width: int | None = None    # the whole prefix: no window
    num_heads = 1

    def __init__(self, query_dim: int, key_dim: int, ff_size: int, dropout: float):
        super().__init__()
        if query_dim != key_dim:
            raise ValueError(f"average attention adds the query y_j to the average (Zhang et al. 2018, Eq. 4), so "
                             f"query_dim must equal key_dim, got {query_dim} and {key_dim}: use it as a "
                             "Transformer decoder's self_attention (model/slot/aan)")
        if ff_size < 1:
            raise ValueError(f"model.attention.ff_size must be >= 1 (the hidden size of Eq. 2's FFN), got {ff_size}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.attention.dropout must be in [0, 1), got {dropout}")
        self.ffn = nn.Sequential(nn.Linear(key_dim, ff_size), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(ff_size, key_dim))  # Eq. 2
        self.gates = nn.Linear(2 * key_dim, 2 * key_dim)  # Eq. 3: W [y_j; g_j] -> (i_j, f_j)

    def _gated(self, query: Tensor, average: Tensor) -> Tensor:
        """query y_j (B, Tq, D), average (B, Tq, D) -> h~_j (B, Tq, D) (Eq. 1-4 after the average)."""
        g = self.ffn(average.to(query.dtype))  # (B, Tq, D) Eq. 1-2
        i, f = torch.sigmoid(self.gates(torch.cat([query, g], dim=-1))).chunk(2, dim=-1)  # (B, Tq, D) each
        return i * query + f * g  # (B, Tq, D) Eq. 4

    def _explicit(self, query: Tensor, values: Tensor, mask: Tensor | None, query_positions: Tensor | None,
                  need_weights: bool) -> AttentionOutput:
        """values (B, Tk, D): the average as weights @ values, the weights through the intervention hook."""
        B, Tq, _ = query.shape
        Tk = values.size(1)
        if query_positions is None:
            query_positions = aligned_positions(B, Tq, Tk, query.device)  # (B, Tq)
        attended = causal_mask(query_positions, Tk)  # (B, Tq, Tk)
        if mask is not None:
            attended = attended & mask
        mass = attended.to(values.dtype)  # (B, Tq, Tk)
        weights = mass / mass.sum(-1, keepdim=True).clamp_min(1.0)  # (B, Tq, Tk) 1/j on the prefix
        weights = intervene(self.intervention, weights, mask)  # (B, Tq, Tk); unchanged by default
        context = self._gated(query, weights @ values)  # (B, Tq, D)
        shown = weights.unsqueeze(1) if need_weights else weights.new_zeros(B, 1, Tq, 0)  # (B, 1, Tq, Tk|0)
        return AttentionOutput(context, shown)

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None, *,
                query_positions: Tensor | None = None, key_positions: Tensor | None = None,
                state: Tensor | None = None, need_weights: bool = True) -> AttentionOutput:
        """query (B, Tq, D), keys (B, Tk, D) (unused), values (B, Tk, D), mask bool broadcastable to (B, Tq, Tk)
        -> context (B, Tq, D), weights (B, 1, Tq, Tk) ((B, 1, Tq, 0) when need_weights is False). Stateless."""
        return self._explicit(query, values, mask, query_positions, need_weights)

    def project_kv(self, keys: Tensor, values: Tensor, *,
                   key_positions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """keys (unused), values (B, Tk, D) -> the cache of those Tk positions (the class docstring's forms)."""
        B, Tk, D = values.shape
        empty = values.new_zeros(B, 1, 0, D)  # (B, 1, 0, D)
        return self.extend_kv((empty, empty), keys, values, key_positions=key_positions)

    def extend_kv(self, past: tuple[Tensor, Tensor], keys: Tensor, values: Tensor, *,
                  key_positions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """past cache, values (B, T, D) of T new positions -> the cache after them (keys are not read)."""
        k, v = past
        B, T, D = values.shape
        t, running = k.size(2), k.size(-1) == 0 and k.size(2) > 0
        if self.intervention is not None:  # the explicit cache: every input, for the hook's weights
            if running:
                raise ValueError("an intervention was set in the middle of a cached decoding: the running-sum "
                                 "cache keeps no single input; set it before model.init_state")
            grown = torch.cat([v, values.unsqueeze(1)], dim=2)  # (B, 1, t+T, D)
            return grown, grown
        if running:
            before = v[:, :, -1:]  # (B, 1, 1, D) S of the last position seen
        else:  # empty, or an explicit cache (the hook was removed): sum its inputs
            before = v.float().sum(2, keepdim=True)  # (B, 1, 1, D)
        sums = before + values.float().cumsum(1).unsqueeze(1)  # (B, 1, T, D) S_{t+1..t+T}
        return values.new_zeros(B, 1, t + T, 0), sums  # k: (B, 1, t+T, 0), its dim 2 the count

    def attend(self, query: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, *,
               query_positions: Tensor | None = None, key_positions: Tensor | None = None,
               need_weights: bool = True) -> AttentionOutput:
        """query (B, Tq, D) and a cache of Tk positions from project_kv/extend_kv -> context (B, Tq, D),
        weights (B, 1, Tq, Tk) ((B, 1, Tq, 0) when need_weights is False)."""
        if k.size(-1) != 0 or k.size(2) == 0:  # explicit cache (k = v = the inputs), or nothing cached
            return self._explicit(query, v[:, 0], mask, query_positions, need_weights)
        if self.intervention is not None:
            raise ValueError("a running-sum cache cannot take an intervention (it keeps no single input): set the "
                             "intervention before model.init_state, so the cache keeps every input")
        B, Tq, _ = query.shape
        Tk = k.size(2)
        if v.size(2) != Tq:
            raise ValueError(f"a running-sum cache answers the {v.size(2)} positions of its last extend_kv, got "
                             f"{Tq} queries: attend right after extend_kv with the same positions")
        count = torch.arange(Tk - Tq + 1, Tk + 1, device=query.device, dtype=v.dtype)  # (Tq,) j of each query
        context = self._gated(query, v[:, 0] / count[:, None])  # (B, Tq, D) Eq. 1-4
        if not need_weights:
            return AttentionOutput(context, query.new_zeros(B, 1, Tq, 0))
        prefix = causal_mask(aligned_positions(B, Tq, Tk, query.device), Tk)  # (B, Tq, Tk)
        weights = prefix.to(query.dtype) / count.to(query.dtype)[:, None]  # (B, Tq, Tk) 1/j on the prefix
        return AttentionOutput(context, weights.unsqueeze(1))  # weights (B, 1, Tq, Tk)
