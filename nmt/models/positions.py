"""Position encodings added to the Transformer's inputs (Vaswani et al. 2017, Sec. 3.5), or none when a position
method inside attention replaces them (nmt.attention.positional)."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

POSITIONS = ("sinusoidal", "learned", "none")


class PositionEncoding(nn.Module):
    """Maps integer positions (B, T) to vectors (B, T, D).

    sinusoidal: PE(pos, 2i) = sin(pos / 10000^(2i/D)), PE(pos, 2i+1) = cos(...) (Sec. 3.5),
                computed on the fly, so any position works and nothing is learned.
    learned:    a table of `max_positions` vectors (Gehring et al. 2017; Sec. 3.5 reports both
                perform alike); positions >= max_positions raise a ValueError naming the key.
    none:       no vectors (zeros, expanded from one scalar: nothing is allocated), for a model whose
                self-attention slots carry the position (position: shaw | t5 | rotary | alibi).
    """

    def __init__(self, kind: str, d_model: int, max_positions: int):
        super().__init__()
        if kind not in POSITIONS:
            inside = f"; {kind} acts inside attention: set model.*.self_attention.position={kind} with positions=none " \
                f"(+model/position={kind} sets both)" if kind in ("shaw", "t5", "rotary", "alibi") else ""
            raise ValueError(f"model.*.positions must be one of {POSITIONS}, got {kind!r}{inside}")
        if kind == "sinusoidal" and d_model % 2:
            raise ValueError(f"sinusoidal positions need an even model.*.d_model, got {d_model}")
        self.kind, self.max_positions, self.d_model = kind, max_positions, d_model
        if kind == "learned":
            self.table = nn.Embedding(max_positions, d_model)
            nn.init.normal_(self.table.weight, std=d_model**-0.5)
        elif kind == "sinusoidal":
            inv_freq = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
            self.register_buffer("inv_freq", inv_freq, persistent=False)  # (D/2,)

    def forward(self, positions: Tensor, max_position: int) -> Tensor:
        """positions (B, T) long; max_position: their known upper bound (a Python int, no sync)."""
        if self.kind == "none":
            return torch.zeros((), device=positions.device).expand(*positions.shape, self.d_model)  # (B, T, D)
        if self.kind == "learned":
            if max_position >= self.max_positions:
                raise ValueError(f"position {max_position} >= model.*.max_positions={self.max_positions}; "
                                 f"raise max_positions or use positions=sinusoidal")
            return self.table(positions)  # (B, T, D)
        angles = positions[..., None].float() * self.inv_freq  # (B, T, D/2)
        return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)  # (B, T, D) interleaved
