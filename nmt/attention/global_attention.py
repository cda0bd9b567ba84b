"""Global (soft) attention over every source position (Luong et al. 2015, Sec. 3.1;
Bahdanau et al. 2015, Sec. 3.1)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from nmt.attention.base import AttentionOutput, build_score
from nmt.attention.coverage import COVERAGE_SCORES, COVERAGES, Coverage
from nmt.attention.intervention import WeightHook, intervene
from nmt.attention.normalisers import Normaliser


class GlobalAttention(nn.Module):
    """a_t(s) = normalise_s score(h_t, h_s) over all unmasked s; c_t = sum_s a_t(s) h_s.

    Luong et al. 2015, Eq. 7 (global alignment) with any score of Eq. 8 (dot, general,
    concat, location), or Bahdanau et al. 2015, Eq. 5-6 with the additive score. Single head (H = 1).
    The query is h_t (Luong flow) or s_{t-1} (Bahdanau flow); the module does not care.
    normaliser: softmax (the papers'), sparsemax, entmax15 or entmax_alpha with alpha / learn_alpha
    (nmt.attention.normalisers); max_keys: the 'location' score's number of source positions.
    coverage: none, or sum | fertility with the additive or concat score (Tu et al. 2016, Eq. 5-8; See et al.
    2017, Eq. 10-11; nmt.attention.coverage): the module is stateful, its state C (B, Tk) the attention each
    source position has received, and fertility_max is N of the fertility variant.
    The keyword arguments' defaults only keep older configs and callers working: the YAML sets them.
    """

    intervention: WeightHook | None = None  # counterfactual tests only (nmt.attention.intervention)
    window_half_width: int | None = None    # every source position: no window

    def __init__(self, query_dim: int, key_dim: int, score: str, *, normaliser: str = "softmax",
                 alpha: float | None = None, learn_alpha: bool = False, max_keys: int | None = None,
                 coverage: str = "none", fertility_max: float | None = None):
        super().__init__()
        if coverage not in COVERAGES:
            raise ValueError(f"model.attention.coverage must be one of {COVERAGES}, got {coverage!r}")
        if coverage != "none" and score not in COVERAGE_SCORES:
            raise ValueError(f"model.attention.coverage={coverage} adds V C_(t-1) inside a tanh score: set "
                             f"model.attention.score to one of {COVERAGE_SCORES} (got {score!r}), or coverage=none")
        if coverage == "none" and fertility_max is not None:
            raise ValueError(f"model.attention.fertility_max={fertility_max} goes with coverage=fertility only: "
                             "set coverage=fertility or drop fertility_max")
        self.score = build_score(score, query_dim, key_dim, max_keys)
        self.normaliser = Normaliser(normaliser, alpha, learn_alpha, num_heads=1)
        # A = key_dim: the hidden size of the additive and concat scores
        self.coverage = None if coverage == "none" else Coverage(coverage, key_dim, key_dim, fertility_max)

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None, *,
                query_positions: Tensor | None = None, key_positions: Tensor | None = None,
                state: Tensor | None = None, need_weights: bool = True) -> AttentionOutput:
        """query (B, Tq, Dq), keys (B, Tk, Dk), values (B, Tk, Dv), mask bool broadcastable to
        (B, Tq, Tk) -> context (B, Tq, Dv), weights (B, 1, Tq, Tk).

        query_positions and key_positions are unused; weights are always computed (the context needs them),
        whatever need_weights says. Without coverage the module is stateless (never given a state, returns
        state None); with coverage see `covered`.
        """
        if self.coverage is not None:
            return self.covered(query, keys, values, mask, state)
        weights = self.normaliser(self.score(query, keys), mask)  # (B, Tq, Tk)
        weights = intervene(self.intervention, weights, mask)  # (B, Tq, Tk); unchanged by default
        context = weights @ values  # (B, Tq, Dv)
        return AttentionOutput(context, weights.unsqueeze(1))  # weights (B, 1, Tq, Tk)

    def covered(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None,
                state: Tensor | None) -> AttentionOutput:
        """Coverage attention: state C_{t-1} (B, Tk) float32, None at the first step (zeros) -> out.state C_t.

        Tq > 1 queries are Tq successive decoder steps (the teacher-forced Luong path without input feeding):
        query t is scored against the coverage after queries 0..t-1, so one call over Tq queries equals Tq
        calls of one query each, and out.state is the coverage after the last. The update reads the weights
        after the intervention hook: a counterfactual (nmt-explain) changes the coverage, hence the next
        steps' scores, as it changes the context.
        """
        cov = self.coverage.initial(keys) if state is None else state  # (B, Tk) C_{t-1}
        phi = self.coverage.fertility(keys)  # (B, Tk) Phi_j, or None
        per_query = mask is not None and mask.dim() == 3 and mask.size(-2) > 1  # a mask row per query
        contexts, rows = [], []
        for t in range(query.size(1)):
            mask_t = mask[:, t: t + 1] if per_query else mask  # (B, 1, Tk) or broadcastable
            scores = self.score(query[:, t: t + 1], keys, self.coverage.term(cov))  # (B, 1, Tk)
            weights = intervene(self.intervention, self.normaliser(scores, mask_t), mask_t)  # (B, 1, Tk)
            cov = self.coverage.update(cov, weights, phi)  # (B, Tk) C_t
            contexts.append(weights @ values)  # (B, 1, Dv)
            rows.append(weights)
        weights = torch.cat(rows, dim=1)  # Tq x (B, 1, Tk) -> (B, Tq, Tk)
        return AttentionOutput(torch.cat(contexts, dim=1), weights.unsqueeze(1), state=cov)  # (B, 1, Tq, Tk)
