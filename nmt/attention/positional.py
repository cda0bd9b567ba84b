"""Position inside attention: the part of a multi-head attention type that puts token order into the score.

The Transformer of Vaswani et al. 2017 adds position vectors to its inputs (nmt.models.positions); the methods
here act inside each attention instead, chosen by a slot's `position` key (configs/model/slot/multihead.yaml):

    none    nothing here (positions, if any, were added to the inputs)
    shaw    clipped relative embeddings on keys and values (Shaw et al. 2018): the explicit path only
    t5      one learned scalar per head per log-spaced distance bucket, added to the score (Raffel et al. 2020)
    rotary  q and k rotated by their absolute positions, so q.k depends on i - j only (Su et al. 2021)
    alibi   a fixed linear penalty -m_h |i - j| added to the score (Press et al. 2022)

Every method is a module with the same four hooks, called by MultiHeadAttention:

    queries(q (B, H, Tq, dh), positions (B|1, Tq)) -> q       rotary rotates, the others return q
    keys(k (B, Hkv, Tk, dh), positions (B|1, Tk)) -> k        rotary rotates (the cache holds rotated keys)
    score_term(q, score, query_positions, key_positions) -> (B|1, H, Tq, Tk) added to the scores, or None
    value_term(weights (B, H, Tq, Tk), query_positions, key_positions) -> (B, H, Tq, dh) added to the heads, or None

`fusable` says whether F.scaled_dot_product_attention can compute the result (a rotation before it, a float
bias as its attn_mask); Shaw's value term cannot, so Shaw always takes the explicit path. Positions are
absolute token positions (long); only their differences j - i matter to shaw, t5 and alibi.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

POSITIONS = ("none", "shaw", "t5", "rotary", "alibi")


def relative(query_positions: Tensor, key_positions: Tensor) -> Tensor:
    """j - i for every query i and key j: (B|1, Tq), (B|1, Tk) long -> (B|1, Tq, Tk) long."""
    return key_positions[:, None, :] - query_positions[:, :, None]  # (B|1, Tq, Tk)


class NoPosition(nn.Module):
    """position: none. The base of every method: each hook leaves the attention as it is."""

    kind = "none"
    fusable = True
    rotates_keys = False  # keys() changes k: the cache needs the keys' positions (rotary)

    def queries(self, q: Tensor, positions: Tensor) -> Tensor:
        return q

    def keys(self, k: Tensor, positions: Tensor) -> Tensor:
        return k

    def score_term(self, q: Tensor, score: nn.Module, query_positions: Tensor,
                   key_positions: Tensor) -> Tensor | None:
        return None

    def value_term(self, weights: Tensor, query_positions: Tensor, key_positions: Tensor) -> Tensor | None:
        return None


class ShawRelative(NoPosition):
    """Relative position representations (Shaw et al. 2018, Sec. 3):

        e_ij = x_i W^Q (x_j W^K + a^K_ij)^T / sqrt(d_z)        (Eq. 4)
        z_i  = sum_j alpha_ij (x_j W^V + a^V_ij)                (Eq. 3)
        a^K_ij = w^K_clip(j - i, k),  a^V_ij = w^V_clip(j - i, k),  clip(x, k) = max(-k, min(k, x))   (Eq. 5)

    w^K, w^V: 2k + 1 learned vectors of the head size each, shared by the heads (as in the paper, Sec. 3.3),
    k = max_relative_distance. The key term is the attention's own score of q against the 2k + 1 vectors
    (every multi-head score is bilinear: score(q, k + a) = score(q, k) + score(q, a)), gathered per (i, j), so
    no (Tq, Tk, d_z) tensor is built; the value term sums each row's weights per clipped distance first.
    Tables are named as CTranslate2's relative_position_keys / relative_position_values.
    """

    kind = "shaw"
    fusable = False  # the value term a^V is not something F.scaled_dot_product_attention computes

    def __init__(self, head_dim: int, max_relative_distance: int):
        super().__init__()
        self.max_relative_distance = max_relative_distance
        size = 2 * max_relative_distance + 1
        self.relative_position_keys = nn.Parameter(torch.randn(size, head_dim) * head_dim**-0.5)  # (2k+1, dh)
        self.relative_position_values = nn.Parameter(torch.randn(size, head_dim) * head_dim**-0.5)  # (2k+1, dh)

    def index(self, query_positions: Tensor, key_positions: Tensor) -> Tensor:
        """clip(j - i, k) + k: the table row of every (i, j), (B|1, Tq, Tk) long in [0, 2k]."""
        k = self.max_relative_distance
        return relative(query_positions, key_positions).clamp(-k, k) + k  # (B|1, Tq, Tk)

    def score_term(self, q: Tensor, score: nn.Module, query_positions: Tensor,
                   key_positions: Tensor) -> Tensor:
        """score(q_i, a^K_ij): q (B, H, Tq, dh) -> (B, H, Tq, Tk)."""
        per_distance = score(q, self.relative_position_keys)  # (B, H, Tq, 2k+1)
        idx = self.index(query_positions, key_positions)[:, None]  # (B|1, 1, Tq, Tk)
        B, H, Tq, _ = per_distance.shape
        return per_distance.gather(-1, idx.expand(B, H, Tq, idx.size(-1)))  # (B, H, Tq, Tk)

    def value_term(self, weights: Tensor, query_positions: Tensor, key_positions: Tensor) -> Tensor:
        """sum_j alpha_ij a^V_ij: weights (B, H, Tq, Tk) -> (B, H, Tq, dh)."""
        idx = self.index(query_positions, key_positions)[:, None].expand_as(weights)  # (B, H, Tq, Tk)
        size = self.relative_position_values.size(0)
        per_distance = weights.new_zeros(*weights.shape[:-1], size).scatter_add_(-1, idx, weights)  # (B, H, Tq, 2k+1)
        return per_distance @ self.relative_position_values.to(weights.dtype)  # (B, H, Tq, dh)


def relative_position_bucket(relative_position: Tensor, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> Tensor:
    """T5's bucket of a relative position j - i (Raffel et al. 2020, Sec. 2.1; the `_relative_position_bucket`
    of the T5 code): (...) long -> (...) long in [0, num_buckets).

    Bidirectional: half the buckets for keys before the query, half for keys after it. Within a half, distances
    below max_exact = half / 2 have a bucket each; larger ones share log-spaced buckets up to max_distance, and
    every distance from max_distance on falls into the last bucket. Unidirectional (causal): keys after the
    query (j > i) all fall into bucket 0 (the causal mask removes them anyway).
    """
    n = -relative_position  # i - j: > 0 for keys before the query
    bucket = torch.zeros_like(n)
    if bidirectional:
        num_buckets //= 2
        bucket = bucket + (n < 0).long() * num_buckets
        n = n.abs()
    else:
        n = n.clamp_min(0)
    max_exact = num_buckets // 2
    log_ratio = torch.log(n.float().clamp_min(1) / max_exact) / math.log(max_distance / max_exact)
    large = (max_exact + (log_ratio * (num_buckets - max_exact)).long()).clamp_max(num_buckets - 1)
    return bucket + torch.where(n < max_exact, n, large)


class T5Bias(NoPosition):
    """T5's relative attention bias (Raffel et al. 2020, Sec. 2.1): score_ij += b_h[bucket(j - i)], one learned
    scalar per head per bucket (relative_position_bucket). Bidirectional buckets for encoder self-attention,
    unidirectional for a causal window (decoder self-attention). The table is named as in T5's code
    (relative_attention_bias, (num_buckets, H)); T5 shares it across a stack's layers, which build_model does
    when the slot's share_position_bias is true. The bias is a float (B|1, H, Tq, Tk) tensor: the fused kernel
    takes it as its attn_mask.
    """

    kind = "t5"

    def __init__(self, num_heads: int, model_dim: int, num_buckets: int, max_distance: int, bidirectional: bool):
        super().__init__()
        self.num_buckets, self.max_distance, self.bidirectional = num_buckets, max_distance, bidirectional
        self.relative_attention_bias = nn.Embedding(num_buckets, num_heads)  # (num_buckets, H)
        nn.init.normal_(self.relative_attention_bias.weight, std=model_dim**-0.5)  # T5's initialisation

    def score_term(self, q: Tensor, score: nn.Module, query_positions: Tensor,
                   key_positions: Tensor) -> Tensor:
        """-> (B|1, H, Tq, Tk) in q's dtype."""
        buckets = relative_position_bucket(relative(query_positions, key_positions), self.bidirectional,
                                           self.num_buckets, self.max_distance)  # (B|1, Tq, Tk)
        return self.relative_attention_bias(buckets).permute(0, 3, 1, 2).to(q.dtype)  # (B|1, H, Tq, Tk)


def alibi_slopes(num_heads: int) -> list[float]:
    """ALiBi's head slopes (Press et al. 2022, Sec. 3): m_h = 2^(-8h/H), h = 1..H, for H a power of 2 (H = 8:
    1/2, 1/4, ..., 1/256). Otherwise the paper's rule: the slopes of the largest power of 2 below H, n, then
    every other slope of 2n (its odd-numbered ones) until there are H."""
    if math.log2(num_heads).is_integer():
        return [2.0 ** (-8.0 * h / num_heads) for h in range(1, num_heads + 1)]
    n = 2 ** math.floor(math.log2(num_heads))
    return alibi_slopes(n) + alibi_slopes(2 * n)[0::2][: num_heads - n]


class ALiBi(NoPosition):
    """Attention with linear biases (Press et al. 2022, Sec. 3): score_ij += -m_h |i - j|, fixed head slopes m_h
    (alibi_slopes), no position embeddings and nothing learned.

    The paper defines the causal (language model) form, -m_h (i - j) for keys j <= i. Encoder self-attention
    has keys on both sides; we use the symmetric -m_h |i - j|, the common bidirectional choice (the same
    penalty for a key before and after the query). On a causal window the two forms agree, since the mask
    removes every j > i, so one formula serves both slots.
    """

    kind = "alibi"

    def __init__(self, num_heads: int):
        super().__init__()
        self.register_buffer("slopes", torch.tensor(alibi_slopes(num_heads)), persistent=False)  # (H,)

    def score_term(self, q: Tensor, score: nn.Module, query_positions: Tensor,
                   key_positions: Tensor) -> Tensor:
        """-> (B|1, H, Tq, Tk) in q's dtype."""
        distance = relative(query_positions, key_positions).abs()[:, None]  # (B|1, 1, Tq, Tk)
        return (-self.slopes[:, None, None] * distance).to(q.dtype)  # (B|1, H, Tq, Tk)


class Rotary(NoPosition):
    """Rotary position embedding, RoPE (Su et al. 2021, Sec. 3.4.2, Eq. 34): each pair (x_{2i}, x_{2i+1}) of a
    query or key at position m is rotated by the angle m theta_i, theta_i = base^(-2i/d) (i = 0..d/2-1):

        (x_{2i}, x_{2i+1}) -> (x_{2i} cos m theta_i - x_{2i+1} sin m theta_i,  x_{2i} sin m theta_i + x_{2i+1} cos m theta_i)

    i.e. the complex number x_{2i} + i x_{2i+1} times e^{i m theta_i}; so R_m q . R_n k depends on m - n only.
    Pairs are interleaved (adjacent dimensions, the paper's layout; CTranslate2's rotary_interleave=True), not
    half-split. The whole head is rotated. Keys are rotated once, when projected, so a decoder's cache holds
    rotated keys; a dot score is needed (a bilinear W between the rotations would break the relative form).
    """

    kind = "rotary"
    rotates_keys = True

    def __init__(self, head_dim: int, base: float):
        super().__init__()
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (dh/2,) theta_i
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def rotate(self, x: Tensor, positions: Tensor) -> Tensor:
        """x (B, H, T, dh), positions (B|1, T) long -> x rotated at its positions, (B, H, T, dh)."""
        angles = (positions[..., None].float() * self.inv_freq)[:, None]  # (B|1, 1, T, dh/2)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        pairs = x.unflatten(-1, (-1, 2))  # (B, H, T, dh/2, 2)
        even, odd = pairs[..., 0], pairs[..., 1]  # (B, H, T, dh/2) each
        return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)  # (B, H, T, dh)

    def queries(self, q: Tensor, positions: Tensor) -> Tensor:
        return self.rotate(q, positions)

    def keys(self, k: Tensor, positions: Tensor) -> Tensor:
        return self.rotate(k, positions)


def build_position(kind: str, num_heads: int, head_dim: int, causal: bool, *, max_relative_distance: int,
                   num_buckets: int, max_distance: int, rotary_base: float) -> NoPosition:
    """The position module of a multi-head attention (kind: one of POSITIONS); causal: its window is causal
    (T5 then uses unidirectional buckets). Bad settings raise a ValueError naming the key."""
    if kind not in POSITIONS:
        raise ValueError(f"model.attention.position must be one of {POSITIONS}, got {kind!r}")
    if kind == "shaw":
        if max_relative_distance < 1:
            raise ValueError(f"model.attention.max_relative_distance must be >= 1 (Shaw et al.'s clipping "
                             f"distance k), got {max_relative_distance}")
        return ShawRelative(head_dim, max_relative_distance)
    if kind == "t5":
        half = num_buckets // 2 if not causal else num_buckets  # the buckets of one direction
        if half < 2 or max_distance <= half // 2:
            raise ValueError(f"position=t5 needs model.attention.num_buckets >= {2 if causal else 4} and "
                             f"max_distance > num_buckets / {2 if causal else 4}, got num_buckets={num_buckets}, "
                             f"max_distance={max_distance} (T5: 32 and 128)")
        return T5Bias(num_heads, num_heads * head_dim, num_buckets, max_distance, bidirectional=not causal)
    if kind == "rotary":
        if head_dim % 2 or rotary_base <= 1:
            raise ValueError(f"position=rotary needs an even head size (model size / num_heads, got {head_dim}) "
                             f"and model.attention.rotary_base > 1 (got {rotary_base}; RoPE: 10000)")
        return Rotary(head_dim, rotary_base)
    return ALiBi(num_heads) if kind == "alibi" else NoPosition()
