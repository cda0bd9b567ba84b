"""Token embeddings."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class Embeddings(nn.Module):
    """Token embedding table, optionally scaled by sqrt(d) (Vaswani et al. 2017, Sec. 3.4)."""

    def __init__(self, vocab_size: int, emb_size: int, pad_id: int, scale: bool):
        super().__init__()
        self.table = nn.Embedding(vocab_size, emb_size, padding_idx=pad_id)
        self.factor = math.sqrt(emb_size) if scale else 1.0
        nn.init.normal_(self.table.weight, std=emb_size**-0.5 if scale else 0.1)
        with torch.no_grad():
            self.table.weight[pad_id].zero_()

    @property
    def weight(self) -> Tensor:
        return self.table.weight

    def forward(self, ids: Tensor) -> Tensor:
        """ids (B, T) long -> (B, T, emb_size)."""
        return self.table(ids) * self.factor
