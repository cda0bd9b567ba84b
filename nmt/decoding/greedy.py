"""Batched greedy decoding on device."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from nmt.models.seq2seq import Seq2Seq


@dataclass
class Hypotheses:
    tokens: list[list[int]]        # per sentence, without bos/eos
    scores: Tensor                 # (B,) model log-probability of tokens + eos
    attention: list[dict[str, Tensor]] = field(default_factory=list)  # per sentence: name -> (H, T_out, S)
    centres: list[dict[str, Tensor]] = field(default_factory=list)    # per sentence: name -> (T_out,)


def length_limits(src_lengths: Tensor, max_len_a: float, max_len_b: int) -> Tensor:
    """(B,) maximum number of output tokens (eos included) = a * src_len + b."""
    return (src_lengths.float() * max_len_a + max_len_b).long().clamp_min(1)


def cross_maps(attention: dict[str, Tensor]) -> dict[str, Tensor]:
    """The decoder->encoder maps of one step (names "cross" or "dec.<i>.cross")."""
    return {k: v for k, v in attention.items() if k.endswith("cross")}


def cut(seqs: Tensor, eos_id: int) -> list[list[int]]:
    """(B, T) generated ids -> lists cut before the first eos."""
    out = []
    for row in seqs.tolist():
        out.append(row[: row.index(eos_id)] if eos_id in row else row)
    return out


def collect_attention(attn: dict[str, Tensor], centres: dict[str, Tensor], lengths: list[int],
                      src_lengths: Tensor) -> tuple[list[dict], list[dict]]:
    """Per-sentence crops: (B, H, T, S) -> (H, len+1, src_len) and (B, T) -> (len+1,)."""
    src_lengths = src_lengths.tolist()
    maps = [{k: v[b, :, : n + 1, : src_lengths[b]].float().cpu() for k, v in attn.items()}
            for b, n in enumerate(lengths)]
    cens = [{k: v[b, : n + 1].float().cpu() for k, v in centres.items()} for b, n in enumerate(lengths)]
    return maps, cens


@torch.no_grad()
def greedy_decode(model: Seq2Seq, src: Tensor, src_lengths: Tensor, bos_id: int, eos_id: int,
                  max_len_a: float, max_len_b: int, need_weights: bool = False) -> Hypotheses:
    """src (B, S) -> arg-max output of every sentence, batched until all emitted eos."""
    enc = model.encode(src, src_lengths, need_weights=need_weights)
    state = model.init_state(enc)
    B, limits = src.size(0), length_limits(src_lengths, max_len_a, max_len_b)
    prev = torch.full((B, 1), bos_id, dtype=torch.long, device=src.device)
    finished = torch.zeros(B, dtype=torch.bool, device=src.device)
    scores = torch.zeros(B, device=src.device)
    steps, attn, cens = [], {}, {}
    for t in range(int(limits.max())):
        out = model.decode(prev, enc, state, need_weights=need_weights)
        logp = F.log_softmax(out.hidden[:, -1].float(), dim=-1)  # (B, V)
        best, nxt = logp.max(dim=-1)
        nxt = torch.where(finished, torch.full_like(nxt, eos_id), nxt)
        nxt = torch.where(~finished & (t + 1 >= limits), torch.full_like(nxt, eos_id), nxt)
        scores += torch.where(finished, torch.zeros_like(best), logp.gather(1, nxt[:, None])[:, 0])
        steps.append(nxt)
        if need_weights:  # cross-attention only: decoder self-attention grows with t (see inspect.py)
            for k, v in cross_maps(out.attention).items():
                attn.setdefault(k, []).append(v)
            for k, v in out.centres.items():
                cens.setdefault(k, []).append(v)
        finished |= nxt == eos_id
        state, prev = out.state, nxt[:, None]
        if bool(finished.all()):
            break
    tokens = cut(torch.stack(steps, dim=1), eos_id)
    hyp = Hypotheses(tokens, scores)
    if need_weights:
        full = {k: torch.cat(v, dim=2) for k, v in attn.items()}   # (B, H, T, S)
        fullc = {k: torch.cat(v, dim=1) for k, v in cens.items()}  # (B, T)
        hyp.attention, hyp.centres = collect_attention(full, fullc, [len(t) for t in tokens], src_lengths)
    return hyp
