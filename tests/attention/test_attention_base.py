"""masked_softmax and the score functions (Luong et al. 2015, Eq. 8; Bahdanau et al. 2015)."""
import pytest
import torch

from nmt.attention import build_score, masked_softmax
from nmt.attention.base import SCORES


def test_masked_softmax_zero_on_masked_keys_and_rows_sum_to_one():
    scores = torch.randn(2, 3, 5)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])[:, None, :]  # (B, 1, Tk)
    probs = masked_softmax(scores, mask)
    assert (probs[1, :, 2:] == 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 3))
    torch.testing.assert_close(probs[1, :, :2], torch.softmax(scores[1, :, :2], -1))


def test_masked_softmax_without_mask_is_softmax():
    scores = torch.randn(2, 3, 5)
    torch.testing.assert_close(masked_softmax(scores, None), torch.softmax(scores, -1))


def test_all_masked_row_gives_zeros_and_finite_grads():
    scores = torch.randn(2, 3, 4, requires_grad=True)
    mask = torch.ones(2, 3, 4, dtype=torch.bool)
    mask[0, 1] = False  # one row with no key at all
    probs = masked_softmax(scores, mask)
    assert not torch.isnan(probs).any()
    assert (probs[0, 1] == 0).all()
    (probs * torch.randn_like(probs)).sum().backward()
    assert torch.isfinite(scores.grad).all() and (scores.grad[0, 1] == 0).all()


def test_masked_softmax_other_dim_and_half_scores():
    scores = torch.randn(4, 3).half()
    mask = torch.tensor([True, True, False, False])[:, None]  # (Tk, 1): softmax over dim 0
    probs = masked_softmax(scores, mask, dim=0)
    assert (probs[2:] == 0).all() and torch.isfinite(probs).all()


def test_unknown_score_lists_valid_names():
    with pytest.raises(ValueError) as err:
        build_score("cosine", 4, 4)
    for name in SCORES:
        assert name in str(err.value)


@pytest.mark.parametrize("name", ["dot", "scaled_dot"])
def test_dot_scores_need_equal_sizes(name):
    with pytest.raises(ValueError, match="query_dim == key_dim, got 3 and 4"):
        build_score(name, 3, 4)


def test_dot_and_scaled_dot():
    q, k = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    torch.testing.assert_close(build_score("dot", 4, 4)(q, k), torch.einsum("bqd,bkd->bqk", q, k))
    torch.testing.assert_close(build_score("scaled_dot", 4, 4)(q, k),
                               torch.einsum("bqd,bkd->bqk", q, k) / 2.0)


def test_general_is_bilinear():
    score = build_score("general", 3, 4)
    q, k = torch.randn(2, 2, 3), torch.randn(2, 5, 4)
    W_a = score.W_a.weight.T  # (Dq, Dk): h_t^T W_a h_s
    torch.testing.assert_close(score(q, k), torch.einsum("bqi,ij,bkj->bqk", q, W_a, k))


def test_concat_matches_explicit_concatenation():
    score = build_score("concat", 3, 4)
    q, k = torch.randn(2, 2, 3), torch.randn(2, 5, 4)
    expected = torch.empty(2, 2, 5)
    for b in range(2):
        for t in range(2):
            for s in range(5):
                cat = torch.cat([q[b, t], k[b, s]])  # [h_t; h_s]
                expected[b, t, s] = score.v_a.weight[0] @ torch.tanh(score.W_a.weight @ cat)
    torch.testing.assert_close(score(q, k), expected)


def test_additive_matches_bahdanau_formula():
    score = build_score("additive", 3, 4)
    q, k = torch.randn(2, 2, 3), torch.randn(2, 5, 4)
    hidden = torch.tanh(score.W_a(q)[:, :, None] + score.U_a(k)[:, None])  # (B, Tq, Tk, A)
    torch.testing.assert_close(score(q, k), hidden @ score.v_a.weight[0])


@pytest.mark.parametrize("name", sorted(SCORES))
def test_scores_accept_leading_head_dimension(name):
    score = build_score(name, 4, 4, 8 if name == "location" else None)  # location: W_a scores 8 positions
    q, k = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 6, 4)  # (B, H, T, dh)
    out = score(q, k)
    assert out.shape == (2, 3, 5, 6)
    torch.testing.assert_close(out[:, 1], score(q[:, 1], k[:, 1]))


def test_additive_matches_an_independent_formula():
    """e_ij = v_a^T tanh(W_a s_i + U_a h_j) (Bahdanau et al. 2015, App. A.1.2), with known matrices written
    into the module and the score computed here per (i, j) with plain matrix-vector products."""
    Dq, Dk = 3, 4
    W = torch.randn(Dk, Dq)  # W_a: (A, Dq), A = Dk
    U = torch.randn(Dk, Dk)  # U_a: (A, Dk)
    v = torch.randn(Dk)      # v_a: (A,)
    score = build_score("additive", Dq, Dk)
    with torch.no_grad():
        for name, value in (("W_a", W), ("U_a", U), ("v_a", v[None])):
            getattr(score, name).weight.copy_(value)
    q, k = torch.randn(2, 2, Dq), torch.randn(2, 5, Dk)
    expected = torch.tensor([[[float(v @ torch.tanh(W @ q[b, i] + U @ k[b, j])) for j in range(5)]
                              for i in range(2)] for b in range(2)])
    torch.testing.assert_close(score(q, k), expected)
