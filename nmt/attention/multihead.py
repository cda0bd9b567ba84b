"""Multi-head attention with global, causal or sliding-window masks (Vaswani et al. 2017, Sec. 3.2), a position
part (nmt.attention.positional: Shaw, T5, rotary, ALiBi) and grouped-query heads (Ainslie et al. 2023)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.attention.base import AttentionOutput, build_score
from nmt.attention.intervention import WeightHook, intervene
from nmt.attention.normalisers import Normaliser
from nmt.attention.positional import build_position
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
    last key when Tq < Tk (incremental decoding against cached keys); key_positions (B, Tk) to arange(Tk).

    position: none | shaw | t5 | rotary | alibi, the position part (nmt.attention.positional; its settings
    max_relative_distance (shaw), num_buckets and max_distance (t5), rotary_base (rotary)). num_kv_heads:
    grouped-query attention (Ainslie et al. 2023; 1 = multi-query, Shazeer 2019): keys and values have
    num_kv_heads heads, query head h reads key/value head h // (num_heads / num_kv_heads); None = num_heads.
    The weights stay (B, num_heads, Tq, Tk).

    need_weights=False: with a dot/scaled_dot score and the softmax the context comes from
    F.scaled_dot_product_attention (fused kernels; a T5/ALiBi bias as its float attn_mask, RoPE rotating
    q and k before it; never with Shaw), and `weights` is then a zero-size (B, H, Tq, 0) tensor
    ("not computed"); ask need_weights=True to log them. Dropout acts on the attention probabilities in
    training only; returned weights are pre-dropout.
    For incremental decoding, cache `project_kv(keys, values)` (grow it with `extend_kv`) and call `attend`.
    """

    intervention: WeightHook | None = None  # counterfactual tests only (forces the explicit path)

    def __init__(self, query_dim: int, key_dim: int, num_heads: int, dropout: float,
                 window: str, half_width: int, score: str, *, normaliser: str = "softmax",
                 alpha: float | None = None, learn_alpha: bool = False, position: str = "none",
                 max_relative_distance: int = 16, num_buckets: int = 32, max_distance: int = 128,
                 rotary_base: float = 10000.0, num_kv_heads: int | None = None):
        super().__init__()
        _validate(key_dim, num_heads, dropout, window, half_width, score)
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        _validate_kv(num_heads, num_kv_heads, position, score)
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.head_dim = key_dim // num_heads
        self.dropout = dropout
        self.window = window
        self.half_width = half_width
        self.window_half_width = half_width if window == "local" else None  # the contract's window metadata
        self.q_proj = nn.Linear(query_dim, key_dim)
        self.k_proj = nn.Linear(key_dim, num_kv_heads * self.head_dim)
        self.v_proj = nn.Linear(key_dim, num_kv_heads * self.head_dim)
        self.out_proj = nn.Linear(key_dim, key_dim)
        self.score = build_score(score, self.head_dim, self.head_dim)
        self.normaliser = Normaliser(normaliser, alpha, learn_alpha, num_heads)
        self.position = build_position(position, num_heads, self.head_dim, window == "causal",
                                       max_relative_distance=max_relative_distance, num_buckets=num_buckets,
                                       max_distance=max_distance, rotary_base=rotary_base)

    def _split(self, x: Tensor, heads: int) -> Tensor:
        """(B, T, heads * dh) -> (B, heads, T, dh)."""
        B, T, _ = x.shape
        return x.view(B, T, heads, self.head_dim).transpose(1, 2)  # (B, heads, T, dh)

    def project_kv(self, keys: Tensor, values: Tensor, *,
                   key_positions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """keys (B, Tk, key_dim), values (B, Tk, key_dim), key_positions (B, Tk) (None: 0..Tk-1) -> k, v, each
        (B, Hkv, Tk, dh); a rotary position part stores k rotated at its positions."""
        k = self._split(self.k_proj(keys), self.num_kv_heads)  # (B, Hkv, Tk, dh)
        if self.position.rotates_keys:
            k = self.position.keys(k, _key_positions(key_positions, keys.size(1), 0, keys.device))
        return k, self._split(self.v_proj(values), self.num_kv_heads)

    def extend_kv(self, past: tuple[Tensor, Tensor], keys: Tensor, values: Tensor, *,
                  key_positions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """past k, v (B, Hkv, t, dh), keys/values (B, T, key_dim) of T new positions (key_positions (B, T); None:
        t..t+T-1) -> k, v (B, Hkv, t+T, dh)."""
        if key_positions is None and self.position.rotates_keys:
            key_positions = _key_positions(None, keys.size(1), past[0].size(2), keys.device)  # (1, T)
        k, v = self.project_kv(keys, values, key_positions=key_positions)  # (B, Hkv, T, dh) each
        return torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)  # (B, Hkv, t+T, dh)

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
        """query (B, Tq, query_dim), k, v (B, Hkv, Tk, dh) from project_kv, mask bool broadcastable
        to (B, Tq, Tk) -> context (B, Tq, key_dim), weights (B, H, Tq, Tk) (or (B, H, Tq, 0)
        when need_weights is False and the fused path ran)."""
        B, Tq, _ = query.shape
        Tk = k.size(2)
        q = self._split(self.q_proj(query), self.num_heads)  # (B, H, Tq, dh)
        qpos = kpos = bias = None
        if self.position.kind != "none":
            qpos = _rows(query_positions) if query_positions is not None else \
                aligned_positions(1, Tq, Tk, query.device)  # (B|1, Tq)
            kpos = _key_positions(key_positions, Tk, 0, query.device)  # (B|1, Tk)
            q = self.position.queries(q, qpos)  # (B, H, Tq, dh): rotary rotates
            bias = self.position.score_term(q, self.score, qpos, kpos)  # (B|1, H, Tq, Tk) or None
        if (not need_weights and self.score.sdpa_scale is not None and self.intervention is None
                and self.normaliser.kind == "softmax" and self.position.fusable):  # what the fused kernels compute
            heads = self._fused(q, k, v, mask, query_positions, bias)  # (B, H, Tq, dh)
            weights = q.new_zeros(B, self.num_heads, Tq, 0)  # (B, H, Tq, 0): not computed
        else:
            k, v = self._repeat_kv(k), self._repeat_kv(v)  # (B, H, Tk, dh): each query head's key/value head
            mask4 = self._full_mask(mask, B, Tq, Tk, query_positions, query.device)  # (B|1, 1, Tq|1, Tk)
            scores = self.score(q, k) if bias is None else self.score(q, k) + bias  # (B, H, Tq, Tk)
            weights = self.normaliser(scores, mask4)  # (B, H, Tq, Tk)
            weights = intervene(self.intervention, weights, mask4)  # (B, H, Tq, Tk); unchanged by default
            dropped = F.dropout(weights, self.dropout, self.training)  # (B, H, Tq, Tk)
            heads = dropped @ v  # (B, H, Tq, dh)
            extra = None if qpos is None else self.position.value_term(dropped, qpos, kpos)  # Shaw's a^V term
            heads = heads if extra is None else heads + extra  # (B, H, Tq, dh)
        merged = heads.transpose(1, 2).reshape(B, Tq, -1)  # (B, Tq, d)
        return AttentionOutput(self.out_proj(merged), weights)

    def _repeat_kv(self, x: Tensor) -> Tensor:
        """(B, Hkv, Tk, dh) -> (B, H, Tk, dh): query head h reads key/value head h // (H / Hkv)."""
        groups = self.num_heads // self.num_kv_heads
        return x if groups == 1 else x.repeat_interleave(groups, dim=1)  # (B, H, Tk, dh)

    def _fused(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None,
               query_positions: Tensor | None, bias: Tensor | None) -> Tensor:
        """F.scaled_dot_product_attention -> (B, H, Tq, dh), zeros for rows with no key.

        No mask where nothing is masked (a global window without a mask; a causal window's one query on
        the last key) and is_causal for a causal window over the default positions with Tq = Tk (decoder
        self-attention under teacher forcing): an explicit mask rules the flash kernel out on a GPU.
        A float score bias (T5, ALiBi; (B|1, H, Tq, Tk)) is the attn_mask, -inf where the boolean mask is False.
        Otherwise a row with every key masked would come back NaN from the fused kernels; it attends
        everywhere instead (finite values and gradients) and its output is zeroed, matching
        masked_softmax's zero row. Grouped-query k, v (B, Hkv, Tk, dh) go in as they are (enable_gqa).
        """
        p = self.dropout if self.training else 0.0
        B, H, Tq, _ = q.shape
        Tk = k.size(2)
        extra = {"scale": self.score.sdpa_scale, "enable_gqa": self.num_kv_heads != H}
        default = mask is None and query_positions is None  # the window alone, over aligned positions
        if bias is None and default and self.window == "causal" and Tq == Tk:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True, **extra)
        mask4 = None if default and self.window == "causal" and Tq == 1 else \
            self._full_mask(mask, B, Tq, Tk, query_positions, q.device)  # (B|1, 1, Tq|1, Tk) or None
        if mask4 is None:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p, **extra)
        has_key = mask4.any(-1, keepdim=True)  # (B|1, 1, Tq|1, 1)
        safe = mask4 | ~has_key  # (B|1, 1, Tq|1, Tk)
        attn_mask = safe if bias is None else bias.masked_fill(~safe, float("-inf"))  # (B|1, H|1, Tq, Tk)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p, **extra)  # (B, H, Tq, dh)
        return out * has_key

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None, *,
                query_positions: Tensor | None = None, key_positions: Tensor | None = None,
                state: Tensor | None = None, need_weights: bool = True) -> AttentionOutput:
        """query (B, Tq, query_dim), keys (B, Tk, key_dim), values (B, Tk, key_dim), mask bool
        broadcastable to (B, Tq, Tk) -> context (B, Tq, key_dim), weights (B, H, Tq, Tk). Stateless."""
        k, v = self.project_kv(keys, values, key_positions=key_positions)  # (B, Hkv, Tk, dh) each
        return self.attend(query, k, v, mask, query_positions=query_positions, key_positions=key_positions,
                           need_weights=need_weights)


def _rows(positions: Tensor) -> Tensor:
    """(B, T) positions, or their first row (1, T) when every row is the same by construction (an expand():
    batch stride 0), so a position bias is computed once for the batch rather than B times."""
    return positions[:1] if positions.size(0) > 1 and positions.stride(0) == 0 else positions


def _key_positions(key_positions: Tensor | None, Tk: int, start: int, device: torch.device) -> Tensor:
    """The given key positions (B|1, Tk), or start..start+Tk-1 as (1, Tk)."""
    if key_positions is not None:
        return _rows(key_positions)
    return torch.arange(start, start + Tk, device=device)[None]  # (1, Tk)


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


def _validate_kv(num_heads: int, num_kv_heads: int, position: str, score: str) -> None:
    """Reject bad grouped-query and position settings, naming the config key."""
    if num_kv_heads <= 0 or num_heads % num_kv_heads != 0:
        raise ValueError(f"model.attention.num_kv_heads must divide num_heads ({num_heads}): each key/value head "
                         f"serves num_heads / num_kv_heads query heads; got {num_kv_heads} (null = num_heads, "
                         "1 = multi-query)")
    if position == "rotary" and score not in ("scaled_dot", "dot"):
        raise ValueError(f"position=rotary needs model.attention.score scaled_dot or dot, got {score!r} (a "
                         "bilinear W between the rotated q and k would break RoPE's relative form)")
