"""Batched step-by-step decoding on device: one loop (stepwise_decode) and a chooser of the next tokens;
greedy search chooses the arg-max."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from nmt.models.seq2seq import Seq2Seq

HOST_CHECK_EVERY = 8  # greedy and beam search read "all finished?" on the host once per this many steps


@dataclass
class Hypotheses:
    tokens: list[list[int]]        # per sentence, without bos/eos
    scores: Tensor                 # (B,) model log-probability of tokens + eos
    nbest: list[list[list[int]]] | None = None  # beam search: per sentence the N best outputs, best first
    nbest_scores: Tensor | None = None          # (B, N) their length-normalised scores (GNMT Eq. 14)
    # attention maps of an output: nmt.decoding.inspect.output_attention (one forced pass)


def length_limits(src_lengths: Tensor, max_len_a: float, max_len_b: int) -> Tensor:
    """(B,) maximum number of output tokens (eos included) = a * src_len + b."""
    return (src_lengths.float() * max_len_a + max_len_b).long().clamp_min(1)


def cut(seqs: Tensor, eos_id: int) -> list[list[int]]:
    """(B, T) generated ids -> lists cut before the first eos."""
    out = []
    for row in seqs.tolist():
        out.append(row[: row.index(eos_id)] if eos_id in row else row)
    return out


Chooser = Callable[[Tensor], Tensor]  # log-probs (B, V) float -> (B,) long: each sentence's next token


def argmax(logp: Tensor) -> Tensor:
    """(B, V) -> (B,) the most probable token (the first one on ties, as Tensor.max)."""
    return logp.max(dim=-1).indices


@torch.no_grad()
def greedy_decode(model: Seq2Seq, src: Tensor, src_lengths: Tensor, bos_id: int, eos_id: int,
                  max_len_a: float, max_len_b: int) -> Hypotheses:
    """src (B, S) -> arg-max output of every sentence, batched until all emitted eos."""
    return stepwise_decode(model, src, src_lengths, bos_id, eos_id, max_len_a, max_len_b, argmax)


@torch.no_grad()
def stepwise_decode(model: Seq2Seq, src: Tensor, src_lengths: Tensor, bos_id: int, eos_id: int,
                    max_len_a: float, max_len_b: int, choose: Chooser) -> Hypotheses:
    """src (B, S) -> one output per sentence, token by token: the next tokens are choose(log-probs), for
    the whole batch at once, until every sentence emitted eos or reached its length limit. Greedy search
    chooses the arg-max, sampling (nmt.decoding.sampling) draws. scores: the model's own log-probability
    of the chosen tokens + eos (a sampler's temperature and filtering do not enter it)."""
    enc = model.encode(src, src_lengths)
    state = model.init_state(enc)
    B, limits = src.size(0), length_limits(src_lengths, max_len_a, max_len_b)
    prev = torch.full((B, 1), bos_id, dtype=torch.long, device=src.device)
    finished = torch.zeros(B, dtype=torch.bool, device=src.device)
    scores = torch.zeros(B, device=src.device)
    steps = []
    for t in range(int(limits.max())):
        out = model.decode(prev, enc, state)
        logp = F.log_softmax(out.logits[:, -1].float(), dim=-1)  # (B, V)
        nxt = choose(logp)  # (B,)
        nxt = torch.where(finished, torch.full_like(nxt, eos_id), nxt)
        nxt = torch.where(~finished & (t + 1 >= limits), torch.full_like(nxt, eos_id), nxt)
        scores += torch.where(finished, torch.zeros_like(scores), logp.gather(1, nxt[:, None])[:, 0])
        steps.append(nxt)
        finished |= nxt == eos_id
        state, prev = out.state, nxt[:, None]
        if (t + 1) % HOST_CHECK_EVERY == 0 and bool(finished.all()):  # the one host sync of 8 steps
            break  # finished rows only add eos at score 0 meanwhile, so the output is the same
    return Hypotheses(cut(torch.stack(steps, dim=1), eos_id), scores)
