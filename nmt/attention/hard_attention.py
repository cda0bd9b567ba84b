"""Hard (stochastic) attention: attend to one source position (Xu et al. 2015, Sec. 4.1)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from nmt.attention.base import AttentionOutput, build_score, masked_softmax
from nmt.attention.intervention import WeightHook, intervene


class HardAttention(nn.Module):
    """Xu et al. 2015, Sec. 4.1: s_t ~ Multinoulli(alpha_t), c_t = sum_i s_{t,i} h_i (Eq. 8-9).

    alpha_t = softmax of the scores over unmasked keys. Training samples s_t with the
    straight-through Gumbel-softmax estimator (Jang et al. 2017; Maddison et al. 2017):
    the forward pass uses the one-hot sample argmax(scores + g), g ~ Gumbel(0, 1), which is
    an exact sample of alpha_t; the backward pass uses the gradient of the relaxation
    softmax((scores + g) / temperature). Eval takes the argmax of alpha_t.

    Why not REINFORCE (Xu et al.'s Eq. 12)? It needs the sequence reward (log-likelihood),
    a moving-average baseline and an entropy term plumbed from the loss into the module,
    and its gradient has high variance; straight-through is biased but low-variance and
    trains with the ordinary cross-entropy loss and optimiser, so hard attention stays a
    drop-in module of the one attention contract.

    Weights are one-hot on an unmasked key (a row with every key masked gives zeros), and
    exactly 0 on masked keys; in training they carry the straight-through gradient.
    """

    intervention: WeightHook | None = None  # counterfactual tests only: acts on the one-hot weights
    window_half_width: int | None = None    # samples among every source position: no window

    def __init__(self, query_dim: int, key_dim: int, score: str, temperature: float):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"model.attention.temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.score = build_score(score, query_dim, key_dim)

    def select(self, scores: Tensor, mask: Tensor | None) -> Tensor:
        """One-hot weights (B, Tq, Tk) from scores (B, Tq, Tk): sampled (train) or argmax (eval)."""
        allowed = torch.ones_like(scores, dtype=torch.bool) if mask is None else mask.expand_as(scores)
        logits = scores = scores.float()  # float32 under bf16 autocast too: bf16 noise would tie and bias the draw
        if self.training:  # Gumbel-max: argmax(scores + g) ~ softmax(scores)
            logits = scores - torch.empty_like(scores).exponential_().log()  # (B, Tq, Tk) float32
        index = logits.masked_fill(~allowed, float("-inf")).argmax(-1)  # (B, Tq)
        # (B, Tq, Tk) one-hot by scatter: F.one_hot checks the index range on the host (two syncs per call)
        hard = torch.zeros_like(scores).scatter_(-1, index.unsqueeze(-1), 1.0)
        hard = hard * allowed.any(-1, keepdim=True)  # all-masked rows -> zeros
        if not self.training:
            return hard
        soft = masked_softmax(logits / self.temperature, allowed)  # (B, Tq, Tk) relaxation
        return hard - soft.detach() + soft  # forward: one-hot; backward: d soft

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None, *,
                query_positions: Tensor | None = None, key_positions: Tensor | None = None,
                state: Tensor | None = None, need_weights: bool = True) -> AttentionOutput:
        """query (B, Tq, Dq), keys (B, Tk, Dk), values (B, Tk, Dv), mask bool broadcastable to
        (B, Tq, Tk) -> context (B, Tq, Dv), weights (B, 1, Tq, Tk) one-hot.
        query_positions, key_positions, state and need_weights are unused."""
        weights = self.select(self.score(query, keys), mask)  # (B, Tq, Tk)
        weights = intervene(self.intervention, weights, mask)  # (B, Tq, Tk); unchanged by default
        context = weights @ values  # (B, Tq, Dv)
        return AttentionOutput(context, weights.unsqueeze(1))  # weights (B, 1, Tq, Tk)
