"""Bidirectional RNN encoder and attentional RNN decoder (Luong and Bahdanau flows)."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from nmt.attention.slot import Slot
from nmt.models.embeddings import Embeddings
from nmt.attention.windows import lengths_mask
from nmt.common import HostLengths
from nmt.models.seq2seq import CopyInputs, DecoderOutput, EncoderOutput, NeedWeights, State, wants

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}
CROSS = Slot("cross")  # the RNN decoder's one attention over the source
FLOWS = ("luong", "bahdanau")


def unpack(packed, total_length: int) -> Tensor:
    """pad_packed_sequence (batch first) without its lengths output, whose `unsorted_indices.cpu()` is a
    device->host sync on GPU -> (B, total_length, D)."""
    padded, _ = torch._VF._pad_packed_sequence(packed.data, packed.batch_sizes, True, 0.0, total_length)
    return padded.index_select(0, packed.unsorted_indices)


def run_fp32(rnn: nn.RNNBase, x: Tensor | PackedSequence, hx):
    """rnn(x, hx) in float32 outside autocast -> (output, final state), both float32.

    CUDA autocast runs _cudnn_rnn in float16 whatever the autocast dtype (bf16 included, and this project has
    no GradScaler) and casts, so re-flattens, the weights on every call: every decoder step. Outside autocast
    the RNN runs on its own float32 weights (cuDNN takes TF32 for them: torch.backends.cudnn.allow_tf32, on by default);
    whatever follows (attention, generator) is under autocast again. hx: (L, B, H), or a pair for an LSTM."""
    data = x.data if isinstance(x, PackedSequence) else x
    x = x if isinstance(x, PackedSequence) else x.float()  # a packed input is packed from float32
    hx = tuple(h.float() for h in hx) if isinstance(hx, tuple) else hx.float()
    with torch.autocast(data.device.type, enabled=False):
        return rnn(x, hx)


@torch.compiler.disable(reason="packed sequences: the lengths are read on the host and "
                        "_pad_packed_sequence has no fake-tensor kernel")
def _packed_rnn(rnn: nn.RNNBase, x: Tensor, lengths: Tensor):
    """A bidirectional RNN over the real tokens only: x (B, S, E), lengths (B,) on the host -> memory (B, S, 2H)
    float32 (zeros on padding), final states (2L, B, H) (an LSTM: a pair). Run eagerly under torch.compile (see
    the reason)."""
    host = lengths if lengths.device.type == "cpu" else lengths.cpu()  # device lengths: a device->host copy
    packed = pack_padded_sequence(x.float(), host, batch_first=True, enforce_sorted=False)
    zeros = x.new_zeros(2 * rnn.num_layers, x.size(0), rnn.hidden_size, dtype=torch.float32)  # (2L, B, H)
    out, final = run_fp32(rnn, packed, (zeros, zeros) if isinstance(rnn, nn.LSTM) else zeros)  # given h0:
    return unpack(out, x.size(1)), final  # no int(batch_sizes[0]) inside the RNN   (B, S, 2H)


def _rnn(cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float,
         bidirectional: bool) -> nn.RNNBase:
    if cell not in CELLS:
        raise ValueError(f"model.*.cell must be one of {sorted(CELLS)}, got {cell!r}")
    return CELLS[cell](input_size, hidden_size, num_layers, batch_first=True,
                       dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional)


class RNNEncoder(nn.Module):
    """Bidirectional LSTM/GRU over packed sequences (Bahdanau et al. 2015, Sec. 3.2)."""

    def __init__(self, vocab_size: int, pad_id: int, cell: str, emb_size: int,
                 hidden_size: int, num_layers: int, dropout: float):
        super().__init__()
        self.embed = Embeddings(vocab_size, emb_size, pad_id, scale=False)
        self.rnn = _rnn(cell, emb_size, hidden_size, num_layers, dropout, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.output_dim = 2 * hidden_size
        self.final_dim = 2 * hidden_size * (2 if cell == "lstm" else 1)

    def attention_modules(self) -> dict[Slot, nn.Module]:
        return {}  # a recurrent encoder has no attention

    def forward(self, src: Tensor, src_lengths: Tensor, need_weights: NeedWeights = False,
                host_lengths: HostLengths | None = None) -> EncoderOutput:
        """src (B, S), src_lengths (B,) -> memory (B, S, 2H), final (B, L, 2H or 4H for LSTM). Packing reads
        host_lengths (Batch.host) when given, else copies src_lengths to the host."""
        x = self.dropout(self.embed(src))  # (B, S, E)
        lengths = src_lengths if host_lengths is None else host_lengths.lengths  # (B,)
        memory, final = _packed_rnn(self.rnn, x, lengths)  # (B, S, 2H), (2L, B, H) [x2 for LSTM]
        states = final if isinstance(final, tuple) else (final,)
        # each (L*2, B, H) -> (L, 2, B, H) -> (B, L, 2, H) -> (B, L, 2H): both directions side by side
        parts = [s.view(self.rnn.num_layers, 2, s.size(1), s.size(2)).permute(2, 0, 1, 3)
                 .reshape(s.size(1), self.rnn.num_layers, -1) for s in states]
        mask = lengths_mask(src_lengths, src.size(1))  # (B, S)
        return EncoderOutput(self.dropout(memory), mask, torch.cat(parts, dim=-1))  # final (B, L, 2H | 4H)


class RNNDecoder(nn.Module):
    """Attentional RNN decoder with two faithful flows.

    luong:    h_t = RNN(h_{t-1}, [y_{t-1}; h~_{t-1}]) ; c_t = attn(h_t) ;
              h~_t = tanh(W_c [c_t; h_t])                      (Luong et al. 2015, Eq. 5, Sec. 3.3)
    bahdanau: c_t = attn(s_{t-1}) ; s_t = RNN(s_{t-1}, [y_{t-1}; c_t]) ;
              t_t = maxout(U s_{t-1} + V y_{t-1} + C c_t)      (Bahdanau et al. 2015, App. A.2.2)
    The attention module is any module of nmt.attention (one contract).
    """

    def __init__(self, vocab_size: int, pad_id: int, cell: str, emb_size: int, hidden_size: int,
                 num_layers: int, dropout: float, input_feeding: bool, attention: nn.Module,
                 flow: str, enc_dim: int, enc_final_dim: int):
        super().__init__()
        if flow not in FLOWS:
            raise ValueError(f"model.attention.flow must be one of {FLOWS}, got {flow!r}")
        self.flow, self.cell, self.num_layers, self.hidden_size = flow, cell, num_layers, hidden_size
        self.input_feeding = input_feeding and flow == "luong"
        # decoder inputs the attention query of a step has not read yet: Bahdanau attends with s_{t-1}
        # (it has not consumed y_{t-1}), Luong with h_t (it has); read by nmt.alignment's shift
        self.query_lag = 1 if flow == "bahdanau" else 0
        # a Python loop over the target positions (torch.compile unrolls it: one graph per target length; the
        # training step pads the target to buckets then, nmt.training.step.compile_batch)
        self.unrolls_target = not (flow == "luong" and not self.input_feeding)
        extra = enc_dim if flow == "bahdanau" else (hidden_size if self.input_feeding else 0)
        self.embed = Embeddings(vocab_size, emb_size, pad_id, scale=False)
        self.rnn = _rnn(cell, emb_size + extra, hidden_size, num_layers, dropout, bidirectional=False)
        self.attention = attention
        n_states = 2 if cell == "lstm" else 1
        self.bridge = nn.Linear(enc_final_dim, hidden_size * n_states)
        if flow == "luong":
            self.combine = nn.Linear(enc_dim + hidden_size, hidden_size, bias=False)
        else:
            self.readout = nn.Linear(hidden_size + emb_size + enc_dim, 2 * hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.output_dim = hidden_size

    def attention_modules(self) -> dict[Slot, nn.Module]:
        return {CROSS: self.attention}

    def init_state(self, enc: EncoderOutput) -> State:
        """Initial state from the encoder's final states (or the mean of memory if it has none)."""
        final = enc.final
        if final is None:  # e.g. a Transformer encoder: masked mean of memory, same for every layer
            m = enc.mask.unsqueeze(-1).to(enc.memory.dtype)  # (B, S, 1)
            mean = (enc.memory * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, Dk)
            final = mean.unsqueeze(1).expand(-1, self.num_layers, -1)  # (B, L, Dk)
        init = torch.tanh(self.bridge(final[:, -self.num_layers:]))  # (B, L, H * n_states)
        B = init.size(0)
        state = {"h": init[..., : self.hidden_size].contiguous(),
                 "pos": torch.zeros(B, dtype=torch.long, device=init.device)}
        if self.cell == "lstm":
            state["c"] = init[..., self.hidden_size:].contiguous()
        if self.input_feeding:
            state["feed"] = init.new_zeros(B, self.hidden_size)
        return state

    def _hx(self, state: State):
        h = state["h"].transpose(0, 1).contiguous()  # (L, B, H)
        return (h, state["c"].transpose(0, 1).contiguous()) if self.cell == "lstm" else h  # c (L, B, H)

    def _store(self, state: State, hx, steps: int, attn_state: Tensor | None) -> State:
        """The state after `steps` more target positions; attn_state: the attention's own state after them
        (coverage C_t (B, S), kept under "attn_state" so beam search reorders it like h and c), None: stateless."""
        new = dict(state)
        if attn_state is not None:
            new["attn_state"] = attn_state
        h, c = hx if self.cell == "lstm" else (hx, None)
        new["h"] = h.transpose(0, 1)  # (B, L, H)
        if c is not None:
            new["c"] = c.transpose(0, 1)  # (B, L, H)
        new["pos"] = state["pos"] + steps
        return new

    def _attend(self, query: Tensor, enc: EncoderOutput, positions: Tensor, need_weights: bool,
                attn_state: Tensor | None):
        """query (B, Tq, H), positions (B, Tq), attn_state the attention's state (None: first step or stateless)
        -> AttentionOutput (context (B, Tq, Dk), .state the attention's next state). A stateless type is never
        given a state (the contract), so a user's type written before the keyword existed still works."""
        stateful = {} if attn_state is None else {"state": attn_state}
        return self.attention(query, enc.memory, enc.memory, enc.mask[:, None, :],
                              query_positions=positions, need_weights=need_weights, **stateful)

    def forward(self, tgt_in: Tensor, enc: EncoderOutput, state: State,
                need_weights: NeedWeights = False, copy_inputs: bool = False) -> DecoderOutput:
        """tgt_in (B, T) -> features (B, T, H); continues from `state` (T=1 for step-wise decoding).
        copy_inputs: also return c_t, s_t, x_t and the cross-attention weights of every step in .copy (copy
        attention, nmt.models.pointer), whatever need_weights asks for the maps."""
        need_weights = wants(need_weights, CROSS)
        emb = self.dropout(self.embed(tgt_in))  # (B, T, E)
        T = tgt_in.size(1)
        positions = state["pos"][:, None] + torch.arange(T, device=tgt_in.device)  # (B, T)
        if self.flow == "luong" and not self.input_feeding:
            return self._luong_parallel(emb, enc, state, positions, need_weights, copy_inputs)
        step = self._luong_step if self.flow == "luong" else self._bahdanau_step
        hx, outs, weights, centres, copy = self._hx(state), [], [], [], []
        feed, attn_state = state.get("feed"), state.get("attn_state")  # attn_state: absent before the first step
        for t in range(T):
            before = hx
            o, hx, att = step(emb[:, t: t + 1], enc, hx, feed, positions[:, t: t + 1], need_weights or copy_inputs,
                              attn_state)
            feed, attn_state = o[:, 0], att.state
            outs.append(o)
            if need_weights:  # training never pays for collecting maps
                weights.append(att.weights)
                if att.centres is not None:
                    centres.append(att.centres)
            if copy_inputs:  # s_t = the query: Bahdanau s_{t-1} (before the step), Luong h_t (after it)
                copy.append((att.context, self._top(before if self.flow == "bahdanau" else hx), att.weights))
        new = self._store(state, hx, T, attn_state)
        if self.input_feeding:
            new["feed"] = feed
        out = _output(self.dropout(torch.cat(outs, 1)), new, weights, centres)  # T x (B, 1, H) -> (B, T, H)
        out.copy = _copy_inputs(copy, emb) if copy_inputs else None
        return out

    def _top(self, hx) -> Tensor:
        """The top layer's hidden state of hx ((L, B, H), an LSTM: a pair) -> (B, 1, H)."""
        return (hx[0] if self.cell == "lstm" else hx)[-1][:, None]

    def _luong_parallel(self, emb, enc, state, positions, need_weights, copy_inputs) -> DecoderOutput:
        """No input feeding: the whole target sequence goes through cuDNN in one call."""
        h_seq, hx = run_fp32(self.rnn, emb, self._hx(state))  # (B, T, H) float32
        # a stateful attention (coverage) takes the T queries as T successive steps (GlobalAttention.covered)
        att = self._attend(h_seq, enc, positions, need_weights or copy_inputs, state.get("attn_state"))
        out = torch.tanh(self.combine(torch.cat([att.context, h_seq], dim=-1)))  # (B, T, H)
        weights = [att.weights] if need_weights else []
        cen = [att.centres] if need_weights and att.centres is not None else []
        result = _output(self.dropout(out), self._store(state, hx, emb.size(1), att.state), weights, cen)
        result.copy = _copy_inputs([(att.context, h_seq, att.weights)], emb) if copy_inputs else None
        return result

    def _luong_step(self, emb_t, enc, hx, feed, pos, need_weights, attn_state):
        """emb_t (B, 1, E), feed (B, H) h~_{t-1} -> h~_t (B, 1, H)."""
        x = torch.cat([emb_t, feed[:, None]], dim=-1) if self.input_feeding else emb_t  # (B, 1, E [+ H])
        h_t, hx = run_fp32(self.rnn, x, hx)  # (B, 1, H) float32
        att = self._attend(h_t, enc, pos, need_weights, attn_state)
        return torch.tanh(self.combine(torch.cat([att.context, h_t], dim=-1))), hx, att

    def _bahdanau_step(self, emb_t, enc, hx, feed, pos, need_weights, attn_state):
        """Attend with s_{t-1}, then the RNN consumes [y_{t-1}; c_t]; maxout readout -> (B, 1, H)."""
        s_prev = (hx[0] if self.cell == "lstm" else hx)[-1][:, None]  # (B, 1, H) top layer
        att = self._attend(s_prev, enc, pos, need_weights, attn_state)
        _, hx = run_fp32(self.rnn, torch.cat([emb_t, att.context], dim=-1), hx)  # input (B, 1, E + Dk)
        t = self.readout(torch.cat([s_prev, emb_t, att.context], dim=-1))  # (B, 1, 2H)
        return t.view(*t.shape[:-1], self.hidden_size, 2).amax(-1), hx, att  # (B, 1, H, 2) -> (B, 1, H)


def _copy_inputs(steps: list[tuple[Tensor, Tensor, Tensor]], emb: Tensor) -> CopyInputs:
    """[(c_t (B, t, Dk), s_t (B, t, H), weights (B, H, t, S))] per step or one for all, x (B, T, E) -> CopyInputs
    along T, the weights averaged over heads (a multi-head slot copies with the mean of its heads)."""
    context, state, weights = zip(*steps)
    mean = torch.cat(weights, dim=2).float().mean(1)  # T x (B, H, 1, S) -> (B, H, T, S) -> (B, T, S)
    return CopyInputs(torch.cat(context, 1), torch.cat(state, 1), emb, mean)  # (B, T, Dk), (B, T, H)


def _output(features: Tensor, state: State, weights: list[Tensor], centres: list[Tensor]) -> DecoderOutput:
    """Stack per-step attention (B, H, 1, S) along Tq into (B, H, T, S); none when not asked for."""
    attn = {CROSS: torch.cat(weights, dim=2)} if weights else {}  # T x (B, H, 1, S) -> (B, H, T, S)
    cen = {CROSS: torch.cat(centres, dim=1)} if centres else {}  # T x (B, 1) -> (B, T)
    return DecoderOutput(features, state, attn, cen)
