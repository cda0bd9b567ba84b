"""Forced decoding of given targets: teacher-forcing batches and the log-probability of every reference token.

Shared by nmt-score (nmt.evaluation.score), nmt-explain (nmt.alignment.explain) and nmt-align's check of
line-aligned files, so all three read pairs, batch them and score tokens the same way.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from nmt.data.batching import Batch, collate
from nmt.data.corpus import CorpusError


def check_line_aligned(src_lines: list[str], tgt_lines: list[str]) -> None:
    """Parallel inputs must have one target line per source line; the error names both counts."""
    if len(src_lines) != len(tgt_lines):
        raise CorpusError(f"{len(src_lines)} source lines but {len(tgt_lines)} target lines; the files must be "
                          "line-aligned")


def forced_batches(src_ids: list[list[int]], tgt_ids: list[list[int]], pad_id: int, bos_id: int, eos_id: int,
                   chunk: int, device) -> list[Batch]:
    """Teacher-forcing batches of `chunk` pairs in input order (Batch.indices = input positions); an empty
    source becomes [eos] (an encoder needs one position), an empty target scores eos alone."""
    return [collate([s or [eos_id] for s in src_ids[i: i + chunk]], tgt_ids[i: i + chunk],
                    list(range(i, min(i + chunk, len(src_ids)))), pad_id, bos_id, eos_id).to(device)
            for i in range(0, len(src_ids), chunk)]


def reference_log_probs(model, b: Batch, pad_id: int) -> Tensor:
    """Teacher-forced log p(y_t | y_<t, x) of the reference tokens b.tgt_out (B, T), eos included, 0 on padding."""
    logits = model(b.src, b.src_lengths, b.tgt_in)[0].logits.float()  # (B, T, V)
    logp = F.log_softmax(logits, -1).gather(-1, b.tgt_out[..., None])[..., 0]  # (B, T, V) -> (B, T)
    return logp.masked_fill(b.tgt_out == pad_id, 0.0)

