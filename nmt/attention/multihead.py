"""Multi-head attention with global, causal or sliding-window masks (Vaswani et al. 2017, Sec. 3.2)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.attention.base import AttentionOutput, build_score
from nmt.attention.intervention import WeightHook, intervene
from nmt.attention.normalisers import Normaliser
from nmt.attention.windows import aligned_positions, causal_mask, window_mask

WINDOWS = ("global", "causal", "local")
MH_SCORES = ("scaled_dot", "dot", "general")


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1..head_H) W^O, head_i = Attention(Q W_i^Q, K W_i^K,
    V W_i^V) (Vaswani et al. 2017, Sec. 3.2.2); Attention = softmax(score) V per head, score
    'scaled_dot' (Eq. 1), 'dot' or 'general' (Luong Eq. 8, one W shared by the heads). The softmax
    may be replaced by sparsemax, entmax15 or entmax_alpha (`normaliser`, nmt.attention.normalisers;
    learn_alpha: one alpha per head, Correia et al. 2019); only softmax can take the fused path.

    Model size d = key_dim, head size d / num_heads; the query is projected from query_dim,
    keys and values from key_dim; context is (B, Tq, key_dim). Window:
      global: the given mask only;
      causal: mask & (key position <= query position)            (decoder self-attention);
      local:  mask & (|key position - query position| <= half_width) (sliding window).
    query_positions (B, Tq) default to arange(Tq), shifted so the last query sits on the
    last key when Tq < Tk (incremental decoding against cached keys).

    need_weights=False: with a dot/scaled_dot score and the softmax the context comes from
    F.scaled_dot_product_attention (fused kernels), and `weights` is then a zero-size
    (B, H, Tq, 0) tensor ("not computed"); ask need_weights=True to log them. Dropout acts
    on the attention probabilities in training only; returned weights are pre-dropout.
    For incremental decoding, cache `project_kv(keys, values)` and call `attend`.
    """

    intervention: WeightHook | None = None  # counterfactual tests only (forces the explicit path)

    def __init__(self, query_dim: int, key_dim: int, num_heads: int, dropout: float,
                 window: str, half_width: int, score: str, *, normaliser: str = "softmax",
                 alpha: float | None = None, learn_alpha: bool = False):
        super().__init__()
        _validate(key_dim, num_heads, dropout, window, half_width, score)
        self.num_heads = num_heads
        self.head_dim = key_dim // num_heads
        self.dropout = dropout
        self.window = window
        self.half_width = half_width
        self.window_half_width = half_width if window == "local" else None  # the contract's window metadata
        self.q_proj = nn.Linear(query_dim, key_dim)
        self.k_proj = nn.Linear(key_dim, key_dim)
        self.v_proj = nn.Linear(key_dim, key_dim)
        self.out_proj = nn.Linear(key_dim, key_dim)
        self.score = build_score(score, self.head_dim, self.head_dim)
        self.normaliser = Normaliser(normaliser, alpha, learn_alpha, num_heads)

    def _split(self, x: Tensor) -> Tensor:
        """(B, T, d) -> (B, H, T, dh)."""
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, dh)

    def project_kv(self, keys: Tensor, values: Tensor, *,
                   key_positions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """keys (B, Tk, key_dim), values (B, Tk, key_dim) -> k, v, each (B, H, Tk, dh)."""
        return self._split(self.k_proj(keys)), self._split(self.v_proj(values))

    def extend_kv(self, past: tuple[Tensor, Tensor], keys: Tensor, values: Tensor, *,
                  key_positions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """past k, v (B, H, t, dh), keys/values (B, T, key_dim) of T new positions -> k, v (B, H, t+T, dh)."""
        k, v = self.project_kv(keys, values, key_positions=key_positions)  # (B, H, T, dh) each
        return torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)  # (B, H, t+T, dh)

    def _full_mask(self, mask: Tensor | None, B: int, Tq: int, Tk: int,
                   query_positions: Tensor | None, device: torch.device) -> Tensor | None:
        """The given mask combined with the window -> bool (B|1, 1, Tq|1, Tk) or None."""
        if self.window != "global":
            if query_positions is None:
                query_positions = aligned_positions(B, Tq, Tk, device)  # (B, Tq)
            if self.window == "causal":
                win = causal_mask(query_positions, Tk)  # (B, Tq, Tk)
            else:
                win = window_mask(query_positions, Tk, self.half_width)  # (B, Tq, Tk)
            mask = win if mask is None else mask & win
        return None if mask is None else mask.unsqueeze(-3)  # (B, 1, Tq, Tk)

    def attend(self, query: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, *,
               query_positions: Tensor | None = None, key_positions: Tensor | None = None,
               need_weights: bool = True) -> AttentionOutput:
        """query (B, Tq, query_dim), k, v (B, H, Tk, dh) from project_kv, mask bool broadcastable
        to (B, Tq, Tk) -> context (B, Tq, key_dim), weights (B, H, Tq, Tk) (or (B, H, Tq, 0)
        when need_weights is False and the fused path ran)."""
        B, Tq, _ = query.shape
        q = self._split(self.q_proj(query))  # (B, H, Tq, dh)
        if (not need_weights and self.score.sdpa_scale is not None and self.intervention is None
                and self.normaliser.kind == "softmax"):  # the fused kernels compute softmax only
            heads = self._fused(q, k, v, mask, query_positions)  # (B, H, Tq, dh)
            weights = q.new_zeros(B, self.num_heads, Tq, 0)  # (B, H, Tq, 0): not computed
        else:
            mask4 = self._full_mask(mask, B, Tq, k.size(2), query_positions, query.device)  # (B|1, 1, Tq|1, Tk)
            weights = self.normaliser(self.score(q, k), mask4)  # (B, H, Tq, Tk)
            weights = intervene(self.intervention, weights, mask4)  # (B, H, Tq, Tk); unchanged by default
            dropped = F.dropout(weights, self.dropout, self.training)  # (B, H, Tq, Tk)
            heads = dropped @ v  # (B, H, Tq, dh)
        merged = heads.transpose(1, 2).reshape(B, Tq, -1)  # (B, Tq, d)
        return AttentionOutput(self.out_proj(merged), weights)

    def _fused(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None,
               query_positions: Tensor | None) -> Tensor:
        """F.scaled_dot_product_attention -> (B, H, Tq, dh), zeros for rows with no key.

        No mask where nothing is masked (a global window without a mask; a causal window's one query on
        the last key) and is_causal for a causal window over the default positions with Tq = Tk (decoder
        self-attention under teacher forcing): an explicit mask rules the flash kernel out on a GPU.
        Otherwise a row with every key masked would come back NaN from the fused kernels; it attends
        everywhere instead (finite values and gradients) and its output is zeroed, matching
        masked_softmax's zero row.
        """
        p = self.dropout if self.training else 0.0
        B, _, Tq, _ = q.shape
        Tk = k.size(2)
        default = mask is None and query_positions is None  # the window alone, over aligned positions
        if default and self.window == "causal" and Tq == Tk:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True, scale=self.score.sdpa_scale)
        mask4 = None if default and self.window == "causal" and Tq == 1 else \
            self._full_mask(mask, B, Tq, Tk, query_positions, q.device)  # (B|1, 1, Tq|1, Tk) or None
        if mask4 is None:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=p, scale=self.score.sdpa_scale)
        has_key = mask4.any(-1, keepdim=True)  # (B, 1, Tq, 1)
        safe = mask4 | ~has_key  # (B, 1, Tq, Tk)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=safe, dropout_p=p,
                                             scale=self.score.sdpa_scale)  # (B, H, Tq, dh)
        return out * has_key

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None, *,
                query_positions: Tensor | None = None, key_positions: Tensor | None = None,
                state: Tensor | None = None, need_weights: bool = True) -> AttentionOutput:
        """query (B, Tq, query_dim), keys (B, Tk, key_dim), values (B, Tk, key_dim), mask bool
        broadcastable to (B, Tq, Tk) -> context (B, Tq, key_dim), weights (B, H, Tq, Tk). Stateless."""
        k, v = self.project_kv(keys, values, key_positions=key_positions)  # (B, H, Tk, dh) each
        return self.attend(query, k, v, mask, query_positions=query_positions, key_positions=key_positions,
                           need_weights=need_weights)


def _validate(key_dim: int, num_heads: int, dropout: float, window: str, half_width: int,
              score: str) -> None:
    """Reject bad multi-head settings, naming the config key."""
    if num_heads <= 0 or key_dim % num_heads != 0:
        raise ValueError(f"model.attention.num_heads must divide the model size: key_dim "
                         f"{key_dim} is not divisible by num_heads {num_heads}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"model.attention.dropout must be in [0, 1), got {dropout}")
    if window not in WINDOWS:
        raise ValueError(f"model.attention.window must be one of {WINDOWS}, got {window!r}")
    if half_width < 0:
        raise ValueError(f"model.attention.half_width must be >= 0, got {half_width}")
    if score not in MH_SCORES:
        raise ValueError(f"model.attention.score must be one of {MH_SCORES} for multi-head "
                         f"attention, got {score!r}")
