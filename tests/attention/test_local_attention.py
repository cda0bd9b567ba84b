"""Local attention, local-m and local-p (Luong et al. 2015, Sec. 3.2, Eq. 9-10)."""
import math

import pytest
import torch

from nmt.attention import GlobalAttention, LocalAttention
from nmt.attention.windows import lengths_mask

LENGTHS = torch.tensor([9, 5, 2])
MASK = lengths_mask(LENGTHS, 9)[:, None, :]  # (B, 1, Tk)


def local(window, half_width=2, sigma=1.0, score="general", dq=5, dk=4):
    return LocalAttention(dq, dk, score, window, half_width, sigma)


def data(tq=4, dq=5, dk=4):
    return torch.randn(3, tq, dq), torch.randn(3, 9, dk), torch.randn(3, 9, 3)


def test_local_m_zero_outside_window_and_on_padding():
    att = local("local_m")
    q, k, v = data()
    pos = torch.arange(4).expand(3, 4) + 1  # (B, Tq)
    out = att(q, k, v, MASK, query_positions=pos)
    dist = (torch.arange(9) - pos[..., None]).abs()  # (B, Tq, Tk)
    outside = (dist > 2) | ~MASK
    assert (out.weights[:, 0][outside] == 0).all() and out.centres is None
    rows = out.weights.sum(-1)[:, 0]  # (B, Tq): 1, or 0 where the window has no source word
    has_key = (~outside).any(-1)
    torch.testing.assert_close(rows[has_key], torch.ones(int(has_key.sum())))
    assert (rows[~has_key] == 0).all() and (out.context[~has_key] == 0).all()


def test_local_m_needs_query_positions():
    q, k, v = data()
    with pytest.raises(ValueError, match="query_positions"):
        local("local_m")(q, k, v, MASK)


def test_local_p_zero_outside_window_and_below_alignment():
    att = local("local_p")
    q, k, v = data()
    out = att(q, k, v, MASK)
    dist = (torch.arange(9) - out.centres[..., None]).abs()  # (B, Tq, Tk)
    assert (out.weights[:, 0][(dist > 2) | ~MASK] == 0).all()
    align, centres = att.align(q, k, MASK, None)
    torch.testing.assert_close(centres, out.centres)
    assert (out.weights[:, 0] <= align).all()


def luong_local_p_loop(att, q, k, v, lengths):
    """Luong et al. 2015 Eq. 9-10 written one (b, t, s) at a time."""
    D, sigma = att.half_width, att.sigma
    W_p, v_p, W_a = att.W_p.weight, att.v_p.weight[0], att.score.W_a.weight.T
    B, Tq, _ = q.shape
    context, weights, centres = torch.zeros(B, Tq, v.size(-1)), torch.zeros(B, Tq, k.size(1)), torch.zeros(B, Tq)
    for b in range(B):
        S = int(lengths[b])
        for t in range(Tq):
            h_t = q[b, t]
            p_t = (S * torch.sigmoid(v_p @ torch.tanh(W_p @ h_t))).detach()  # Eq. 9
            window = [s for s in range(S) if abs(s - float(p_t)) <= D]
            scores = torch.stack([h_t @ W_a @ k[b, s] for s in window])  # general, Eq. 8
            align = torch.softmax(scores, 0)
            for i, s in enumerate(window):
                a = align[i] * math.exp(-((s - float(p_t)) ** 2) / (2 * sigma ** 2))  # Eq. 10
                weights[b, t, s] = a
                context[b, t] += a * v[b, s]
            centres[b, t] = p_t
    return context, weights, centres


def test_local_p_equals_luong_equations_loop():
    att = local("local_p", half_width=2, sigma=1.0)
    q, k, v = data()
    out = att(q, k, v, MASK)
    context, weights, centres = luong_local_p_loop(att, q, k, v, LENGTHS)
    torch.testing.assert_close(out.centres, centres)
    torch.testing.assert_close(out.weights[:, 0], weights)
    torch.testing.assert_close(out.context, context)


@pytest.mark.parametrize("score", ["general", "concat", "dot"])
def test_local_m_with_wide_window_equals_global(score):
    dq = 4 if score == "dot" else 5
    att = local("local_m", half_width=20, score=score, dq=dq)
    glob = GlobalAttention(dq, 4, score)
    glob.load_state_dict(att.state_dict())
    q, k, v = data(dq=dq)
    pos = torch.arange(4).expand(3, 4)
    a, g = att(q, k, v, MASK, query_positions=pos), glob(q, k, v, MASK)
    torch.testing.assert_close(a.weights, g.weights)
    torch.testing.assert_close(a.context, g.context)


def test_local_p_gradients_reach_W_p_and_v_p():
    att = local("local_p")
    q, k, v = data()
    out = att(q, k, v, MASK)
    (out.context * torch.randn_like(out.context)).sum().backward()
    for param in (att.W_p.weight, att.v_p.weight):
        assert param.grad is not None and param.grad.abs().sum() > 0


def test_local_p_centres_within_true_source_length():
    att = local("local_p")
    with torch.no_grad():
        att.W_p.weight.mul_(50.0)  # saturate the sigmoid towards 0 or 1
        att.v_p.weight.mul_(50.0)
    q, k, v = data(tq=6)
    centres = att(q, k, v, MASK).centres  # (B, Tq)
    assert (centres >= 0).all() and (centres <= LENGTHS[:, None].float()).all()
    centres_no_mask = att(q, k, v, None).centres
    assert (centres_no_mask <= 9).all()


@pytest.mark.parametrize("kwargs, key", [({"half_width": -1}, "model.attention.half_width must be >= 0, got -1"),
                                         ({"sigma": 0.0}, "model.attention.sigma must be > 0, got 0.0"),
                                         ({"sigma": -2.0}, "model.attention.sigma"),
                                         ({"window": "local_x"}, "model.attention.window")])
def test_bad_settings_raise_naming_the_config_key(kwargs, key):
    args = {"window": "local_p", "half_width": 2, "sigma": 1.0} | kwargs
    with pytest.raises(ValueError, match=key):
        local(**args)
