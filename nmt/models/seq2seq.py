"""The encoder-decoder: one encode/decode signature for RNN and Transformer parts."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from nmt.attention.slot import Slot
from nmt.common import HostLengths

State = dict[str, Tensor]  # every tensor batch-first, so beam search can index_select(0, ...)
# need_weights: True = the maps of every slot, False = none, a set of slots = those slots' maps only (guided
# alignment supervises one slot: every other layer keeps the fused attention kernels)
NeedWeights = bool | frozenset


def wants(need_weights: NeedWeights, slot: Slot) -> bool:
    """Whether `slot` must return its attention weights (need_weights of Seq2Seq.forward)."""
    return need_weights if isinstance(need_weights, bool) else slot in need_weights


@dataclass
class EncoderOutput:
    memory: Tensor                 # (B, S, Dk) encoder states attended by the decoder
    mask: Tensor                   # (B, S) bool, True = real source token
    final: Tensor | None = None    # RNN: (B, L, Dd[*2]) initial decoder state; else None
    attention: dict[Slot, Tensor] = field(default_factory=dict)  # enc.<i>.self -> (B, H, S, S)
    padded: bool = True            # False: mask is all True (HostLengths.padded), attention takes no mask
    src: Tensor | None = None      # (B, S) long source ids (Seq2Seq.encode): what copy attention copies

    def index_select(self, index: Tensor) -> "EncoderOutput":
        """Reorder/expand along the batch (beam search)."""
        pick = lambda t: None if t is None else t.index_select(0, index)  # noqa: E731
        return EncoderOutput(pick(self.memory), pick(self.mask), pick(self.final),
                             {k: pick(v) for k, v in self.attention.items()}, self.padded, pick(self.src))


@dataclass
class CopyInputs:
    """What copy attention reads from the decoder at every step (See et al. 2017, Eq. 8-9; nmt.models.pointer)."""
    context: Tensor                # (B, T, Dk) c_t, the cross-attention context
    state: Tensor                  # (B, T, H) s_t, the state that queried it (Luong: h_t; Bahdanau: s_{t-1})
    inputs: Tensor                 # (B, T, E) x_t, the embedding of the decoder input y_{t-1}
    weights: Tensor                # (B, T, S) a_t, the cross-attention weights (heads averaged)


@dataclass
class DecoderOutput:
    features: Tensor               # (B, T, D) the decoder's output vectors (before the generator)
    state: State                   # continuation state, batch-first
    attention: dict[Slot, Tensor] = field(default_factory=dict)  # slot -> (B, H, T, S or T)
    centres: dict[Slot, Tensor] = field(default_factory=dict)    # slot -> (B, T) local_p p_t
    logits: Tensor | None = None   # (B, T, V) generator(features), filled by Seq2Seq.decode; with copy attention
    #                                the float32 log-probabilities of the pointer-generator mixture instead
    copy: CopyInputs | None = None  # filled by the decoder when Seq2Seq.decode asks for copy_inputs
    p_gen: Tensor | None = None    # (B, T) float32 probability of generating (1 - p_gen: copying); copy only


class Seq2Seq(nn.Module):
    """Encoder + decoder + generator (+ a pointer: copy attention). The model returns tensors; only the trainer
    logs."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, generator: nn.Linear, pointer: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.generator = generator
        self.pointer = pointer  # nmt.models.pointer.PointerGenerator (model.copy=true) or None

    def encode(self, src: Tensor, src_lengths: Tensor, need_weights: NeedWeights = False,
               host_lengths: HostLengths | None = None) -> EncoderOutput:
        """src (B, S) long, src_lengths (B,) -> EncoderOutput (with .src, the ids a pointer copies); host_lengths:
        the same lengths on the host (Batch.host)."""
        enc = self.encoder(src, src_lengths, need_weights=need_weights, host_lengths=host_lengths)
        enc.src = src
        return enc

    def init_state(self, enc: EncoderOutput) -> State:
        return self.decoder.init_state(enc)

    def decode(self, tgt_in: Tensor, enc: EncoderOutput, state: State,
               need_weights: NeedWeights = False) -> DecoderOutput:
        """Consume tgt_in (B, T) from `state`; returns logits (B, T, V) in .logits.

        With a pointer (copy attention) .logits holds the float32 LOG-probabilities of the mixture of See et al.
        2017, Eq. 9, and .p_gen (B, T) the probability of generating. log_softmax leaves log-probabilities
        unchanged, so the label-smoothed loss of nmt.training.loss (log_softmax, then the NLL and the mean of
        -log P over the vocabulary) is the loss on the mixture, and greedy, beam, sampling, scoring and
        ensembles search the mixture."""
        if self.pointer is None:
            out = self.decoder(tgt_in, enc, state, need_weights=need_weights)
            out.logits = self.generator(out.features)  # (B, T, D) -> (B, T, V)
            return out
        out = self.decoder(tgt_in, enc, state, need_weights=need_weights, copy_inputs=True)
        c = out.copy
        out.logits, out.p_gen = self.pointer(self.generator(out.features), c.context, c.state, c.inputs, c.weights,
                                             enc.src)  # (B, T, V) log P, (B, T)
        return out

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, need_weights: NeedWeights = False,
                host_lengths: HostLengths | None = None) -> tuple[DecoderOutput, EncoderOutput]:
        """Teacher-forced pass: logits (B, T, V) in out.logits."""
        enc = self.encode(src, src_lengths, need_weights=need_weights, host_lengths=host_lengths)
        out = self.decode(tgt_in, enc, self.init_state(enc), need_weights=need_weights)
        return out, enc

    def attention_modules(self) -> dict[Slot, nn.Module]:
        """The attention module behind every slot of the maps (the encoder's, then the decoder's)."""
        return {**self.encoder.attention_modules(), **self.decoder.attention_modules()}

    def attention_windows(self) -> dict[Slot, int]:
        """{slot: D} of every slot whose module attends a local window (the contract's window_half_width)."""
        return {slot: m.window_half_width for slot, m in self.attention_modules().items()
                if getattr(m, "window_half_width", None) is not None}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
