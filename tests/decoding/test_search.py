"""Beam search: beam 1 equals greedy; a wider beam never finds a worse model log-probability."""
import pytest
import torch
from helpers import BOS, EOS, overfit, real_batch, tiny_model

from nmt.decoding import beam_search, greedy_decode


@pytest.fixture(scope="module")
def half_trained(real_pairs):
    """Trained a little: peaked enough to be realistic, not enough to make search trivial."""
    torch.manual_seed(1)
    sv, tv, src, src_len, tgt_in, tgt_out = real_batch(real_pairs)
    model = tiny_model(["model/attention=luong_general"], len(sv), len(tv))
    overfit(model, src, src_len, tgt_in, tgt_out, steps=25)
    return model.eval(), src, src_len


def test_beam_one_equals_greedy(half_trained):
    model, src, src_len = half_trained
    g = greedy_decode(model, src, src_len, BOS, EOS, 1.5, 5)
    b = beam_search(model, src, src_len, 1, BOS, EOS, 0.0, 1.5, 5)
    assert b.tokens == g.tokens
    torch.testing.assert_close(b.scores, g.scores)


@pytest.mark.parametrize("k", [2, 5])
def test_wider_beam_never_scores_worse(half_trained, k):
    model, src, src_len = half_trained
    g = greedy_decode(model, src, src_len, BOS, EOS, 1.5, 5)
    b = beam_search(model, src, src_len, k, BOS, EOS, 0.0, 1.5, 5)
    assert torch.all(b.scores >= g.scores - 1e-5)


def test_scores_are_model_log_probs(half_trained):
    """The returned score equals the teacher-forced log-probability of the returned tokens + eos."""
    model, src, src_len = half_trained
    b = beam_search(model, src[:2], src_len[:2], 3, BOS, EOS, 0.6, 1.5, 5)
    for i, toks in enumerate(b.tokens):
        tgt = torch.tensor([[BOS, *toks]])
        out, _ = model(src[i: i + 1, : src_len[i]], src_len[i: i + 1], tgt)
        lp = out.logits.log_softmax(-1)[0].gather(-1, torch.tensor([*toks, EOS])[:, None]).sum()
        torch.testing.assert_close(lp, b.scores[i], atol=1e-4, rtol=1e-4)


def test_maps_of_the_beam_output_match_stepwise_decoding(half_trained):
    """output_attention (one forced pass over the beam output) gives, per sentence, the cross maps the
    decoder produced step by step for that output: (1, len+1, S), rows summing to 1."""
    from nmt.decoding.inspect import output_attention
    model, src, src_len = half_trained
    b = beam_search(model, src[:3], src_len[:3], 4, BOS, EOS, 1.0, 1.5, 5)
    src_ids = [src[i, : n].tolist() for i, n in enumerate(src_len[:3].tolist())]
    maps = output_attention(model, src_ids, b.tokens, pad_id=0, bos_id=BOS, eos_id=EOS, device=torch.device("cpu"))
    for i, (toks, m) in enumerate(zip(b.tokens, maps)):
        assert m.out_ids == [*toks, EOS] and m.maps["cross"].shape == (1, len(toks) + 1, len(src_ids[i]))
        torch.testing.assert_close(m.maps["cross"].sum(-1), torch.ones(1, len(toks) + 1))
        enc = model.encode(src[i: i + 1, : src_len[i]], src_len[i: i + 1])
        state, steps = model.init_state(enc), []
        for tok in [BOS, *toks]:
            out = model.decode(torch.tensor([[tok]]), enc, state, need_weights=True)
            state = out.state
            steps.append(out.attention["cross"][0])
        torch.testing.assert_close(m.maps["cross"], torch.cat(steps, 1), atol=1e-5, rtol=1e-5)
