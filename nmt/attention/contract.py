"""The attention contract as checks a user can run on their own type (docs/architecture.md, "Adding an
attention type"): build the module, then `check_all(module, query_dim, key_dim)`. Each check raises
ContractError naming what is broken; tests/attention runs them over every YAML in configs/model/attention.

What is checked, on random inputs with padding (B = 3 sentences of 7, 4 and 1 keys):
  call       context (B, Tq, Dv), weights (B, H, Tq, Tk), finite, >= 0; rows sum to 1 over attended keys
             (a module whose returned weights are rescaled, like local-p's Gaussian, exposes the normalised
             ones as align(query, keys, mask, positions)[0] and returns weights <= them); exactly 0 on padding
  gradients  every parameter gets a finite non-zero gradient, and the query a finite one (summed with a
             pass on close scores: a sparse normaliser's one-hot rows pass none, and that is allowed)
  weights    need_weights=False still returns 4-d weights (never None) and the same context
  hook       the module passes its normalised weights through `self.intervention` (nmt.attention.intervention)
             and the intervention changes the context: counterfactuals (nmt-explain) rely on it
  window     with window_half_width = D, no weight falls outside [centre - D, centre + D] (centres: the
             output's p_t, else the query positions)
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from nmt.attention.windows import key_offsets, lengths_mask

B, TK = 3, 7
LENGTHS = (7, 4, 1)
QUERY_SHRINK = 0.01  # check_gradients' second pass: scores close together, so no sparse row is one-hot


class ContractError(AssertionError):
    """An attention module breaks the contract; the message says which part."""


def _require(ok, message: str) -> None:
    if not bool(ok):
        raise ContractError(message)


def inputs(tq: int, dq: int, dk: int, seed: int = 0) -> tuple[Tensor, ...]:
    """query (B, Tq, Dq), keys/values (B, TK, Dk), mask (B, 1, TK), positions (B, Tq): a different start
    per sentence so windows move."""
    g = torch.Generator().manual_seed(seed)
    query, keys, values = (torch.randn(B, t, d, generator=g) for t, d in ((tq, dq), (TK, dk), (TK, dk)))
    mask = lengths_mask(torch.tensor(LENGTHS), TK)[:, None, :]  # (B, 1, Tk)
    positions = torch.arange(tq).expand(B, tq) + torch.tensor([[0], [2], [4]])  # (B, Tq)
    return query, keys, values, mask, positions


def normalised(module: nn.Module, query, keys, mask, positions, weights: Tensor) -> Tensor:
    """Weights whose rows must sum to 1: the module's align() when it rescales them (local-p), else `weights`."""
    align = getattr(module, "align", None)
    return align(query, keys, mask, positions)[0].unsqueeze(1) if align is not None else weights


def check_call(module: nn.Module, tq: int, dq: int, dk: int) -> None:
    """Shapes, finite values, rows summing to 1 over attended keys, exact zeros on padding."""
    module.eval()
    query, keys, values, mask, positions = inputs(tq, dq, dk)
    out = module(query, keys, values, mask, query_positions=positions)
    heads = getattr(module, "num_heads", 1)
    _require(out.context.shape == (B, tq, dk), f"context {tuple(out.context.shape)}, expected {(B, tq, dk)}")
    _require(out.weights.shape == (B, heads, tq, TK), f"weights {tuple(out.weights.shape)}, expected "
             f"{(B, heads, tq, TK)} (B, H, Tq, Tk)")
    _require(torch.isfinite(out.context).all() and torch.isfinite(out.weights).all(), "non-finite output")
    norm = normalised(module, query, keys, mask, positions, out.weights)
    attends = mask[:, None].expand_as(norm).any(-1)  # (B, H, Tq): rows with an attended key in their window
    sums = norm.sum(-1)  # (B, H, Tq)
    _require(torch.allclose(sums[attends], torch.ones_like(sums[attends]), atol=1e-5),
             f"rows of the weights must sum to 1 over attended keys; sums {sums[attends].tolist()}")
    padding = ~mask[:, None].expand_as(out.weights)  # (B, H, Tq, Tk)
    _require((out.weights[padding] == 0).all() and (norm[padding] == 0).all(), "weight on a padded key")
    _require((out.weights >= 0).all() and (out.weights <= norm + 1e-6).all(),
             "weights must lie in [0, the normalised weights]")


def check_gradients(module: nn.Module, tq: int, dq: int, dk: int) -> None:
    """Every parameter gets a finite, non-zero gradient; the query's gradient is finite.

    Gradients are summed over two passes: the inputs as given, and the same with the query scaled by
    QUERY_SHRINK (scores close together). A sparse normaliser passes no gradient to the scores of a
    row it makes one-hot (Martins & Astudillo 2016, Sec. 2.3), which random scores make likely; close
    scores give every row a support of several keys, so a parameter is only flagged when it is dead.
    A stateful module (out.state not None) also runs one more call from the state the first returned: at the
    first step its state is zero (coverage C_0 = 0), so the parameters that read it get their gradient later.
    """
    module.train()
    query, keys, values, mask, positions = inputs(tq, dq, dk)
    for scale in (1.0, QUERY_SHRINK):
        scaled = (query * scale).requires_grad_(True)
        out = module(scaled, keys, values, mask, query_positions=positions)
        loss = (out.context * torch.randn_like(out.context)).sum()
        if out.state is not None:  # a stateful type (coverage): its state acts from the next step on
            nxt = module(scaled, keys, values, mask, query_positions=positions, state=out.state)
            loss = loss + (nxt.context * torch.randn_like(nxt.context)).sum()
        loss.backward()
        _require(torch.isfinite(scaled.grad).all(), "the query's gradient is not finite")
    for name, param in module.named_parameters():
        _require(param.grad is not None and torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0,
                 f"parameter {name} gets no finite non-zero gradient")
    module.zero_grad(set_to_none=True)


def check_need_weights(module: nn.Module, dq: int, dk: int) -> None:
    """need_weights=False still returns 4-d weights (never None) and the same context."""
    module.eval()
    query, keys, values, mask, positions = inputs(2, dq, dk)
    out = module(query, keys, values, mask, query_positions=positions, need_weights=False)
    full = module(query, keys, values, mask, query_positions=positions)
    _require(out.weights is not None and out.weights.dim() == 4, "need_weights=False must return 4-d weights")
    _require(torch.allclose(out.context, full.context, atol=1e-5, rtol=1e-5),
             "need_weights=False changes the context")


def check_intervention(module: nn.Module, tq: int, dq: int, dk: int) -> None:
    """The module calls its `intervention` hook on every call, and a hook that makes the weights uniform over
    the attended keys changes the context (and, where the weights are not rescaled, the returned weights)."""
    module.eval()
    query, keys, values, mask, positions = inputs(tq, dq, dk, seed=1)
    plain = module(query, keys, values, mask, query_positions=positions)
    calls = []

    def uniform(weights: Tensor, allowed: Tensor) -> Tensor:
        calls.append(weights.shape)
        mass = allowed.to(weights.dtype)
        return mass / mass.sum(-1, keepdim=True).clamp_min(1.0)
    module.intervention = uniform
    try:
        hooked = module(query, keys, values, mask, query_positions=positions)
    finally:
        del module.intervention
    _require(calls, f"{type(module).__name__} never calls self.intervention: pass the normalised weights "
             "through nmt.attention.intervention.intervene(self.intervention, weights, allowed) before "
             "weighting the values, and declare `intervention = None` on the class")
    _require(not torch.allclose(plain.context, hooked.context), "the intervention does not change the context")


def check_window(module: nn.Module, tq: int, dq: int, dk: int) -> None:
    """window_half_width (None or D >= 0); with D, zero weight outside [centre - D, centre + D]."""
    _require(hasattr(module, "window_half_width"), f"{type(module).__name__} must declare window_half_width "
             "(None for no window, else D)")
    D = module.window_half_width
    if D is None:
        return
    _require(isinstance(D, int) and D >= 0, f"window_half_width must be None or an int >= 0, got {D!r}")
    module.eval()
    query, keys, values, mask, positions = inputs(tq, dq, dk)
    out = module(query, keys, values, mask, query_positions=positions)
    centres = out.centres if out.centres is not None else positions.float()  # (B, Tq)
    outside = key_offsets(centres, TK).abs() > D  # (B, Tq, Tk)
    _require((out.weights[outside[:, None].expand_as(out.weights)] == 0).all(),
             f"weight outside the declared window of half-width {D}")


def check_all(module: nn.Module, query_dim: int, key_dim: int) -> None:
    """Every check, for one query (a step-wise RNN decoder) and for five."""
    for tq in (1, 5):
        check_call(module, tq, query_dim, key_dim)
        check_gradients(module, tq, query_dim, key_dim)
        check_intervention(module, tq, query_dim, key_dim)
        check_window(module, tq, query_dim, key_dim)
    check_need_weights(module, query_dim, key_dim)
