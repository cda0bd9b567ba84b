"""Alignment targets of a batch from piece links: the one piece of supervised alignment that batching needs
(nmt.alignment.supervision reads the Pharaoh files and maps word links onto pieces; data sits below it)."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def alignment_targets(links: list[np.ndarray], tgt_len: int, src_len: int) -> Tensor:
    """Piece links of B pairs -> A (B, tgt_len, src_len) float32: A[b, t, s] = 1 / n_t on the n_t source pieces
    linked to target piece t of pair b; rows without a link (eos, padding, unaligned words) are zero.

    tgt_len is the decoder's rows (batch.tgt_out's width: pieces + eos), src_len the source width.
    """
    counts = np.fromiter(map(len, links), dtype=np.int64, count=len(links))  # (B,)
    A = np.zeros((len(links), tgt_len, src_len), dtype=np.float32)  # (B, T, S)
    if counts.sum():
        ts = np.concatenate(links)  # (L, 2) rows (t, s)
        if ts[:, 0].max() >= tgt_len or ts[:, 1].max() >= src_len:
            raise ValueError(f"a piece link beyond the batch's {tgt_len} target rows or {src_len} source pieces: "
                             "the links belong to other pairs than the batch's")
        A[np.repeat(np.arange(len(links)), counts), ts[:, 0], ts[:, 1]] = 1.0
    A /= np.maximum(A.sum(-1, keepdims=True), 1.0)  # linked rows sum to 1, the others stay 0
    return torch.from_numpy(A)  # (B, T, S); numpy, as collate_rows: no torch threads in a loader thread


def linked_row_count(links: list[np.ndarray]) -> int:
    """Target rows with at least one link over B pairs' piece links (L, 2) (the rows alignment_targets fills)."""
    return int(sum(len(np.unique(ts[:, 0])) for ts in links))
