"""Sampling search: greedy's step loop (greedy.stepwise_decode) with a chooser that draws each sentence's
next token from the model's distribution, sharpened or flattened by a temperature and cut to the top k
tokens or to the nucleus of mass p (Holtzman et al. 2020, Sec. 3.1). One draw per step for the whole
batch from a torch.Generator of its own, so the samples depend on decode.seed and not on the global RNG.
Uses: back-translation (Edunov et al. 2018 sample rather than search) and looking at the distribution."""
from __future__ import annotations

import torch
from torch import Tensor

from nmt.decoding.greedy import Chooser, Hypotheses, stepwise_decode
from nmt.models.seq2seq import Seq2Seq

SAMPLINGS = ("topk", "topp")  # decode.sampling values besides none (search)


def top_k(logits: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(B, V) logits -> the k largest (B, k) and their token ids (B, k), largest first."""
    return logits.topk(min(k, logits.size(-1)), dim=-1)


def top_p(logits: Tensor, p: float) -> tuple[Tensor, Tensor]:
    """(B, V) logits -> (B, V) logits sorted largest first, -inf outside the nucleus, and their token ids.

    The nucleus is the smallest set of most probable tokens whose probability reaches p (Holtzman et al.
    2020, Eq. 2): a token stays when the mass of the tokens before it is still below p, so the top token
    (mass before it 0 < p) always stays."""
    ordered, ids = logits.sort(dim=-1, descending=True, stable=True)  # (B, V) each
    probs = ordered.softmax(dim=-1)                                     # (B, V)
    before = probs.cumsum(dim=-1) - probs                               # (B, V) mass of the tokens before
    return ordered.masked_fill(before >= p, float("-inf")), ids


def draw(logits: Tensor, ids: Tensor, generator: torch.Generator) -> Tensor:
    """(B, K) logits (-inf = excluded) and their token ids (B, K) -> (B,) one id per row from softmax(logits)."""
    pick = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)  # (B, 1) column in 0..K-1
    return ids.gather(1, pick)[:, 0]


def sampler(sampling: str, topk: int, topp: float, temperature: float, generator: torch.Generator) -> Chooser:
    """The chooser of decode.sampling=topk|topp: log-probs (B, V) -> (B,) drawn tokens. The temperature
    divides the logits (log-probs differ from them by a constant per row: the same softmax) before the cut."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"decode.sampling must be one of none, {', '.join(SAMPLINGS)}; got {sampling!r}")

    def choose(logp: Tensor) -> Tensor:
        scaled = logp / temperature  # (B, V)
        kept, ids = top_k(scaled, topk) if sampling == "topk" else top_p(scaled, topp)
        return draw(kept, ids, generator)
    return choose


@torch.no_grad()
def sample_decode(model: Seq2Seq, src: Tensor, src_lengths: Tensor, bos_id: int, eos_id: int, max_len_a: float,
                  max_len_b: int, *, sampling: str, topk: int, topp: float, temperature: float,
                  generator: torch.Generator) -> Hypotheses:
    """src (B, S) -> one sampled output per sentence; scores are the model's log-probabilities of the
    sampled tokens + eos at temperature 1 without the cut (what the model thinks of the sample)."""
    choose = sampler(sampling, topk, topp, temperature, generator)
    return stepwise_decode(model, src, src_lengths, bos_id, eos_id, max_len_a, max_len_b, choose)
