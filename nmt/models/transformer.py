"""Transformer encoder and decoder (Vaswani et al. 2017, Sec. 3) with cached incremental decoding.

Every attention slot (encoder self, decoder self, decoder cross) is a module of nmt.attention,
one per layer, built from its own config node by `build_model` (nmt/models/build.py), so head
count, score and window are chosen per slot. The decoder's slots must also offer the caching
trio `project_kv(keys, values) -> (k, v)`, `extend_kv(past, keys, values) -> (k, v)` and
`attend(query, k, v, mask, ...)` (as nmt.attention.MultiHeadAttention does): the cache of the target
prefix and the projected source are kept batch-first in the decoder state, so beam search can reorder
them; the slot decides what its cache holds (keys and values, rotated keys, a running sum:
nmt.attention.AverageAttention), so the decoder never reads a cache's shape.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from nmt.models.embeddings import Embeddings
from nmt.models.positions import PositionEncoding
from nmt.attention import KVAttention, MultiHeadAttention
from nmt.attention.slot import Slot
from nmt.attention.windows import lengths_mask
from nmt.common import HostLengths
from nmt.models.seq2seq import DecoderOutput, EncoderOutput, NeedWeights, State, wants


class FeedForward(nn.Module):
    """FFN(x) = max(0, x W1 + b1) W2 + b2 (Vaswani et al. 2017, Sec. 3.3, Eq. 2)."""

    def __init__(self, d_model: int, ff_size: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_model, ff_size), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(ff_size, d_model))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # (B, T, D)


class Residual(nn.Module):
    """One sublayer with its residual connection and layer norm (Sec. 3.1, 5.4).

    post-norm: LayerNorm(x + Dropout(f(x)))      as in Vaswani et al. 2017
    pre-norm:  x + Dropout(f(LayerNorm(x)))      (Wang et al. 2019; trains without long warmup)
    `f` returns (output, extra); extra (e.g. attention weights) is passed through.
    """

    def __init__(self, d_model: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.norm, self.dropout, self.pre_norm = nn.LayerNorm(d_model), nn.Dropout(dropout), pre_norm

    def forward(self, x: Tensor, f: Callable[[Tensor], tuple[Tensor, object]]) -> tuple[Tensor, object]:
        if self.pre_norm:
            y, extra = f(self.norm(x))
            return x + self.dropout(y), extra
        y, extra = f(x)
        return self.norm(x + self.dropout(y)), extra


def _check_layers(name: str, modules: Sequence[nn.Module], num_layers: int) -> nn.ModuleList:
    if len(modules) != num_layers:
        raise ValueError(f"{name}: {len(modules)} attention modules for num_layers={num_layers}")
    return nn.ModuleList(modules)


class EncoderLayer(nn.Module):
    """Self-attention + feed-forward (Vaswani et al. 2017, Sec. 3.1, encoder)."""

    def __init__(self, d_model: int, ff_size: int, dropout: float, pre_norm: bool,
                 self_attention: nn.Module):
        super().__init__()
        self.self_attention = self_attention
        self.attn_block = Residual(d_model, dropout, pre_norm)
        self.ff = FeedForward(d_model, ff_size, dropout)
        self.ff_block = Residual(d_model, dropout, pre_norm)

    def forward(self, x: Tensor, mask: Tensor, positions: Tensor, need_weights: bool) -> tuple[Tensor, Tensor]:
        """x (B, S, D), mask (B, 1, S) or None, positions (B, S) -> (B, S, D), weights (B, H, S, S)."""
        def attend(h: Tensor):
            out = self.self_attention(h, h, h, mask, query_positions=positions, need_weights=need_weights)
            return out.context, out.weights
        x, weights = self.attn_block(x, attend)
        x, _ = self.ff_block(x, lambda h: (self.ff(h), None))
        return x, weights


class TransformerEncoder(nn.Module):
    """Embeddings * sqrt(D) + positions, N self-attention layers (Vaswani et al. 2017, Sec. 3.1, 3.4).

    self_attention: one attention module per layer (query_dim = key_dim = d_model), any module
    of the nmt.attention contract; a `local` window gives sliding-window self-attention.
    """

    def __init__(self, vocab_size: int, pad_id: int, d_model: int, ff_size: int, num_layers: int,
                 dropout: float, positions: str, max_positions: int, pre_norm: bool,
                 self_attention: Sequence[nn.Module]):
        super().__init__()
        attn = _check_layers("model.encoder.self_attention", self_attention, num_layers)
        self.embed = Embeddings(vocab_size, d_model, pad_id, scale=True)
        self.positions = PositionEncoding(positions, d_model, max_positions)
        self.layers = nn.ModuleList(EncoderLayer(d_model, ff_size, dropout, pre_norm, a) for a in attn)
        self.final_norm = nn.LayerNorm(d_model) if pre_norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.output_dim, self.final_dim = d_model, None

    def attention_modules(self) -> dict[Slot, nn.Module]:
        return {Slot.of("enc", i, "self"): layer.self_attention for i, layer in enumerate(self.layers)}

    def forward(self, src: Tensor, src_lengths: Tensor, need_weights: NeedWeights = False,
                host_lengths: HostLengths | None = None) -> EncoderOutput:
        """src (B, S), src_lengths (B,) -> memory (B, S, D), mask (B, S), final None. A batch without padding
        (host_lengths.padded False) attends without a mask, here and in the decoder's cross-attention."""
        B, S = src.shape
        positions = torch.arange(S, device=src.device).expand(B, S)  # (B, S)
        x = self.dropout(self.embed(src) + self.positions(positions, S - 1))  # (B, S, D)
        mask = lengths_mask(src_lengths, S)  # (B, S)
        padded = host_lengths is None or host_lengths.padded
        attention = {}
        for i, layer in enumerate(self.layers):
            want = need_weights is not False and wants(need_weights, Slot.of("enc", i, "self"))  # no Slot built
            x, weights = layer(x, mask[:, None, :] if padded else None, positions, want)  # when none (compile)
            if want:
                attention[Slot.of("enc", i, "self")] = weights  # (B, H, S, S)
        return EncoderOutput(self.final_norm(x), mask, None, attention, padded)


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention, feed-forward (Vaswani et al. 2017, Sec. 3.1, decoder)."""

    def __init__(self, d_model: int, ff_size: int, dropout: float, pre_norm: bool,
                 self_attention: nn.Module, cross_attention: nn.Module):
        super().__init__()
        for name, module in (("self_attention", self_attention), ("cross_attention", cross_attention)):
            if not isinstance(module, KVAttention):
                raise ValueError(f"model.decoder.{name} must have project_kv/extend_kv/attend for cached decoding "
                                 "(the nmt.attention.KVAttention protocol) "
                                 f"(e.g. nmt.attention.MultiHeadAttention), got {type(module).__name__}")
        self.self_attention, self.cross_attention = self_attention, cross_attention
        self.self_block = Residual(d_model, dropout, pre_norm)
        self.cross_block = Residual(d_model, dropout, pre_norm)
        self.ff = FeedForward(d_model, ff_size, dropout)
        self.ff_block = Residual(d_model, dropout, pre_norm)

    def forward(self, x: Tensor, positions: Tensor, self_mask: Tensor, past: tuple[Tensor, Tensor],
                cross: tuple[Tensor, Tensor], src_mask: Tensor, need_weights: tuple[bool, bool]):
        """x (B, T, D), positions (B, T), self_mask (B, T, t+T), past: the self slot's cache after t positions
        (multi-head: k/v (B, H, t, dh)), cross k/v (B, H, S, dh), src_mask (B, 1, S), need_weights (self, cross)
        -> x (B, T, D), the self slot's cache after t+T positions (extend_kv's), weights.

        A causal multi-head self-attention builds its causal window itself: it gets neither the mask nor the
        positions (both are the default ones), so the fused kernel can run with is_causal."""
        causal = isinstance(self.self_attention, MultiHeadAttention) and self.self_attention.window == "causal"

        def self_attend(h: Tensor):
            k, v = self.self_attention.extend_kv(past, h, h, key_positions=positions)  # the cache grown by T
            out = self.self_attention.attend(h, k, v, None if causal else self_mask,
                                             query_positions=None if causal else positions,
                                             need_weights=need_weights[0])
            return out.context, (out.weights, k, v)

        def cross_attend(h: Tensor):
            out = self.cross_attention.attend(h, cross[0], cross[1], src_mask, query_positions=positions,
                                              need_weights=need_weights[1])
            return out.context, out.weights

        x, (self_w, k, v) = self.self_block(x, self_attend)
        x, cross_w = self.cross_block(x, cross_attend)
        x, _ = self.ff_block(x, lambda h: (self.ff(h), None))
        return x, (k, v), (self_w, cross_w)


class TransformerDecoder(nn.Module):
    """Causal Transformer decoder that continues from a state of cached keys/values.

    State (all batch-first): pos (B,) next target position; seen (B, t, 0) holds no data: its dim 1 is
    the number t of target tokens seen, read without a device sync whatever the slots cache;
    self_k<i>, self_v<i> the self-attention slot's cache of those t tokens (multi-head: projected
    keys/values (B, H, t, dh); average attention: a running sum); cross_k<i>, cross_v<i>
    (B, H, S, dh) projected encoder memory, computed once in init_state. Decoding T tokens at once
    (teacher forcing) or one at a time gives the same outputs (Vaswani et al. 2017, Sec. 3.2.3:
    "masking ... ensures that the predictions for position i can depend only on" positions < i).
    """

    def __init__(self, vocab_size: int, pad_id: int, d_model: int, ff_size: int, num_layers: int,
                 dropout: float, positions: str, max_positions: int, pre_norm: bool, enc_dim: int,
                 self_attention: Sequence[nn.Module], cross_attention: Sequence[nn.Module]):
        super().__init__()
        if enc_dim != d_model:
            raise ValueError(f"model.decoder.d_model ({d_model}) must equal the encoder output size "
                             f"({enc_dim}): set model.encoder.d_model={d_model}")
        self_attn = _check_layers("model.decoder.self_attention", self_attention, num_layers)
        cross_attn = _check_layers("model.decoder.cross_attention", cross_attention, num_layers)
        self.embed = Embeddings(vocab_size, d_model, pad_id, scale=True)
        self.positions = PositionEncoding(positions, d_model, max_positions)
        self.layers = nn.ModuleList(DecoderLayer(d_model, ff_size, dropout, pre_norm, s, c)
                                    for s, c in zip(self_attn, cross_attn))
        self.final_norm = nn.LayerNorm(d_model) if pre_norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.output_dim = d_model
        self.query_lag = 0  # the query of step t has read the decoder input of step t (RNNDecoder.query_lag)
        self.unrolls_target = False  # all target positions at once: no loop (RNNDecoder.unrolls_target)

    def attention_modules(self) -> dict[Slot, nn.Module]:
        slots = {}
        for i, layer in enumerate(self.layers):
            slots[Slot.of("dec", i, "self")], slots[Slot.of("dec", i, "cross")] = layer.self_attention, layer.cross_attention
        return slots

    def init_state(self, enc: EncoderOutput) -> State:
        """Empty self-attention caches and the projected source keys/values of every layer."""
        B = enc.memory.size(0)
        empty = enc.memory[:, :0]  # (B, 0, D): projects to (B, H, 0, dh) of the right H, dh
        state = {"pos": torch.zeros(B, dtype=torch.long, device=enc.memory.device),
                 "seen": enc.memory.new_zeros(B, 0, 0)}  # (B, t=0, 0)
        for i, layer in enumerate(self.layers):
            state[f"self_k{i}"], state[f"self_v{i}"] = layer.self_attention.project_kv(empty, empty)
            k, v = layer.cross_attention.project_kv(enc.memory, enc.memory)  # (B, H, S, dh)
            state[f"cross_k{i}"], state[f"cross_v{i}"] = k, v
        return state

    def forward(self, tgt_in: Tensor, enc: EncoderOutput, state: State,
                need_weights: NeedWeights = False) -> DecoderOutput:
        """tgt_in (B, T) continuing from `state` -> hidden (B, T, D), state with caches grown by T.

        attention (need_weights): dec.<i>.self (B, H, T, t+T), dec.<i>.cross (B, H, T, S).
        """
        T, past = tgt_in.size(1), state["seen"].size(1)  # every row has seen `past` tokens
        steps = torch.arange(T, device=tgt_in.device)
        positions = state["pos"][:, None] + steps  # (B, T)
        x = self.dropout(self.embed(tgt_in) + self.positions(positions, past + T - 1))  # (B, T, D)
        keys = torch.arange(past + T, device=tgt_in.device)
        self_mask = keys[None, None, :] <= positions[:, :, None]  # (B, T, t+T) causal
        src_mask = enc.mask[:, None, :] if enc.padded else None  # (B, 1, S); None: no source padding
        new, attention = dict(state), {}
        for i, layer in enumerate(self.layers):
            # dynamo cannot build a Slot (a str subclass): none is built when no map is asked for
            slots = (Slot.of("dec", i, "self"), Slot.of("dec", i, "cross")) if need_weights is not False else ()
            want = tuple(wants(need_weights, slot) for slot in slots) or (False, False)
            x, (k, v), maps = layer(x, positions, self_mask, (state[f"self_k{i}"], state[f"self_v{i}"]),
                                    (state[f"cross_k{i}"], state[f"cross_v{i}"]), src_mask, want)
            new[f"self_k{i}"], new[f"self_v{i}"] = k, v
            attention.update({slot: w for slot, w, wanted in zip(slots, maps, want) if wanted})
        new["pos"] = state["pos"] + T
        new["seen"] = state["seen"].new_zeros(state["seen"].size(0), past + T, 0)  # (B, t+T, 0)
        return DecoderOutput(self.final_norm(x), new, attention, {})
