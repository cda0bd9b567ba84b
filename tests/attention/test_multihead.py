"""Multi-head attention (Vaswani et al. 2017) with global, causal and sliding windows."""
import pytest
import torch

from nmt.attention import MultiHeadAttention
from nmt.attention.windows import lengths_mask


def mha(window="global", score="scaled_dot", dropout=0.0, half_width=1, dq=6):
    return MultiHeadAttention(dq, 8, 2, dropout, window, half_width, score)


def data(tq=4, tk=5, dq=6):
    mask = lengths_mask(torch.tensor([5, 3]), tk)[:, None, :]  # (B, 1, Tk)
    return torch.randn(2, tq, dq), torch.randn(2, tk, 8), torch.randn(2, tk, 8), mask


@pytest.mark.parametrize("window", ["global", "causal", "local"])
@pytest.mark.parametrize("score", ["scaled_dot", "dot"])
def test_fused_path_equals_explicit_path(window, score):
    att = mha(window, score).eval()
    q, k, v, mask = data()
    fused = att(q, k, v, mask, need_weights=False)
    explicit = att(q, k, v, mask, need_weights=True)
    torch.testing.assert_close(fused.context, explicit.context, atol=1e-5, rtol=1e-5)
    assert fused.weights.shape == (2, 2, 4, 0)
    assert explicit.weights.shape == (2, 2, 4, 5)


def test_fused_path_all_masked_row_matches_explicit_and_has_finite_grads():
    att = mha().eval()
    q, k, v, _ = data()
    mask = torch.ones(2, 4, 5, dtype=torch.bool)
    mask[1, 2] = False  # query 2 of sentence 1 sees no key
    q.requires_grad_(True)
    fused = att(q, k, v, mask, need_weights=False)
    explicit = att(q, k, v, mask)
    torch.testing.assert_close(fused.context, explicit.context, atol=1e-5, rtol=1e-5)
    assert (explicit.weights[1, :, 2] == 0).all()
    fused.context.sum().backward()
    assert torch.isfinite(q.grad).all()


def test_causal_future_keys_do_not_change_earlier_outputs():
    att = mha("causal", dq=8).eval()
    x = torch.randn(2, 6, 8)
    changed = x.clone()
    changed[:, 3:] = torch.randn(2, 3, 8)
    for need in (True, False):
        a = att(x, x, x, None, need_weights=need).context
        b = att(changed, changed, changed, None, need_weights=need).context
        torch.testing.assert_close(a[:, :3], b[:, :3])
        assert not torch.allclose(a[:, 3:], b[:, 3:])


def test_causal_incremental_decoding_equals_full_pass():
    att = mha("causal", dq=8).eval()
    x = torch.randn(2, 5, 8)
    full = att(x, x, x, None).context
    steps = []
    for t in range(5):  # one new query against the keys so far (default positions align)
        k, v = att.project_kv(x[:, : t + 1], x[:, : t + 1])
        steps.append(att.attend(x[:, t: t + 1], k, v, None).context)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_local_window_zero_outside_and_on_padding():
    att = mha("local", half_width=1)
    q, k, v, mask = data(tq=5)
    w = att(q, k, v, mask).weights  # (B, H, Tq, Tk)
    dist = (torch.arange(5)[None, :] - torch.arange(5)[:, None]).abs()  # (Tq, Tk)
    outside = (dist > 1)[None, None] | ~mask[:, None]
    assert (w[outside.expand_as(w)] == 0).all()
    rows = w.sum(-1)  # (B, H, Tq): 1, or 0 where the window holds no real key
    torch.testing.assert_close(rows[:, :, :4], torch.ones(2, 2, 4))
    torch.testing.assert_close(rows[1, :, 4], torch.zeros(2))  # keys 3..5, but length 3


def test_project_kv_then_attend_equals_forward():
    att = mha(score="general")
    q, k, v, mask = data()
    kp, vp = att.project_kv(k, v)
    assert kp.shape == vp.shape == (2, 2, 5, 4)
    torch.manual_seed(1)
    a = att.eval().attend(q, kp, vp, mask)
    b = att(q, k, v, mask)
    torch.testing.assert_close(a.context, b.context)
    torch.testing.assert_close(a.weights, b.weights)


def test_returned_weights_are_pre_dropout():
    att = mha(dropout=0.5).train()
    q, k, v, mask = data()
    w = att(q, k, v, mask).weights
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 4))


def test_key_dim_not_divisible_by_heads_raises():
    with pytest.raises(ValueError, match="key_dim 10 is not divisible by num_heads 4"):
        MultiHeadAttention(6, 10, 4, 0.0, "global", 1, "scaled_dot")


@pytest.mark.parametrize("kwargs, key", [({"window": "banded"}, "model.attention.window"),
                                         ({"score": "additive"}, "model.attention.score"),
                                         ({"dropout": 1.0}, "model.attention.dropout"),
                                         ({"half_width": -1}, "model.attention.half_width")])
def test_bad_settings_raise(kwargs, key):
    args = {"window": "global", "score": "scaled_dot", "dropout": 0.0, "half_width": 1} | kwargs
    with pytest.raises(ValueError, match=key):
        mha(**args)


def copied_torch_mha(att: MultiHeadAttention) -> torch.nn.MultiheadAttention:
    """torch.nn.MultiheadAttention holding the same projections (an independent implementation)."""
    d = att.out_proj.out_features
    ref = torch.nn.MultiheadAttention(d, att.num_heads, bias=True, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([att.q_proj.weight, att.k_proj.weight, att.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([att.q_proj.bias, att.k_proj.bias, att.v_proj.bias]))
        ref.out_proj.weight.copy_(att.out_proj.weight)
        ref.out_proj.bias.copy_(att.out_proj.bias)
    return ref.eval()


@pytest.mark.parametrize("need_weights", [True, False])
def test_equals_torch_multihead_attention_with_padding(need_weights):
    att = mha(dq=8).eval()
    q, k, v, mask = data(dq=8)  # mask (B, 1, Tk): sentence 1 has 3 real keys
    ours = att(q, k, v, mask, need_weights=need_weights)
    ctx, w = copied_torch_mha(att)(q, k, v, key_padding_mask=~mask[:, 0], average_attn_weights=False)
    torch.testing.assert_close(ours.context, ctx, atol=1e-5, rtol=1e-5)
    if need_weights:
        torch.testing.assert_close(ours.weights, w, atol=1e-6, rtol=1e-5)


def test_causal_equals_torch_multihead_attention_with_causal_mask():
    att = mha("causal", dq=8).eval()
    x = torch.randn(2, 6, 8)
    future = torch.ones(6, 6, dtype=torch.bool).triu(1)  # torch: True = may NOT attend
    ctx, w = copied_torch_mha(att)(x, x, x, attn_mask=future, average_attn_weights=False)
    ours = att(x, x, x, None)
    torch.testing.assert_close(ours.context, ctx, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.weights, w, atol=1e-6, rtol=1e-5)
