"""Luong et al. 2015, Eq. 8, 'location': a_t = softmax(W_a h_t), scores from the query alone, cut to the
source length and masked (nmt.attention.base.LocationScore, configs/model/attention/luong_location.yaml)."""
import pytest
import torch
from helpers import overfit, real_batch, tiny_model

from nmt.attention import GlobalAttention
from nmt.attention.base import build_score


def test_scores_do_not_depend_on_the_keys_contents():
    score = build_score("location", 4, 6, max_keys=10)
    q = torch.randn(2, 3, 4)
    torch.testing.assert_close(score(q, torch.randn(2, 5, 6)), score(q, torch.randn(2, 5, 6)))
    assert score(q, torch.randn(2, 5, 6)).shape == (2, 3, 5)


def test_weights_are_the_softmax_of_W_a_h_t_cut_to_each_source_and_masked():
    torch.manual_seed(0)
    att = GlobalAttention(4, 6, "location", max_keys=10)
    q, keys = torch.randn(2, 3, 4), torch.randn(2, 5, 6)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])[:, None, :]  # lengths 5 and 3
    weights = att(q, keys, keys, mask).weights[:, 0]  # (B, Tq, Tk)
    W_a = att.score.W_a.weight  # (max_keys, Dq)
    for b, length in enumerate((5, 3)):
        expected = torch.softmax(q[b] @ W_a[:length].T, -1)  # (Tq, S): positions 0..S-1 of W_a h_t
        torch.testing.assert_close(weights[b, :, :length], expected)
    assert (weights[1, :, 3:] == 0).all()


def test_positions_past_max_keys_get_no_weight():
    att = GlobalAttention(4, 6, "location", max_keys=3)
    out = att(torch.randn(2, 2, 4), torch.randn(2, 5, 6), torch.randn(2, 5, 6), None)
    assert (out.weights[..., 3:] == 0).all() and torch.isfinite(out.context).all()
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(2, 1, 2))


@pytest.mark.parametrize("score, max_keys, message", [
    ("location", None, "max_keys goes with score 'location' only"),
    ("general", 16, "max_keys goes with score 'location' only"),
    ("location", 0, "max_keys must be >= 1"),
])
def test_bad_location_settings_name_the_fix(score, max_keys, message):
    with pytest.raises(ValueError, match=message):
        build_score(score, 4, 4, max_keys)


def test_an_rnn_with_the_location_score_learns_real_pairs(real_pairs):
    sv, tv, src, src_len, tgt_in, tgt_out = real_batch(real_pairs)
    model = tiny_model(["model/attention=luong_location"], len(sv), len(tv))
    first = overfit(model, src, src_len, tgt_in, tgt_out, steps=1)
    last = overfit(model, src, src_len, tgt_in, tgt_out, steps=60)
    assert last < 0.5 * first, (first, last)
