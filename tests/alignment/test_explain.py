"""Jain & Wallace (2019)'s importance measures behind nmt-explain's taus, against values known by construction."""
import math
from itertools import combinations
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from helpers import BOS, EOS, PAD, TINY_TRANSFORMER, tiny_model
from torch import nn

from nmt.alignment.explain import ExplainSettings, importance_agreement, leave_one_out, one_hot_gradient
from nmt.attention.slot import Slot
from nmt.attention import GlobalAttention
from nmt.attention.windows import lengths_mask
from nmt.data.batching import collate
from nmt.models.embeddings import Embeddings

SRC = [[4, 5, 6, 4, 6], [6, 5], [5, 4, 4]]
TGT = [[4, 6, 5], [5, 5, 6, 4], [6]]


class OneAttention(nn.Module):
    """One global dot attention between fixed queries and the source embeddings (with position vectors in
    the keys only): logits_t = W c_t + b, c_t = sum_s a_t(s) e_s, a_t = softmax_s(q_t . (e_s + pos_s)).
    With a_t held fixed, d log p(y_t) / d e_s = a_t(s) g_t with g_t = W^T (onehot(y_t) - p_t), so Jain &
    Wallace's one-hot gradient is |a_t(s) g_t . e_s|."""

    def __init__(self, vocab: int = 7, dim: int = 6, length: int = 8):
        super().__init__()
        self.encoder, self.decoder = nn.Module(), nn.Module()
        self.encoder.embed = Embeddings(vocab, dim, PAD, scale=False)
        self.decoder.attention = GlobalAttention(dim, dim, "dot")  # slot "cross" (attention_modules)
        self.pos, self.query = nn.Parameter(torch.randn(length, dim)), nn.Parameter(torch.randn(length, dim))
        self.out = nn.Linear(dim, vocab)

    def attention_modules(self):
        return {Slot("cross"): self.decoder.attention}

    def forward(self, src, src_lengths, tgt_in, need_weights=False):
        e = self.encoder.embed(src)  # (B, S, D)
        S, T = src.size(1), tgt_in.size(1)
        query = self.query[:T].expand(src.size(0), T, -1)  # (B, T, D) independent of the source
        att = self.decoder.attention(query, e + self.pos[:S], e, lengths_mask(src_lengths, S)[:, None, :])
        return SimpleNamespace(logits=self.out(att.context), attention={"cross": att.weights}), None


def settings(gradient: bool, loo: bool) -> ExplainSettings:
    return ExplainSettings(counterfactuals=[], seed=0, gradient=gradient, leave_one_out=loo, chunk=4)


def test_one_hot_gradient_is_jain_wallace_closed_form():
    """|a_t(s) g_t . e_s|: fails for the gradient norm, for gradients through the weights, for random numbers."""
    model = OneAttention().eval()
    b = collate(SRC, TGT, [0, 1, 2], PAD, BOS, EOS)
    got = one_hot_gradient(model, b, PAD)  # (B, T, S)
    with torch.no_grad():
        out, _ = model(b.src, b.src_lengths, b.tgt_in)
        a = out.attention["cross"][:, 0]  # (B, T, S)
        g = (F.one_hot(b.tgt_out, 7).float() - F.softmax(out.logits, -1)) @ model.out.weight  # (B, T, D)
        e = model.encoder.embed(b.src)  # (B, S, D)
        expected = (a * (g @ e.transpose(1, 2))).abs() * (b.tgt_out != PAD)[..., None]  # (B, T, S)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_tau_is_one_when_the_importance_follows_the_attention_by_construction():
    """Identical source tokens: |g_t . e_s| is the same for every s, so the one-hot gradient is a_t(s) times a
    constant and Kendall tau is exactly 1 (random importance gives about 0)."""
    torch.manual_seed(1)
    model = OneAttention().eval()
    b = collate([[5] * 6, [5] * 4, [5] * 5], TGT, [0, 1, 2], PAD, BOS, EOS)
    result = importance_agreement(model, [b], PAD, settings(gradient=True, loo=False))
    assert result == {"cross": {"tau_grad": pytest.approx(1.0)}}


def tau_b(x: list[float], y: list[float]) -> float:
    """Kendall's tau-b by its definition, pair by pair (Kendall 1945): (concordant - discordant) /
    sqrt((pairs - ties in x) (pairs - ties in y)); nan when either side is constant."""
    pairs = list(combinations(range(len(x)), 2))
    sign = lambda v: (v > 0) - (v < 0)  # noqa: E731
    s = sum(sign(x[i] - x[j]) * sign(y[i] - y[j]) for i, j in pairs)
    tx, ty = sum(x[i] == x[j] for i, j in pairs), sum(y[i] == y[j] for i, j in pairs)
    denom = math.sqrt((len(pairs) - tx) * (len(pairs) - ty))
    return s / denom if denom > 0 else math.nan


def test_tau_is_the_mean_over_real_target_tokens_of_tau_b_over_the_real_source():
    """importance_agreement = the mean over sentences' real target tokens of tau-b(a_t, g_t) over that
    sentence's own source pieces (padding left out), a_t the attention and g_t the one-hot gradient:
    fails when tau compares the attention with itself (1) or counts the padded positions (a long fourth
    sentence pads the first, whose tau is below 1: padding, 0 on both sides, would add concordant pairs)."""
    torch.manual_seed(2)
    model = OneAttention().eval()
    src, tgt = SRC + [[5, 6, 4, 4, 5, 6, 6]], TGT + [[6, 4]]
    b = collate(src, tgt, [0, 1, 2, 3], PAD, BOS, EOS)
    got = importance_agreement(model, [b], PAD, settings(gradient=True, loo=False))
    imp = one_hot_gradient(model, b, PAD)  # (B, T, S), checked against its closed form above
    with torch.no_grad():
        a = model(b.src, b.src_lengths, b.tgt_in)[0].attention["cross"][:, 0]  # (B, T, S)
    taus = [tau_b(a[i, t, : len(s)].tolist(), imp[i, t, : len(s)].tolist())
            for i, (s, y) in enumerate(zip(src, tgt)) for t in range(len(y) + 1)]  # + 1: eos
    expected = sum(t for t in taus if not math.isnan(t)) / sum(not math.isnan(t) for t in taus)
    assert expected < 0.99  # the gradient does not rank the pieces exactly as the attention here
    assert got == {"cross": {"tau_grad": pytest.approx(expected, abs=1e-9)}}


def loo_by_hand(model, src: list[list[int]], tgt: list[list[int]]) -> list[torch.Tensor]:
    """One sentence at a time, piece s deleted from the source list: TVD (T, S) per sentence."""
    def probs(s, t):
        b = collate([s], [t], [0], PAD, BOS, EOS)
        return F.softmax(model(b.src, b.src_lengths, b.tgt_in)[0].logits, -1)[0]  # (T, V)
    found = []
    for s, t in zip(src, tgt):
        p = probs(s, t)
        found.append(torch.stack([0.5 * (p - probs(s[:k] + s[k + 1:], t)).abs().sum(-1) for k in range(len(s))], 1))
    return found


@pytest.mark.parametrize("overrides,base", [(["model/attention=bahdanau"], None), ([], TINY_TRANSFORMER)])
def test_leave_one_out_equals_deleting_each_piece_by_hand(overrides, base):
    torch.manual_seed(0)
    model = (tiny_model(overrides) if base is None else tiny_model(overrides, base=base)).eval()
    src, tgt = [[4, 5, 6, 7, 8], [9, 10], [11, 12, 13], [14]], [[4, 5, 6], [7, 8, 9, 10], [11], [12, 13]]
    b = collate(src, tgt, [0, 1, 2, 3], PAD, BOS, EOS)
    got = leave_one_out(model, b, PAD, chunk=3)  # (B, T, S): 11 variants in chunks of 3
    with torch.no_grad():
        expected = loo_by_hand(model, src[:3], tgt[:3])
    for k, e in enumerate(expected):
        T, S = e.shape
        torch.testing.assert_close(got[k, :T, :S], e, atol=1e-5, rtol=1e-4)
        assert (got[k, T:] == 0).all() and (got[k, :, S:] == 0).all()  # padding
    assert (got[3] == 0).all()  # a one-piece source has nothing to leave out


def test_both_taus_per_cross_slot_of_a_transformer():
    torch.manual_seed(0)
    model = tiny_model([], base=TINY_TRANSFORMER).eval()
    b = collate(SRC, TGT, [0, 1, 2], PAD, BOS, EOS)
    result = importance_agreement(model, [b], PAD, settings(gradient=True, loo=True))
    assert set(result) == {"dec.0.cross", "dec.1.cross"}
    for taus in result.values():
        assert set(taus) == {"tau_grad", "tau_loo"} and all(-1.0 <= t <= 1.0 for t in taus.values())
    assert importance_agreement(model, [b], PAD, settings(gradient=False, loo=False)) == {}
