"""Coverage: how much attention each source position has received so far, carried as the attention's state.

Linguistic coverage (Tu et al. 2016, "Modeling Coverage for Neural Machine Translation", Sec. 3.1.2):

    sum        C_t = C_{t-1} + a_t                        (Tu et al. Eq. 6 with Phi_j = 1; See et al. 2017, Eq. 10)
    fertility  C_t = C_{t-1} + a_t / Phi_j,  Phi_j = N sigma(U_f h_j)                     (Tu et al. Eq. 7-8)

C_0 = 0 (state None at the first step). The additive / concat score reads C_{t-1} through one more term inside
its tanh,

    e_tj = v^T tanh(W s_t + U h_j + V C_{t-1,j})          (Tu et al. Eq. 5; See et al. 2017, Eq. 11)

with V (A,) a learned vector (C is a scalar per source position): `term` builds it as a (B, 1, Tk, A) tensor
that nmt.attention.base._mlp_score adds to the score's hidden layer. Masked keys get weight 0, so their
coverage stays 0. C is kept in float32 (B, Tk) whatever the autocast dtype of the weights.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

COVERAGES = ("none", "sum", "fertility")
COVERAGE_SCORES = ("additive", "concat")  # the scores with a tanh hidden layer to add V C_{t-1,j} to


class Coverage(nn.Module):
    """The V C_{t-1,j} term of the score, the fertility Phi_j and the update C_t = C_{t-1} + a_t [/ Phi_j].

    kind: sum | fertility; key_dim: Dk of the keys h_j; attn_dim: A, the score's hidden size (the additive and
    concat scores use A = key_dim); fertility_max: N of Phi_j = N sigma(U_f h_j), with kind fertility only.
    """

    def __init__(self, kind: str, key_dim: int, attn_dim: int, fertility_max: float | None):
        super().__init__()
        if kind not in COVERAGES[1:]:
            raise ValueError(f"model.attention.coverage must be one of {COVERAGES}, got {kind!r}")
        if (kind == "fertility") != (fertility_max is not None):
            raise ValueError(f"model.attention.fertility_max (N of Tu et al.'s Phi_j = N sigma(U_f h_j)) goes with "
                             f"coverage=fertility only (got coverage={kind!r}, fertility_max={fertility_max}): "
                             "set both, e.g. coverage=fertility fertility_max=2, or neither")
        if fertility_max is not None and fertility_max <= 0:
            raise ValueError(f"model.attention.fertility_max must be > 0 (the most target words one source word "
                             f"produces), got {fertility_max}")
        self.kind, self.fertility_max = kind, fertility_max
        self.V = nn.Linear(1, attn_dim, bias=False)  # V_a (Tu Eq. 5) / w_c (See Eq. 11): one (A,) vector
        self.U_f = nn.Linear(key_dim, 1, bias=False) if kind == "fertility" else None  # Tu Eq. 8

    def initial(self, keys: Tensor) -> Tensor:
        """C_0 = 0: keys (B, Tk, Dk) -> (B, Tk) float32."""
        return torch.zeros(keys.shape[:2], dtype=torch.float32, device=keys.device)

    def fertility(self, keys: Tensor) -> Tensor | None:
        """Phi_j = N sigma(U_f h_j) (Tu et al. Eq. 8): keys (B, Tk, Dk) -> (B, Tk) float32; None for kind sum."""
        if self.U_f is None:
            return None
        return self.fertility_max * torch.sigmoid(self.U_f(keys).squeeze(-1).float())  # (B, Tk)

    def term(self, coverage: Tensor) -> Tensor:
        """V C_{t-1,j}: coverage (B, Tk) -> (B, 1, Tk, A), the (..., Tq = 1, Tk, A) extra of the score's tanh."""
        return self.V(coverage[:, None, :, None].to(self.V.weight.dtype))  # (B, 1, Tk, 1) -> (B, 1, Tk, A)

    def update(self, coverage: Tensor, weights: Tensor, phi: Tensor | None) -> Tensor:
        """C_t = C_{t-1} + a_t [/ Phi_j]: coverage (B, Tk), weights a_t (B, 1, Tk), phi (B, Tk) | None -> (B, Tk)."""
        added = weights[:, 0].float()  # (B, Tk)
        return coverage + (added if phi is None else added / phi)
