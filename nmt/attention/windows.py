"""Window masks: the one place window logic lives.

RNN local attention (Luong et al. 2015, Sec. 3.2) and Transformer causal / sliding-window
self-attention both build their windows here, for the whole batch at once (no loops).
Key positions are 0-based indices into the (right-padded) key sequence.
"""
from __future__ import annotations

import torch
from torch import Tensor


def key_offsets(centres: Tensor, key_len: int) -> Tensor:
    """s - centre for every key position s: centres (B, Tq) -> (B, Tq, Tk) in centres' dtype.

    Long centres give long offsets, float centres (local_p's real-valued p_t) float offsets.
    """
    positions = torch.arange(key_len, device=centres.device, dtype=centres.dtype)  # (Tk,)
    return positions - centres.unsqueeze(-1)  # (B, Tq, Tk)


def window_mask(centres: Tensor, key_len: int, half_width: int) -> Tensor:
    """True where |s - centre| <= D: centres (B, Tq) float or long -> bool (B, Tq, Tk).

    The window [p_t - D, p_t + D] of Luong et al. 2015, Sec. 3.2. Positions outside the source
    are not removed here; combine with the padding mask.
    """
    return key_offsets(centres, key_len).abs() <= half_width  # (B, Tq, Tk)


def causal_mask(query_positions: Tensor, key_len: int) -> Tensor:
    """True where key position <= query position: query_positions (B, Tq) long -> (B, Tq, Tk)."""
    return key_offsets(query_positions, key_len) <= 0  # (B, Tq, Tk)


def aligned_positions(batch: int, query_len: int, key_len: int, device: torch.device) -> Tensor:
    """Default query positions (B, Tq) long: arange(Tq), shifted so the last query sits on the
    last key when Tq < Tk (incremental decoding: one new query against Tk cached keys)."""
    offset = max(key_len - query_len, 0)
    positions = torch.arange(query_len, device=device) + offset  # (Tq,)
    return positions.expand(batch, query_len)  # (B, Tq)


def lengths_mask(lengths: Tensor, max_len: int) -> Tensor:
    """True on real tokens: lengths (B,) long -> bool (B, max_len)."""
    return torch.arange(max_len, device=lengths.device) < lengths.unsqueeze(-1)  # (B, T)
