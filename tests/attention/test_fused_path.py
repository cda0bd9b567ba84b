"""Which scaled_dot_product_attention call each attention slot makes (the fused kernels need no explicit mask:
is_causal for decoder self-attention, no mask where nothing is masked), that the fused and explicit paths agree,
and that guided alignment asks for explicit weights on its supervised slot only."""
from __future__ import annotations

import pytest
import torch
from helpers import TINY_TRANSFORMER, tiny_model

import nmt.attention.multihead as mh
from nmt.attention import MultiHeadAttention
from nmt.attention.slot import Slot
from nmt.data.batching import collate
from nmt.training.align_loss import AlignSpec
from nmt.training.step import StepParts, micro_loss

PADDED = collate([[5, 6, 7, 8], [9, 10]], [[5, 6], [7, 8, 9]], [0, 1], 0, 1, 2)
FULL = collate([[5, 6, 7], [9, 10, 11]], [[5, 6], [7, 8, 9]], [0, 1], 0, 1, 2)


@pytest.fixture
def sdpa_calls(monkeypatch):
    """Every F.scaled_dot_product_attention call of nmt.attention.multihead: (mask given, is_causal, Tq, Tk)."""
    calls, sdpa = [], mh.F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, is_causal=False, **kwargs):
        calls.append((attn_mask is not None, is_causal, q.size(2), k.size(2)))
        return sdpa(q, k, v, attn_mask=attn_mask, is_causal=is_causal, **kwargs)

    monkeypatch.setattr(mh.F, "scaled_dot_product_attention", spy)
    return calls


def model():
    torch.manual_seed(0)
    return tiny_model([], base=TINY_TRANSFORMER).eval()  # 2 + 2 layers


def test_teacher_forcing_takes_is_causal_for_decoder_self_attention_and_masks_only_padding(sdpa_calls):
    m = model()
    fused, _ = m(PADDED.src, PADDED.src_lengths, PADDED.tgt_in, host_lengths=PADDED.host)
    S, T = PADDED.src.size(1), PADDED.tgt_in.size(1)
    encoder, decoder = sdpa_calls[:2], sdpa_calls[2:]
    assert encoder == [(True, False, S, S)] * 2  # padded source: the padding mask
    assert decoder == [(False, True, T, T), (True, False, T, S)] * 2  # self: is_causal, no mask; cross: padding
    explicit, _ = m(PADDED.src, PADDED.src_lengths, PADDED.tgt_in, need_weights=True)
    torch.testing.assert_close(fused.logits, explicit.logits)


def test_an_unpadded_batch_takes_no_mask_anywhere(sdpa_calls):
    m = model()
    fused, _ = m(FULL.src, FULL.src_lengths, FULL.tgt_in, host_lengths=FULL.host)
    assert [mask for mask, *_ in sdpa_calls] == [False] * 6
    explicit, _ = m(FULL.src, FULL.src_lengths, FULL.tgt_in, need_weights=True)
    torch.testing.assert_close(fused.logits, explicit.logits)


def test_incremental_decoding_steps_take_no_mask_and_match_teacher_forcing(sdpa_calls):
    m = model()
    full, _ = m(PADDED.src, PADDED.src_lengths, PADDED.tgt_in)
    enc = m.encode(PADDED.src, PADDED.src_lengths)
    state, steps = m.init_state(enc), []
    sdpa_calls.clear()
    for t in range(PADDED.tgt_in.size(1)):
        out = m.decode(PADDED.tgt_in[:, t: t + 1], enc, state)
        state = out.state
        steps.append(out.logits)
    self_calls = sdpa_calls[0::2]  # self, cross per layer
    assert all(not mask and tq == 1 for mask, _, tq, _ in self_calls)  # the first step, 1 x 1, is is_causal
    assert [tk for *_, tk in self_calls] == [t + 1 for t in range(PADDED.tgt_in.size(1)) for _ in range(2)]
    torch.testing.assert_close(torch.cat(steps, 1), full.logits)


@pytest.mark.parametrize("window, tq, tk", [("causal", 5, 5), ("causal", 1, 5), ("global", 4, 6)])
def test_the_maskless_fused_calls_equal_the_explicit_path(window, tq, tk, sdpa_calls):
    torch.manual_seed(0)
    att = MultiHeadAttention(8, 8, 2, 0.0, window, 0, "scaled_dot").eval()
    q, kv = torch.randn(3, tq, 8), torch.randn(3, tk, 8)
    fused = att(q, kv, kv, None, need_weights=False)
    explicit = att(q, kv, kv, None, need_weights=True)
    assert sdpa_calls == [(False, window == "causal" and tq == tk, tq, tk)]
    torch.testing.assert_close(fused.context, explicit.context)


def test_guided_alignment_asks_for_the_supervised_slots_weights_only(sdpa_calls):
    m = model().train()
    slot = Slot("dec.1.cross")
    asked = {}

    class Spy(torch.nn.Module):
        def forward(self, *args, **kwargs):
            asked.update(kwargs)
            return m(*args, **kwargs)

    parts = StepParts(Spy(), m, torch.optim.SGD(m.parameters(), lr=0.1), 0, 0.1, 1.0, False, torch.device("cpu"),
                      1, align=AlignSpec(slot, 0, "soft", 1.0, 0.0, None))
    with pytest.raises(ValueError, match="data.alignment"):  # PADDED has no alignment: stops after the forward
        micro_loss(parts, PADDED)
    assert asked["need_weights"] == frozenset({slot})
    assert len(sdpa_calls) == 2 + 4 - 1  # every slot but dec.1.cross stays on the fused path
    out, _ = m(PADDED.src, PADDED.src_lengths, PADDED.tgt_in, need_weights=asked["need_weights"])
    assert list(out.attention) == [slot] and out.attention[slot].shape == (2, 2, 4, 4)


# --- position inside attention and grouped-query heads ---------------------------------------------------------

@pytest.fixture
def sdpa_masks(monkeypatch):
    """Every F.scaled_dot_product_attention call of nmt.attention.multihead: (attn_mask None | "bool" | "float",
    is_causal, query heads, key/value heads, enable_gqa)."""
    calls, sdpa = [], mh.F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, is_causal=False, **kwargs):
        kind = None if attn_mask is None else "bool" if attn_mask.dtype == torch.bool else "float"
        calls.append((kind, is_causal, q.size(1), k.size(1), kwargs.get("enable_gqa", False)))
        return sdpa(q, k, v, attn_mask=attn_mask, is_causal=is_causal, **kwargs)

    monkeypatch.setattr(mh.F, "scaled_dot_product_attention", spy)
    return calls


# position -> the call of a causal teacher-forced pass without padding, of a padded global one and of an unpadded
# global one; None: no call
POSITION_PATHS = {
    "none": [(None, True), ("bool", False), (None, False)],
    "rotary": [(None, True), ("bool", False), (None, False)],  # q and k rotated before the kernel: is_causal survives
    "t5": [("float", False)] * 3,  # the bias is the attn_mask, -inf where masked
    "alibi": [("float", False)] * 3,
    "shaw": [None] * 3,  # a^V is not in the kernel: the explicit path always
}


@pytest.mark.parametrize("num_kv_heads", [None, 1], ids=["mha", "mqa"])
@pytest.mark.parametrize("position", POSITION_PATHS)
def test_each_position_method_takes_its_path_and_both_paths_agree(position, num_kv_heads, sdpa_masks):
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])[:, None, :]  # (B, 1, Tk)
    for (window, m), expected in zip((("causal", None), ("global", mask), ("global", None)), POSITION_PATHS[position]):
        torch.manual_seed(0)
        att = MultiHeadAttention(8, 8, 2, 0.0, window, 0, "scaled_dot", position=position, num_buckets=8,
                                 max_distance=16, num_kv_heads=num_kv_heads).eval()
        x = torch.randn(2, 6, 8)
        sdpa_masks.clear()
        fused = att(x, x, x, m, need_weights=False)
        kv = 2 if num_kv_heads is None else 1
        assert sdpa_masks == ([] if expected is None else [(*expected, 2, kv, kv != 2)])
        explicit = att(x, x, x, m, need_weights=True)
        torch.testing.assert_close(fused.context, explicit.context, atol=1e-5, rtol=1e-5)
        assert fused.weights.shape == ((2, 2, 6, 0) if expected else (2, 2, 6, 6))


@pytest.mark.parametrize("position", ["t5", "alibi"])
def test_a_bias_with_an_all_masked_row_stays_finite_and_matches_the_explicit_path(position, monkeypatch):
    """The kernel never gets a row of -inf (a GPU kernel returns NaN for it; this CPU's returns 0, so the row
    the kernel is given is checked, not only the output)."""
    att = MultiHeadAttention(8, 8, 2, 0.0, "global", 0, "scaled_dot", position=position, num_buckets=8,
                             max_distance=16).eval()
    q, kv = torch.randn(2, 4, 8, requires_grad=True), torch.randn(2, 5, 8)
    mask = torch.ones(2, 4, 5, dtype=torch.bool)
    mask[1, 2] = False  # query 2 of sentence 1 sees no key
    given, sdpa = [], mh.F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kwargs):
        given.append(attn_mask)
        return sdpa(q, k, v, attn_mask=attn_mask, **kwargs)
    monkeypatch.setattr(mh.F, "scaled_dot_product_attention", spy)
    fused = att(q, kv, kv, mask, need_weights=False)
    assert len(given) == 1 and given[0].dtype == torch.float32
    assert torch.isfinite(given[0]).all()  # nothing else is masked; the keyless row attends everywhere, then zeroed
    explicit = att(q, kv, kv, mask)
    torch.testing.assert_close(fused.context, explicit.context, atol=1e-5, rtol=1e-5)
    fused.context.sum().backward()
    assert torch.isfinite(q.grad).all()
