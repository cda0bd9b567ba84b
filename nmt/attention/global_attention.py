"""Global (soft) attention over every source position (Luong et al. 2015, Sec. 3.1;
Bahdanau et al. 2015, Sec. 3.1)."""
from __future__ import annotations

from torch import Tensor, nn

from nmt.attention.base import AttentionOutput, build_score
from nmt.attention.intervention import WeightHook, intervene
from nmt.attention.normalisers import Normaliser


class GlobalAttention(nn.Module):
    """a_t(s) = normalise_s score(h_t, h_s) over all unmasked s; c_t = sum_s a_t(s) h_s.

    Luong et al. 2015, Eq. 7 (global alignment) with any score of Eq. 8 (dot, general,
    concat, location), or Bahdanau et al. 2015, Eq. 5-6 with the additive score. Single head (H = 1).
    The query is h_t (Luong flow) or s_{t-1} (Bahdanau flow); the module does not care.
    normaliser: softmax (the papers'), sparsemax, entmax15 or entmax_alpha with alpha / learn_alpha
    (nmt.attention.normalisers); max_keys: the 'location' score's number of source positions.
    The keyword arguments' defaults only keep older configs and callers working: the YAML sets them.
    """

    intervention: WeightHook | None = None  # counterfactual tests only (nmt.attention.intervention)
    window_half_width: int | None = None    # every source position: no window

    def __init__(self, query_dim: int, key_dim: int, score: str, *, normaliser: str = "softmax",
                 alpha: float | None = None, learn_alpha: bool = False, max_keys: int | None = None):
        super().__init__()
        self.score = build_score(score, query_dim, key_dim, max_keys)
        self.normaliser = Normaliser(normaliser, alpha, learn_alpha, num_heads=1)

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None, *,
                query_positions: Tensor | None = None, key_positions: Tensor | None = None,
                state: Tensor | None = None, need_weights: bool = True) -> AttentionOutput:
        """query (B, Tq, Dq), keys (B, Tk, Dk), values (B, Tk, Dv), mask bool broadcastable to
        (B, Tq, Tk) -> context (B, Tq, Dv), weights (B, 1, Tq, Tk).

        query_positions, key_positions and state are unused (stateless: never given a state); weights are always computed (the context needs them),
        whatever need_weights says.
        """
        weights = self.normaliser(self.score(query, keys), mask)  # (B, Tq, Tk)
        weights = intervene(self.intervention, weights, mask)  # (B, Tq, Tk); unchanged by default
        context = weights @ values  # (B, Tq, Dv)
        return AttentionOutput(context, weights.unsqueeze(1))  # weights (B, 1, Tq, Tk)
