"""Translate many sentences: length-sorted batches, results in the original order."""
from __future__ import annotations

import torch

from nmt.data.batching import collate
from nmt.decoding.beam import beam_search
from nmt.decoding.greedy import Hypotheses, greedy_decode
from nmt.models.seq2seq import Seq2Seq


def translate_ids(model: Seq2Seq, src_ids: list[list[int]], *, pad_id: int, bos_id: int, eos_id: int,
                  beam_size: int, alpha: float, max_len_a: float, max_len_b: int, max_sentences: int,
                  device: torch.device) -> Hypotheses:
    """Decode src_ids (no bos/eos) with greedy (beam_size 1) or beam search; keeps input order."""
    order = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]))
    tokens: list = [None] * len(src_ids)
    scores = torch.zeros(len(src_ids))
    model.eval()
    for start in range(0, len(order), max_sentences):
        idx = order[start: start + max_sentences]
        batch = collate([src_ids[i] or [eos_id] for i in idx], [[] for _ in idx], idx, pad_id, bos_id, eos_id)
        batch = batch.to(device)
        src, lens = batch.src, batch.src_lengths
        if beam_size <= 1:
            hyp = greedy_decode(model, src, lens, bos_id, eos_id, max_len_a, max_len_b)
        else:
            hyp = beam_search(model, src, lens, beam_size, bos_id, eos_id, alpha, max_len_a, max_len_b)
        for j, i in enumerate(idx):
            tokens[i] = hyp.tokens[j]
            scores[i] = hyp.scores[j].cpu()
    return Hypotheses(tokens, scores)
