"""Attention modules sharing one contract (see nmt.attention.base and docs/architecture.md).

attention/ imports nothing from the rest of nmt.
"""
from nmt.attention.average import AverageAttention
from nmt.attention.base import Attention, AttentionOutput, KVAttention, build_score, masked_softmax
from nmt.attention.global_attention import GlobalAttention
from nmt.attention.hard_attention import HardAttention
from nmt.attention.local_attention import LocalAttention
from nmt.attention.multihead import MultiHeadAttention
from nmt.attention.normalisers import NORMALISERS, Normaliser, normalise
from nmt.attention.slot import Slot
from nmt.attention.windows import causal_mask, window_mask

__all__ = [
    "Attention",
    "AttentionOutput",
    "KVAttention",
    "masked_softmax",
    "build_score",
    "window_mask",
    "causal_mask",
    "GlobalAttention",
    "LocalAttention",
    "HardAttention",
    "MultiHeadAttention",
    "AverageAttention",
    "Slot",
    "normalise",
    "Normaliser",
    "NORMALISERS",
]
