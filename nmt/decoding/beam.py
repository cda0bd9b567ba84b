"""Batched beam search on device: K live hypotheses per sentence, a finished list, an exact stop.

Each step extends the K live hypotheses of every active sentence and ranks the 2K best
extensions by raw log-probability. Extensions ending in eos that rank within the top K go to the
sentence's finished list with their length-normalised score (GNMT, Wu et al. 2016, Eq. 14); the
K best extensions that do not end in eos stay live, so the beam never shrinks as hypotheses finish.
A sentence stops when no live hypothesis can beat its n-th best finished one: log-probabilities
only fall and the penalty only grows, so a live hypothesis can reach at most
raw / lp(length limit) (Huang et al. 2017, "When to finish? Optimal beam search for NMT"), or
when it reaches its length limit, where eos is forced. The host reads "all done" once every
`check_every` steps, and then drops the finished sentences from the batch.

|Y| counts the output tokens including eos: the empty output has length 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from nmt.decoding.greedy import HOST_CHECK_EVERY, Hypotheses, cut, length_limits
from nmt.models.seq2seq import EncoderOutput, Seq2Seq, State


def length_penalty(lengths: Tensor | int, alpha: float) -> Tensor | float:
    """GNMT length penalty ((5 + |Y|) / 6)^alpha (Wu et al. 2016, Eq. 14); alpha=0 gives 1."""
    return ((5.0 + lengths) / 6.0) ** alpha


@dataclass
class Finished:
    """The N best finished hypotheses of every sentence of the batch (N = nbest), best first."""
    norm: Tensor    # (B, N) length-normalised score, -inf = empty slot
    raw: Tensor     # (B, N) log-probability of tokens + eos
    tokens: Tensor  # (B, N, T) output ids, padded with eos

    @classmethod
    def empty(cls, B: int, n: int, T: int, eos_id: int, device) -> "Finished":
        return cls(torch.full((B, n), float("-inf"), device=device), torch.zeros(B, n, device=device),
                   torch.full((B, n, T), eos_id, dtype=torch.long, device=device))

    def merge(self, ids: Tensor, norm: Tensor, raw: Tensor, tokens: Tensor) -> None:
        """Add candidates norm/raw (A, C), tokens (A, C, T) to the sentences `ids` (A,); keep the N best."""
        n, T = self.norm.size(1), self.tokens.size(2)
        all_norm = torch.cat([self.norm[ids], norm], dim=1)  # (A, N + C)
        best, pos = all_norm.topk(n, dim=1)  # (A, N)
        self.raw[ids] = torch.cat([self.raw[ids], raw], dim=1).gather(1, pos)
        self.tokens[ids] = torch.cat([self.tokens[ids], tokens], dim=1).gather(1, pos[..., None].expand(-1, -1, T))
        self.norm[ids] = best


@dataclass
class Live:
    """The K live hypotheses of each active sentence (A active sentences, flattened to A*K rows)."""
    ids: Tensor      # (A,) index of each active sentence in the input batch
    seqs: Tensor     # (A*K, t+1) bos + generated ids
    raw: Tensor      # (A, K) log-probability so far; -inf = no hypothesis in this slot
    limits: Tensor   # (A,) maximum output length, eos included
    enc: EncoderOutput
    state: State

    def select(self, keep: Tensor, K: int) -> "Live":
        """Keep the active sentences `keep` (A',) (positions into this batch)."""
        rows = (keep[:, None] * K + torch.arange(K, device=keep.device)).view(-1)  # (A'*K,)
        return Live(self.ids[keep], self.seqs[rows], self.raw[keep], self.limits[keep], self.enc.index_select(rows),
                    {k: v.index_select(0, rows) for k, v in self.state.items()})


def _next_logp(model: Seq2Seq, live: Live, t: int, K: int, eos_id: int) -> tuple[Tensor, State]:
    """(A*K, V) log-probabilities of the next token; at the length limit only eos is allowed."""
    out = model.decode(live.seqs[:, -1:], live.enc, live.state)
    logp = F.log_softmax(out.logits[:, -1].float(), dim=-1)  # (AK, V)
    at_limit = (t + 1 >= live.limits).repeat_interleave(K)  # (AK,)
    forced = torch.full_like(logp, float("-inf"))
    forced[:, eos_id] = logp[:, eos_id]
    return torch.where(at_limit[:, None], forced, logp), out.state


def _step(live: Live, fin: Finished, logp: Tensor, state: State, t: int, K: int, eos_id: int,
          alpha: float) -> tuple[Live, Tensor]:
    """One beam step: finished candidates into `fin`; returns the new live beams and (A,) done."""
    A, V, T = live.raw.size(0), logp.size(-1), fin.tokens.size(2)
    top, idx = (live.raw.view(-1, 1) + logp).view(A, K * V).topk(2 * K, dim=-1)  # (A, 2K)
    origin, token = idx // V, idx % V  # (A, 2K) beam slot and token of each candidate
    ends = token == eos_id
    in_beam = torch.arange(2 * K, device=top.device) < K  # eos only finishes within the top K (beam 1 = greedy)
    hist = live.seqs.view(A, K, -1)[:, :, 1:].gather(1, origin[..., None].expand(-1, -1, t))  # (A, 2K, t)
    cand = F.pad(torch.cat([hist, token[..., None]], dim=2), (0, T - t - 1), value=eos_id)  # (A, 2K, T)
    norm = top / length_penalty(t + 1, alpha)  # every candidate of step t has |Y| = t + 1
    fin.merge(live.ids, torch.where(ends & in_beam, norm, float("-inf")), top, cand)
    raw, pick = torch.where(ends, float("-inf"), top).topk(K, dim=-1)  # (A, K) best K not ending in eos
    rows = (torch.arange(A, device=top.device)[:, None] * K + origin.gather(1, pick)).view(-1)  # (AK,)
    seqs = torch.cat([live.seqs.index_select(0, rows), token.gather(1, pick).view(-1, 1)], dim=1)
    nxt = Live(live.ids, seqs, raw, live.limits, live.enc.index_select(rows),
               {k: v.index_select(0, rows) for k, v in state.items()})
    bound = raw.max(dim=-1).values / length_penalty(live.limits, alpha)  # (A,) the best a live beam can reach
    done = (fin.norm[live.ids, -1] >= bound) | (t + 1 >= live.limits)
    return nxt, done


@torch.no_grad()
def beam_search(model: Seq2Seq, src: Tensor, src_lengths: Tensor, beam_size: int, bos_id: int,
                eos_id: int, alpha: float, max_len_a: float, max_len_b: int, nbest: int = 1,
                check_every: int = HOST_CHECK_EVERY) -> Hypotheses:
    """src (B, S) -> the best hypothesis by score / length_penalty, and the `nbest` best of each sentence."""
    B, K, dev = src.size(0), beam_size, src.device
    if not 1 <= nbest <= K:
        raise ValueError(f"decode.nbest must be between 1 and decode.beam_size={K}, got {nbest}")
    enc = model.encode(src, src_lengths)
    expand = torch.arange(B, device=dev).repeat_interleave(K)  # (B*K,)
    limits = length_limits(src_lengths, max_len_a, max_len_b)  # (B,)
    raw = torch.full((B, K), float("-inf"), device=dev)
    raw[:, 0] = 0.0  # one hypothesis (bos) per sentence to start from
    live = Live(torch.arange(B, device=dev), torch.full((B * K, 1), bos_id, dtype=torch.long, device=dev), raw,
                limits, enc.index_select(expand), {k: v.index_select(0, expand) for k, v in
                                                    model.init_state(enc).items()})
    T = int(limits.max())
    fin = Finished.empty(B, nbest, T, eos_id, dev)
    for t in range(T):
        logp, state = _next_logp(model, live, t, K, eos_id)
        live, done = _step(live, fin, logp, state, t, K, eos_id, alpha)
        if (t + 1) % check_every == 0 or t + 1 == T:
            done = done.cpu()  # the one host sync of `check_every` steps
            if bool(done.all()):
                break
            if bool(done.any()):
                live = live.select((~done).nonzero()[:, 0].to(dev), K)
    flat = cut(fin.tokens.view(B * nbest, T), eos_id)  # B*N lists
    nbest_tokens = [flat[b * nbest: (b + 1) * nbest] for b in range(B)]
    return Hypotheses([sent[0] for sent in nbest_tokens], fin.raw[:, 0], nbest_tokens, fin.norm)
