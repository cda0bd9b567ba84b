"""Batched beam search on device: B sentences x K beams advance together, no per-hypothesis Python."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nmt.decoding.greedy import Hypotheses, cut, length_limits
from nmt.models.seq2seq import Seq2Seq


def length_penalty(lengths: Tensor, alpha: float) -> Tensor:
    """GNMT length penalty ((5 + |Y|) / 6)^alpha (Wu et al. 2016, Eq. 14); alpha=0 gives 1."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


def _restrict(logp: Tensor, finished: Tensor, at_limit: Tensor, eos_id: int) -> Tensor:
    """Finished beams may only repeat eos at no cost; beams at their length limit must emit eos."""
    eos_only = torch.full_like(logp, float("-inf"))
    eos_only[:, eos_id] = 0.0
    forced = eos_only.clone()
    forced[:, eos_id] = logp[:, eos_id]
    logp = torch.where(at_limit[:, None], forced, logp)
    return torch.where(finished[:, None], eos_only, logp)  # (BK, V)


@torch.no_grad()
def beam_search(model: Seq2Seq, src: Tensor, src_lengths: Tensor, beam_size: int, bos_id: int,
                eos_id: int, alpha: float, max_len_a: float, max_len_b: int) -> Hypotheses:
    """src (B, S) -> best hypothesis per sentence by score / length_penalty.

    Finished hypotheses stay in the beam (extended by eos at no cost) so every step
    is one batched top-k over (B, K*V).
    """
    B, K, dev = src.size(0), beam_size, src.device
    enc = model.encode(src, src_lengths)
    state = model.init_state(enc)
    expand = torch.arange(B, device=dev).repeat_interleave(K)  # (B*K,)
    enc = enc.index_select(expand)
    state = {k: v.index_select(0, expand) for k, v in state.items()}
    limits = length_limits(src_lengths, max_len_a, max_len_b).index_select(0, expand)
    scores = torch.full((B, K), float("-inf"), device=dev)
    scores[:, 0] = 0.0
    seqs = torch.full((B * K, 1), bos_id, dtype=torch.long, device=dev)
    finished = torch.zeros(B * K, dtype=torch.bool, device=dev)
    lengths = torch.zeros(B * K, dtype=torch.long, device=dev)
    for t in range(int(limits.max())):
        out = model.decode(seqs[:, -1:], enc, state)
        logp = F.log_softmax(out.logits[:, -1].float(), dim=-1)  # (BK, V)
        logp = _restrict(logp, finished, ~finished & (t + 1 >= limits), eos_id)
        V = logp.size(-1)
        top, idx = (scores.view(-1, 1) + logp).view(B, K * V).topk(K, dim=-1)  # (B, K)
        origin = (torch.arange(B, device=dev)[:, None] * K + idx // V).view(-1)  # (BK,)
        token = (idx % V).view(-1)
        seqs = torch.cat([seqs.index_select(0, origin), token[:, None]], dim=1)
        lengths = lengths.index_select(0, origin) + (~finished.index_select(0, origin)).long()
        finished = finished.index_select(0, origin) | (token == eos_id)
        state, scores = {k: v.index_select(0, origin) for k, v in out.state.items()}, top
        if bool(finished.all()):
            break
    norm = scores / length_penalty(lengths.view(B, K), alpha)  # (B, K)
    best = torch.arange(B, device=dev) * K + norm.argmax(dim=-1)  # (B,)
    return Hypotheses(cut(seqs.index_select(0, best)[:, 1:], eos_id), scores.view(-1).index_select(0, best))
