"""Hard attention (Xu et al. 2015) with the straight-through Gumbel-softmax estimator."""
import pytest
import torch

from nmt.attention import HardAttention
from nmt.attention.windows import lengths_mask


def setup(batch=3):
    att = HardAttention(5, 4, "general", 1.0)
    q, k, v = torch.randn(batch, 2, 5), torch.randn(batch, 6, 4), torch.randn(batch, 6, 3)
    mask = lengths_mask(torch.tensor([6, 3, 1]).repeat(batch // 3), 6)[:, None, :]  # (B, 1, Tk)
    return att, q, k, v, mask


def test_eval_is_argmax_one_hot():
    att, q, k, v, mask = setup()
    att.eval()
    out = att(q, k, v, mask)
    w = out.weights[:, 0]  # (B, Tq, Tk)
    assert ((w == 0) | (w == 1)).all() and (w.sum(-1) == 1).all()
    expected = att.score(q, k).masked_fill(~mask, float("-inf")).argmax(-1)
    assert torch.equal(w.argmax(-1), expected)
    torch.testing.assert_close(out.context, v.gather(1, expected[..., None].expand(-1, -1, 3)))


def test_training_is_one_hot_with_finite_gradients():
    att, q, k, v, mask = setup()
    att.train()
    out = att(q, k, v, mask)
    w = out.weights[:, 0]
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 2))
    assert ((w - w.round()).abs() < 1e-6).all()
    (out.context * torch.randn_like(out.context)).sum().backward()
    grad = att.score.W_a.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("training", [True, False])
def test_never_selects_padding(training):
    att, q, k, v, mask = setup(batch=300)
    k = k.masked_fill(~mask[:, 0, :, None], 100.0)  # padding keys would win every score
    att.train(training)
    w = att(q, k, v, mask).weights[:, 0]
    assert (w[~mask.expand_as(w)] == 0).all()


@pytest.mark.parametrize("training", [True, False])
def test_all_masked_row_gives_zeros(training):
    att, q, k, v, _ = setup()
    mask = torch.zeros(3, 1, 6, dtype=torch.bool)
    mask[0] = True
    att.train(training)
    out = att(q, k, v, mask)
    assert (out.weights[1:] == 0).all() and (out.context[1:] == 0).all()


def test_samples_follow_the_softmax():
    att = HardAttention(2, 2, "dot", 1.0).train()
    q = torch.ones(4000, 1, 2)
    k = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]).expand(4000, 3, 2)
    w = att(q, k, k, None).weights[:, 0, 0]  # (N, Tk)
    expected = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0)
    torch.testing.assert_close(w.mean(0), expected, atol=0.03, rtol=0)


def test_temperature_must_be_positive():
    with pytest.raises(ValueError, match="model.attention.temperature must be > 0"):
        HardAttention(4, 4, "dot", 0.0)
