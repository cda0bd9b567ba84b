"""The normaliser of an attention type: scores -> weights, one function for every attention module.

    softmax       a_i = exp(z_i) / sum_j exp(z_j)                       (the default: masked_softmax)
    sparsemax     a = argmin_{p in simplex} ||p - z||^2, a_i = [z_i - tau]_+
                  (Martins & Astudillo 2016, Eq. 2-4: tau from the sorted scores)
    entmax15      alpha-entmax with alpha = 1.5 (Peters et al. 2019, exact sort-based algorithm)
    entmax_alpha  alpha-entmax, a_i = [(alpha - 1) z_i - tau]_+ ^ (1 / (alpha - 1)), tau such that
                  sum_i a_i = 1 (Peters et al. 2019, Eq. 10; bisection), alpha > 1 fixed, or learned per
                  head as alpha = 1 + sigmoid(a) clamped to [1.01, 2] (Correia et al. 2019, Sec. 3.3)

alpha -> 1 is softmax, alpha = 2 is sparsemax; every alpha > 1 can give allowed keys exactly 0. Masked keys
are exactly 0 whatever the normaliser, and a row whose keys are all masked is all zeros (as masked_softmax).
The sparse algorithms are the `entmax` package's (the authors' reference implementation, with the gradient
with respect to alpha); masked keys enter them as -inf, which that package documents as "not there".

`normalise(scores, mask, kind, alpha)` is the public function (a user's own attention type calls it);
`Normaliser` is the module an attention type holds (it owns the learned alphas, if any).
"""
from __future__ import annotations

import math

import torch
from entmax import entmax15, entmax_bisect, sparsemax
from torch import Tensor, nn

from nmt.attention.base import masked_softmax

NORMALISERS = ("softmax", "sparsemax", "entmax15", "entmax_alpha")
MIN_ALPHA, MAX_ALPHA = 1.01, 2.0  # the range of a learned alpha (Correia et al. 2019's clamp)


def normalise(scores: Tensor, mask: Tensor | None, kind: str, alpha: float | Tensor | None = None) -> Tensor:
    """scores (..., Tq, Tk), mask bool broadcastable to scores (True = attend) or None -> weights (..., Tq, Tk).

    kind: one of NORMALISERS. alpha: entmax_alpha only, a float > 1 or a tensor broadcastable to
    (..., Tq, 1) (one alpha per head: (H, 1, 1)). Rows sum to 1 over the allowed keys; masked keys and rows
    with no allowed key are exactly 0. Sparse normalisers run in float32 (bisection in half precision
    does not converge) and return the scores' dtype.
    """
    check_kind(kind, alpha)
    if kind == "softmax":
        return masked_softmax(scores, mask)
    z = scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores
    if mask is not None:
        has_key = mask.any(-1, keepdim=True)  # (..., Tq, 1)
        z = z.masked_fill(~(mask | ~has_key), float("-inf"))  # an all-masked row stays finite, zeroed below
    if kind == "sparsemax":
        probs = sparsemax(z, dim=-1)
    elif kind == "entmax15":
        probs = entmax15(z, dim=-1)
    else:
        probs = entmax_bisect(z, alpha.float() if torch.is_tensor(alpha) else alpha, dim=-1)
    probs = probs.to(scores.dtype)  # (..., Tq, Tk)
    return probs if mask is None else probs.masked_fill(~mask, 0.0)


def check_kind(kind: str, alpha: float | Tensor | None) -> None:
    """Reject an unknown normaliser, and alpha given to (or missing from) the wrong one."""
    if kind not in NORMALISERS:
        raise ValueError(f"model.attention.normaliser must be one of {NORMALISERS}, got {kind!r}")
    if kind == "entmax_alpha" and alpha is None:
        raise ValueError("normaliser entmax_alpha needs model.attention.alpha (> 1, e.g. 1.5; "
                         "entmax15 is alpha = 1.5 by an exact algorithm)")
    if kind != "entmax_alpha" and alpha is not None:
        raise ValueError(f"model.attention.alpha is read by normaliser entmax_alpha only, not {kind!r}: "
                         "set model.attention.alpha=null")


class Normaliser(nn.Module):
    """The normaliser an attention type holds: forward(scores, mask) = normalise(scores, mask, kind, alpha).

    kind: one of NORMALISERS. alpha: entmax_alpha's alpha (> 1), or None for the other kinds.
    learn_alpha: entmax_alpha only: alpha is a parameter per head, alpha_h = 1 + sigmoid(a_h) clamped to
    [1.01, 2] (Correia et al. 2019), starting at `alpha` (then in (1.01, 2)). num_heads: H of the scores
    (..., H, Tq, Tk); 1 for single-head attention.
    """

    def __init__(self, kind: str, alpha: float | None, learn_alpha: bool, num_heads: int):
        super().__init__()
        check_kind(kind, alpha)
        if kind == "entmax_alpha" and not alpha > 1:
            raise ValueError(f"model.attention.alpha must be > 1 for entmax_alpha (alpha = 1 is softmax: use "
                             f"normaliser=softmax), got {alpha}")
        if learn_alpha and kind != "entmax_alpha":
            raise ValueError(f"model.attention.learn_alpha needs normaliser=entmax_alpha, not {kind!r}")
        if learn_alpha and not MIN_ALPHA < alpha < MAX_ALPHA:
            raise ValueError(f"a learned alpha starts at model.attention.alpha, which must lie in "
                             f"({MIN_ALPHA}, {MAX_ALPHA}) (alpha = 1 + sigmoid(a)), got {alpha}")
        self.kind = kind
        self.alpha = alpha
        self.pre_alpha = nn.Parameter(torch.full((num_heads,), math.log((alpha - 1) / (2 - alpha)))) \
            if learn_alpha else None  # (H,) a with 1 + sigmoid(a) = alpha

    def current_alpha(self) -> Tensor | float | None:
        """alpha of each head (H,) when learned, else the fixed alpha (None for softmax/sparsemax/entmax15)."""
        if self.pre_alpha is None:
            return self.alpha
        return (1 + torch.sigmoid(self.pre_alpha)).clamp(MIN_ALPHA, MAX_ALPHA)  # (H,)

    def forward(self, scores: Tensor, mask: Tensor | None) -> Tensor:
        """scores (..., H, Tq, Tk) (or (B, Tq, Tk) for one head), mask bool broadcastable -> weights, same shape."""
        alpha = self.current_alpha()
        if torch.is_tensor(alpha):
            alpha = alpha.view(-1, 1, 1)  # (H, 1, 1): one alpha per head, broadcast over B and Tq
        return normalise(scores, mask, self.kind, alpha)

    def extra_repr(self) -> str:
        return f"{self.kind}" + (f", alpha={self.alpha}" if self.alpha is not None else "") + \
            (", learned per head" if self.pre_alpha is not None else "")
