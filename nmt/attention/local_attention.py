"""Local attention: local-m and local-p (Luong et al. 2015, Sec. 3.2)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from nmt.attention.base import AttentionOutput, build_score
from nmt.attention.intervention import WeightHook, intervene
from nmt.attention.normalisers import Normaliser
from nmt.attention.windows import key_offsets, window_mask

WINDOWS = ("local_m", "local_p")


class LocalAttention(nn.Module):
    """Attend inside a window [p_t - D, p_t + D] of the source (Luong et al. 2015, Sec. 3.2).

    local_m (monotonic): p_t = t, the target position (query_positions, required).
    local_p (predictive): p_t = S * sigmoid(v_p^T tanh(W_p h_t)) (Eq. 9), S the true source
    length of the row (number of True keys in the mask; sources are right-padded), and
    a_t(s) = align(h_t, h_s) * exp(-(s - p_t)^2 / (2 sigma^2)) (Eq. 10), where align is the
    softmax of the scores over the window (Eq. 7 restricted to the window and to real keys).

    The returned local_p weights are these Gaussian-scaled a_t(s): exactly 0 outside the window
    and on padding, but their rows do NOT sum to 1 (they sum to <= 1); `align` returns the
    normalised, pre-Gaussian weights. Gradients reach W_p and v_p through the Gaussian only
    (the window edge is a hard mask, as in the paper). local_m returns softmax weights whose
    rows sum to 1, except a row whose window holds no source position (t > S - 1 + D): it
    attends nothing, gets zero weights and a zero context, as the paper's window implies.
    Windows are masks over the full key sequence: no padded window copies, no loops.
    normaliser (softmax by default; sparsemax, entmax15, entmax_alpha: nmt.attention.normalisers) replaces
    the softmax of `align` inside the window; max_keys is the 'location' score's (see GlobalAttention).
    """

    intervention: WeightHook | None = None  # counterfactual tests only: acts on `align`, before Eq. 10

    def __init__(self, query_dim: int, key_dim: int, score: str, window: str,
                 half_width: int, sigma: float, *, normaliser: str = "softmax", alpha: float | None = None,
                 learn_alpha: bool = False, max_keys: int | None = None):
        super().__init__()
        if window not in WINDOWS:
            raise ValueError(f"model.attention.window must be one of {WINDOWS}, got {window!r}")
        if half_width < 0:
            raise ValueError(f"model.attention.half_width must be >= 0, got {half_width}")
        if sigma <= 0:
            raise ValueError(f"model.attention.sigma must be > 0, got {sigma}")
        self.window = window
        self.half_width = half_width
        self.window_half_width = half_width  # the contract's window metadata (nmt.attention.base)
        self.sigma = sigma
        self.score = build_score(score, query_dim, key_dim, max_keys)
        self.normaliser = Normaliser(normaliser, alpha, learn_alpha, num_heads=1)
        if window == "local_p":
            self.W_p = nn.Linear(query_dim, query_dim, bias=False)
            self.v_p = nn.Linear(query_dim, 1, bias=False)

    def centres(self, query: Tensor, mask: Tensor | None, key_len: int) -> Tensor:
        """p_t = S * sigmoid(v_p^T tanh(W_p h_t)) (Eq. 9): query (B, Tq, Dq) -> (B, Tq) float32.

        Computed in float32 outside autocast: in bf16 (8 significant bits) p_t of a 60-token source moves in
        steps of 0.25, too coarse for a window of half-width D."""
        B, Tq, _ = query.shape
        if mask is None:
            src_len = query.new_full((B, Tq), float(key_len), dtype=torch.float32)  # (B, Tq)
        else:
            src_len = mask.expand(B, Tq, key_len).sum(-1).float()  # (B, Tq)
        with torch.autocast(query.device.type, enabled=False):
            gate = torch.sigmoid(self.v_p(torch.tanh(self.W_p(query.float())))).squeeze(-1)  # (B, Tq)
        return src_len * gate  # (B, Tq), in [0, S]

    def align(self, query: Tensor, keys: Tensor, mask: Tensor | None,
              query_positions: Tensor | None) -> tuple[Tensor, Tensor]:
        """The normalised scores (softmax or the sparse normaliser) inside the window and on real keys,
        before any Gaussian.

        query (B, Tq, Dq), keys (B, Tk, Dk) -> (align (B, Tq, Tk), centres p_t (B, Tq)).
        Rows sum to 1 over the window, 0 where the window holds no real key.
        """
        Tk = keys.size(1)
        if self.window == "local_m":
            if query_positions is None:
                raise ValueError("local_m attention needs query_positions (B, Tq): its window "
                                 "is centred on the target position t")
            centres = query_positions  # (B, Tq) long, p_t = t
        else:
            centres = self.centres(query, mask, Tk)  # (B, Tq) float
        allowed = window_mask(centres, Tk, self.half_width)  # (B, Tq, Tk)
        if mask is not None:
            allowed = allowed & mask
        align = self.normaliser(self.score(query, keys), allowed)  # (B, Tq, Tk)
        return intervene(self.intervention, align, allowed), centres

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None, *,
                query_positions: Tensor | None = None, key_positions: Tensor | None = None,
                state: Tensor | None = None, need_weights: bool = True) -> AttentionOutput:
        """query (B, Tq, Dq), keys (B, Tk, Dk), values (B, Tk, Dv), mask bool broadcastable to
        (B, Tq, Tk), query_positions (B, Tq) long (local_m) -> context (B, Tq, Dv),
        weights (B, 1, Tq, Tk), centres (B, Tq) for local_p. need_weights, key_positions (source keys
        sit at 0..Tk-1) and state (stateless) are unused."""
        weights, centres = self.align(query, keys, mask, query_positions)  # (B, Tq, Tk)
        if self.window == "local_p":
            offsets = key_offsets(centres, keys.size(1))  # (B, Tq, Tk) s - p_t
            weights = weights * torch.exp(-offsets.pow(2) / (2 * self.sigma ** 2))  # Eq. 10
        context = weights @ values  # (B, Tq, Dv)
        return AttentionOutput(context, weights.unsqueeze(1),
                               centres if self.window == "local_p" else None)
