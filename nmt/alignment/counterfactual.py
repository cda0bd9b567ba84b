"""Counterfactual attention: replace one slot's weights and watch the output (Jain & Wallace 2019;
Serrano & Smith 2019).

Each counterfactual is a weight hook of nmt.attention.intervention, so it works for every attention
type of the one contract. Given weights a (..., Tq, Tk), rows summing to 1 over the attended keys
K_t (`allowed`), each returns weights that again sum to 1 over K_t and are exactly 0 elsewhere:

    uniform   a'_t(s) = 1 / |K_t| for s in K_t                       (Jain & Wallace 2019, Sec. 4.1
                                                                     compare with uniform weights)
    permute   a'_t = a_t with its values on K_t randomly permuted   (Jain & Wallace 2019, Sec. 4.2)
    zero_top  a'_t = a_t with its largest weight set to 0, renormalised over K_t
                                                                     (Serrano & Smith 2019, Sec. 3)

zero_top: keys tied for the maximum are zeroed together, so the result does not depend on a tie
break; if the other attended keys hold no mass (one-hot hard attention) they share it uniformly; a
row with no other attended key (one key, or already uniform) is returned unchanged. Rows with no
attended key stay zero. So each counterfactual leaves an already-uniform slot unchanged.
Local-p is intervened on its normalised `align` weights (before Luong's Gaussian, Eq. 10); hard
attention on its one-hot weights (uniform then averages the attended keys).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from nmt.attention.intervention import WeightHook

COUNTERFACTUALS = ("uniform", "permute", "zero_top")
_TIE = 1e-6  # relative tolerance for "tied with the maximum"


def uniform(weights: Tensor, allowed: Tensor) -> Tensor:
    """(..., Tq, Tk) -> 1/|K_t| on the attended keys, 0 elsewhere (rows with no key stay 0)."""
    mass = allowed.to(weights.dtype)  # (..., Tq, Tk)
    return mass / mass.sum(-1, keepdim=True).clamp_min(1.0)


def permuter(seed: int) -> WeightHook:
    """A hook permuting each row's weights among its attended keys; reproducible from `seed`."""
    generator = torch.Generator().manual_seed(seed)

    def permute(weights: Tensor, allowed: Tensor) -> Tensor:
        Tk = weights.size(-1)
        noise = torch.rand(weights.shape, generator=generator).to(weights.device)  # (..., Tq, Tk)
        index = torch.arange(Tk, device=weights.device).expand_as(weights).to(weights.dtype)
        # attended keys first (random order / index order), then the others in index order, so the k-th
        # attended key in random order sends its weight to the k-th attended key in index order
        shuffled = torch.sort(torch.where(allowed, noise, 2.0 + index / Tk), dim=-1, stable=True).indices
        ordered = torch.sort(torch.where(allowed, index, Tk + index), dim=-1, stable=True).indices  # (..., Tq, Tk)
        return torch.zeros_like(weights).scatter(-1, ordered, weights.gather(-1, shuffled))

    return permute


def zero_top(weights: Tensor, allowed: Tensor) -> Tensor:
    """(..., Tq, Tk) -> the largest weight (and any tied with it) zeroed, renormalised over the other
    attended keys R_t; uniform over R_t if they had no mass (one-hot hard attention); unchanged if R_t
    is empty (one attended key, or a uniform row)."""
    rest = allowed & (weights < weights.amax(-1, keepdim=True) * (1 - _TIE))  # (..., Tq, Tk) R_t
    kept = weights * rest  # (..., Tq, Tk)
    mass = kept.sum(-1, keepdim=True)  # (..., Tq, 1)
    renormalised = kept / mass.clamp_min(torch.finfo(weights.dtype).tiny)
    changed = torch.where(mass > 0, renormalised, uniform(weights, rest))
    return torch.where(rest.any(-1, keepdim=True), changed, weights)


def make_hook(name: str, seed: int) -> WeightHook:
    """The counterfactual called `name` (one of COUNTERFACTUALS)."""
    if name not in COUNTERFACTUALS:
        raise ValueError(f"counterfactuals must be among {COUNTERFACTUALS}, got {name!r}")
    return {"uniform": uniform, "zero_top": zero_top}.get(name) or permuter(seed)


class InterventionIgnored(RuntimeError):
    """An attention module never passed its weights through the intervention hook (a broken contract)."""


@contextmanager
def intervening(module: nn.Module, hook: WeightHook) -> Iterator[None]:
    """Within the block, `module` passes its weights through `hook`; afterwards it is as before.

    If the block ran the module's forward but the module never called the hook, InterventionIgnored is
    raised: a type that skips the contract's hook would otherwise report "no change", which reads as
    "attention explains nothing"."""
    calls = {"hook": 0, "attend": 0}

    def counted(weights: Tensor, allowed: Tensor) -> Tensor:
        calls["hook"] += 1
        return hook(weights, allowed)

    def count_call(*_):
        calls["attend"] += 1
    module.intervention = counted
    handles = [module.register_forward_pre_hook(count_call)]
    if hasattr(module, "attend"):  # a Transformer slot's cached path (KVAttention) bypasses forward
        attend = module.attend
        module.attend = lambda *a, **k: (count_call(), attend(*a, **k))[1]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        vars(module).pop("attend", None)
        del module.intervention  # back to the class default, None
    if calls["attend"] and not calls["hook"]:
        raise InterventionIgnored(
            f"{type(module).__name__} attended {calls['attend']} times but never passed its weights through its "
            "intervention hook, so a counterfactual cannot change it. An attention type must call "
            "nmt.attention.intervention.intervene(self.intervention, weights, allowed) before weighting the "
            "values (check it with nmt.attention.contract.check_intervention)")
