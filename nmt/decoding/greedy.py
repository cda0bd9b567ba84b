"""Batched step-by-step decoding on device: one loop (stepwise_decode) and a chooser of the next tokens;
greedy search chooses the arg-max."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from nmt.decoding.rows import RowSelection
from nmt.models.seq2seq import Seq2Seq

HOST_CHECK_EVERY = 8  # greedy and beam search read "all finished?" on the host once per this many steps


@dataclass
class Hypotheses:
    tokens: list[list[int]]        # per sentence, without bos/eos
    scores: Tensor                 # (B,) model log-probability of tokens + eos
    nbest: list[list[list[int]]] | None = None  # beam search: per sentence the N best outputs, best first
    nbest_scores: Tensor | None = None          # (B, N) their length-normalised scores (GNMT Eq. 14, + cp)
    # keep (nmt.decoding.rows.RowSelection): per sentence, per n-best output, the kept slot's rows (H, |Y|, S) of
    # that output (|Y| = tokens + eos, S = real source pieces), as the search produced them; else None, and the
    # maps of an output come from one forced pass (nmt.decoding.inspect.output_attention)
    rows: list[list[Tensor]] | None = None


def length_limits(src_lengths: Tensor, max_len_a: float, max_len_b: int) -> Tensor:
    """(B,) maximum number of output tokens (eos included) = a * src_len + b."""
    return (src_lengths.float() * max_len_a + max_len_b).long().clamp_min(1)


def cut(seqs: Tensor, eos_id: int) -> list[list[int]]:
    """(B, T) generated ids -> lists cut before the first eos."""
    out = []
    for row in seqs.tolist():
        out.append(row[: row.index(eos_id)] if eos_id in row else row)
    return out


def crop_rows(rows: Tensor, tokens: list[list[list[int]]], src_lengths: Tensor) -> list[list[Tensor]]:
    """rows (B, N, H, T, S) of every sentence's N outputs -> per sentence, per output (H, len + 1, S_b): the rows
    of its tokens and eos over its real source pieces (on the host)."""
    rows, S = rows.float().cpu(), src_lengths.tolist()
    return [[rows[b, n, :, : len(out) + 1, : S[b]] for n, out in enumerate(outs)] for b, outs in enumerate(tokens)]


def decode_step(model: Seq2Seq, prev: Tensor, enc, state, keep: RowSelection | None):
    """model.decode of one step; with `keep`, the maps of its slot only (need_weights={slot})."""
    if keep is None:
        return model.decode(prev, enc, state)
    return model.decode(prev, enc, state, need_weights=frozenset({keep.slot}))


Chooser = Callable[[Tensor], Tensor]  # log-probs (B, V) float -> (B,) long: each sentence's next token


def argmax(logp: Tensor) -> Tensor:
    """(B, V) -> (B,) the most probable token (the first one on ties, as Tensor.max)."""
    return logp.max(dim=-1).indices


@torch.no_grad()
def greedy_decode(model: Seq2Seq, src: Tensor, src_lengths: Tensor, bos_id: int, eos_id: int,
                  max_len_a: float, max_len_b: int, *, keep: RowSelection | None = None) -> Hypotheses:
    """src (B, S) -> arg-max output of every sentence, batched until all emitted eos (with `keep`: its rows)."""
    return stepwise_decode(model, src, src_lengths, bos_id, eos_id, max_len_a, max_len_b, argmax, keep=keep)


@torch.no_grad()
def stepwise_decode(model: Seq2Seq, src: Tensor, src_lengths: Tensor, bos_id: int, eos_id: int,
                    max_len_a: float, max_len_b: int, choose: Chooser, *,
                    keep: RowSelection | None = None) -> Hypotheses:
    """src (B, S) -> one output per sentence, token by token: the next tokens are choose(log-probs), for
    the whole batch at once, until every sentence emitted eos or reached its length limit. Greedy search
    chooses the arg-max, sampling (nmt.decoding.sampling) draws. scores: the model's own log-probability
    of the chosen tokens + eos (a sampler's temperature and filtering do not enter it). keep: each output also
    gets the rows of that selection's slot (Hypotheses.rows), one per step, as the search made them."""
    enc = model.encode(src, src_lengths)
    state = model.init_state(enc)
    B, limits = src.size(0), length_limits(src_lengths, max_len_a, max_len_b)
    prev = torch.full((B, 1), bos_id, dtype=torch.long, device=src.device)
    finished = torch.zeros(B, dtype=torch.bool, device=src.device)
    scores = torch.zeros(B, device=src.device)
    steps, kept = [], []
    for t in range(int(limits.max())):
        out = decode_step(model, prev, enc, state, keep)
        if keep is not None:
            kept.append(out.attention[keep.slot])  # (B, H, 1, S)
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
    tokens = cut(torch.stack(steps, dim=1), eos_id)
    rows = None if keep is None else crop_rows(torch.cat(kept, dim=2)[:, None], [[t] for t in tokens], src_lengths)
    return Hypotheses(tokens, scores, rows=rows)
