"""An optional hook that replaces attention weights before they weight the values.

Counterfactual tests (Jain & Wallace 2019, Sec. 4; Serrano & Smith 2019, Sec. 3) ask how the output
changes when a slot's weights are replaced. Every attention module of this package passes its
normalised weights through `intervene(self.intervention, weights, allowed)` just before
`context = weights @ values`; `intervention` is None (no change) unless a caller sets it, e.g.
`nmt.alignment.counterfactual.intervening`. Nothing is stored but the function itself.

A hook maps weights (..., Tq, Tk), rows summing to 1 over the attended keys, and `allowed` (bool,
same shape: the attended keys) to new weights of the same shape.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

WeightHook = Callable[[Tensor, Tensor], Tensor]


def intervene(hook: WeightHook | None, weights: Tensor, allowed: Tensor | None) -> Tensor:
    """weights (..., Tq, Tk), allowed bool broadcastable to it or None (all keys) -> hook(weights, allowed)."""
    if hook is None:
        return weights
    if allowed is None:
        allowed = torch.ones_like(weights, dtype=torch.bool)  # (..., Tq, Tk)
    return hook(weights, allowed.expand_as(weights))
