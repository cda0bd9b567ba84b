"""decode.compile: the decoder step (Seq2Seq.decode, one target position against the cached state) through
torch.compile, for greedy search, sampling and beam search alike (docs/benchmark.md "Compile")."""
from __future__ import annotations

import torch
from torch import Tensor

from nmt.models.seq2seq import DecoderOutput, EncoderOutput, State

# one graph serves every batch size, source length and cache length (dynamic=True); a few more for ensembles
RECOMPILE_LIMIT = 16


def decode_step(model, tgt_in: Tensor, enc: EncoderOutput, state: State) -> DecoderOutput:
    """model.decode, the function compiled below."""
    return model.decode(tgt_in, enc, state)


_decode = torch.compile(decode_step, dynamic=True)  # dynamo guards on the model and caches a graph per model


class CompiledSteps:
    """A model whose decode() runs compiled; encode, init_state and everything else are the model's own.

    LSTM/GRU steps are traced (dynamo's allow_rnn), as in nmt.training.step.CompiledNet. need_weights=True
    (attention maps) takes the eager path: maps are drawn once, not searched step by step.
    """

    def __init__(self, model):
        self.model = model

    def decode(self, tgt_in: Tensor, enc: EncoderOutput, state: State, need_weights: bool = False) -> DecoderOutput:
        """tgt_in (B, T), typically T = 1 -> DecoderOutput with logits (B, T, V), as Seq2Seq.decode."""
        if need_weights:
            return self.model.decode(tgt_in, enc, state, need_weights=True)
        with torch._dynamo.config.patch(allow_rnn=True, recompile_limit=RECOMPILE_LIMIT):
            return _decode(self.model, tgt_in, enc, state)

    def __getattr__(self, name: str):
        return getattr(self.model, name)
