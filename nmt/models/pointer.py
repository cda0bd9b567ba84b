"""Copy attention: the pointer-generator of See et al. 2017 ("Get To The Point", Sec. 2.2).

At every target step t the decoder either generates a token from the vocabulary or copies a source token
through its cross-attention:

    p_gen = sigma(w_c^T c_t + w_s^T s_t + w_x^T x_t + b)                          (Eq. 8)
    P(w)  = p_gen P_vocab(w) + (1 - p_gen) sum_{i: x_i = w} a_ti                 (Eq. 9)

c_t is the context of the decoder's cross-attention, s_t the state that queried it (Luong flow: h_t;
Bahdanau flow: s_{t-1}, the state that attends and that the readout reads), x_t the embedding of the decoder
input y_{t-1}, a_t the attention weights over the source. The copy term indexes the target vocabulary with
source ids, so source and target must share one vocabulary (data.tokenizer.joint=true): the extended
per-batch vocabulary of the paper (source words outside the vocabulary) is not built, since a joint
subword vocabulary has no out-of-vocabulary words, only pieces.

The mixture is returned as LOG-probabilities in float32, computed in log space:

    log P(w) = logaddexp(log p_gen + log_softmax(logits)_w, log(1 - p_gen) + log max(copy_w, FLOOR))

log_softmax of log-probabilities is the identity, so every consumer of `DecoderOutput.logits` (the
label-smoothed loss, greedy, beam search, sampling, forced scoring, ensembles) reads the mixture unchanged.
The generation term is finite for any finite logits, so log P is never -inf: a token that is not in the source
and that the generator gives probability 0 after float underflow still has log P >= log p_gen + log_softmax,
and the label-smoothed loss (which averages -log P over the whole vocabulary) stays finite. FLOOR (float32's
smallest normal number, log FLOOR = -87.3) only keeps log(0) out of the copy term, whose gradient would be
0 * inf = NaN; it adds at most V * FLOOR (< 1e-33) to the total mass.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FLOOR = torch.finfo(torch.float32).tiny  # smallest normal float32: log FLOOR = -87.3, finite


def copy_distribution(weights: Tensor, src: Tensor, vocab_size: int) -> Tensor:
    """sum_{i: x_i = w} a_ti (See et al. 2017, Eq. 9's copy term): attention mass scattered onto source ids.

    weights (B, T, S) attention over the source (heads already averaged), src (B, S) long source ids ->
    (B, T, V) float32, every row a distribution. Rows are renormalised to sum to 1: local-p's Gaussian-scaled
    weights sum below 1 (Luong et al. 2015, Eq. 10); softmax rows are unchanged. Padding has weight 0."""
    a = weights.float()  # (B, T, S)
    a = a / a.sum(-1, keepdim=True).clamp_min(FLOOR)  # (B, T, S) rows sum to 1
    index = src[:, None, :].expand(-1, a.size(1), -1)  # (B, S) -> (B, T, S)
    return a.new_zeros(a.size(0), a.size(1), vocab_size).scatter_add_(-1, index, a)  # (B, T, V)


def copy_mixture(logits: Tensor, gate: Tensor, weights: Tensor, src: Tensor) -> Tensor:
    """log P(w) of See et al. 2017, Eq. 9, in float32.

    logits (B, T, V) the generator's scores (P_vocab = softmax), gate (B, T) the pre-sigmoid p_gen score
    (p_gen = sigmoid(gate)), weights (B, T, S) attention over the source, src (B, S) source ids
    -> (B, T, V) log-probabilities (logsumexp over V is 0 within float rounding)."""
    gate = gate.float()  # (B, T)
    log_gen = F.logsigmoid(gate)[..., None] + F.log_softmax(logits.float(), dim=-1)  # (B, T, V)
    copy = copy_distribution(weights, src, logits.size(-1))  # (B, T, V)
    log_copy = F.logsigmoid(-gate)[..., None] + copy.clamp_min(FLOOR).log()  # (B, T, V); 1 - p_gen = sig(-gate)
    return torch.logaddexp(log_gen, log_copy)  # (B, T, V)


class PointerGenerator(nn.Module):
    """The p_gen layer of See et al. 2017, Eq. 8, and the mixture of Eq. 9 (copy_mixture).

    context_dim: size of c_t (the encoder output), state_dim: size of s_t (the decoder hidden size),
    input_dim: size of x_t (the decoder embedding)."""

    def __init__(self, context_dim: int, state_dim: int, input_dim: int):
        super().__init__()
        # [w_c; w_s; w_x] as one row and b: w_c^T c_t + w_s^T s_t + w_x^T x_t + b = w^T [c_t; s_t; x_t] + b
        self.gate = nn.Linear(context_dim + state_dim + input_dim, 1)

    def forward(self, logits: Tensor, context: Tensor, state: Tensor, inputs: Tensor, weights: Tensor,
                src: Tensor) -> tuple[Tensor, Tensor]:
        """logits (B, T, V), context c_t (B, T, Dc), state s_t (B, T, Ds), inputs x_t (B, T, E), weights
        (B, T, S), src (B, S) -> (log P (B, T, V) float32, p_gen (B, T) float32)."""
        gate = self.gate(torch.cat([context, state, inputs], dim=-1)).squeeze(-1)  # (B, T, Dc+Ds+E) -> (B, T)
        return copy_mixture(logits, gate, weights, src), torch.sigmoid(gate.float())
