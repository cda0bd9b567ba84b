"""Label-smoothed cross-entropy (Szegedy et al. 2016; Vaswani et al. 2017, Sec. 5.4)."""
from __future__ import annotations

import torch.nn.functional as F
import math

from torch import Tensor


def perplexity(nll: float) -> float:
    """exp(mean nll), capped at exp(50) so an untrained model's huge loss stays a finite number."""
    return math.exp(min(nll, 50.0))


def label_smoothed_loss(logits: Tensor, target: Tensor, pad_id: int, smoothing: float) -> tuple[Tensor, Tensor]:
    """logits (B, T, V), target (B, T) -> (smoothed loss sum, nll sum) over non-pad tokens.

    loss = (1 - eps) * nll + eps * mean_v(-log p_v): eps spread uniformly over the vocabulary.
    """
    lp = F.log_softmax(logits.float(), dim=-1)  # (B, T, V)
    nll = -lp.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (B, T)
    keep = target != pad_id
    nll = nll.masked_fill(~keep, 0.0)
    if smoothing > 0:
        smooth = (-lp.mean(dim=-1)).masked_fill(~keep, 0.0)  # (B, T)
        loss = (1.0 - smoothing) * nll + smoothing * smooth
    else:
        loss = nll
    return loss.sum(), nll.sum()
