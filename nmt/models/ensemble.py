"""Several trained models searched as one: the Seq2Seq calls that greedy, beam search and sampling use
(encode, init_state, decode), with the models' next-token probabilities averaged at every step,
p(y_t | ...) = 1/M sum_m p_m(y_t | ...), as fairseq and OpenNMT-py ensemble. Each model keeps its own
encoder output and decoder cache; beam search reorders all of them together (index_select on every
tensor of the merged state dict and of each encoder output)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.models.seq2seq import DecoderOutput, EncoderOutput, Seq2Seq, State


@dataclass
class EnsembleEncoding:
    """Every model's EncoderOutput, reordered together."""
    parts: list[EncoderOutput]

    @property
    def mask(self) -> Tensor:
        return self.parts[0].mask  # (B, S): every model reads the same source

    def index_select(self, index: Tensor) -> EnsembleEncoding:
        return EnsembleEncoding([e.index_select(index) for e in self.parts])


class Ensemble(nn.Module):
    """M trained Seq2Seq models sharing one target vocabulary (nmt.runs.trained.load_ensemble checks it)."""

    def __init__(self, models: list[Seq2Seq]):
        super().__init__()
        if len(models) < 2:
            raise ValueError(f"an ensemble needs at least 2 models, got {len(models)}")
        self.models = nn.ModuleList(models)

    def encode(self, src: Tensor, src_lengths: Tensor, need_weights: bool = False) -> EnsembleEncoding:
        return EnsembleEncoding([m.encode(src, src_lengths) for m in self.models])

    def init_state(self, enc: EnsembleEncoding) -> State:
        """One batch-first dict: model m's key k is "m.k"."""
        return {f"{i}.{k}": v for i, (m, e) in enumerate(zip(self.models, enc.parts))
                for k, v in m.init_state(e).items()}

    def decode(self, tgt_in: Tensor, enc: EnsembleEncoding, state: State, need_weights: bool = False) -> DecoderOutput:
        """tgt_in (B, T) -> logits (B, T, V) = log of the mean of the models' probabilities (already
        normalised: log_softmax leaves them unchanged)."""
        outs = [m.decode(tgt_in, e, self.model_state(state, i)) for i, (m, e) in enumerate(zip(self.models, enc.parts))]
        logp = torch.stack([F.log_softmax(o.logits.float(), dim=-1) for o in outs])  # (M, B, T, V)
        logits = torch.logsumexp(logp, dim=0) - math.log(len(outs))  # (B, T, V)
        merged = {f"{i}.{k}": v for i, o in enumerate(outs) for k, v in o.state.items()}
        return DecoderOutput(outs[0].features, merged, logits=logits)

    @staticmethod
    def model_state(state: State, i: int) -> State:
        prefix = f"{i}."
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
