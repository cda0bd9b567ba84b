"""Attention rows kept per hypothesis during search (beam search's Trail, greedy's list): each finished output's
rows equal a teacher-forced pass over that output, for hypotheses finishing at different steps and sentences
dropped from the batch at different steps (OpenNMT-py issue 2471 broke exactly there)."""
import pytest
import torch
from helpers import BOS, EOS

from nmt.attention.slot import Slot
from nmt.decoding import beam_search, greedy_decode
from nmt.decoding.rows import RowSelection

CASES = [("half_trained", "cross"), ("half_trained_transformer", "dec.1.cross"),
         ("half_trained_transformer", "dec.0.cross")]


def forced_rows(model, src, src_len, i: int, tokens: list[int], slot: str) -> torch.Tensor:
    """(H, len + 1, S_i): the slot's maps of one teacher-forced pass over bos + tokens (eos row last)."""
    n = int(src_len[i])
    out, _ = model(src[i: i + 1, :n], src_len[i: i + 1], torch.tensor([[BOS, *tokens]]), need_weights=True)
    return out.attention[Slot(slot)][0]


@pytest.mark.parametrize("which,slot", CASES)
@pytest.mark.parametrize("check_every", [1, 8])
def test_kept_rows_of_every_nbest_output_equal_a_forced_pass(which, slot, check_every, request):
    model, src, src_len = request.getfixturevalue(which)
    hyp = beam_search(model, src, src_len, 4, BOS, EOS, 1.0, 1.5, 5, nbest=3, check_every=check_every,
                      keep=RowSelection(Slot(slot), None))
    lengths = {len(out) for outs, scores in zip(hyp.nbest, hyp.nbest_scores) for out, s in zip(outs, scores)
               if s > float("-inf")}
    assert len(set(src_len.tolist())) > 2 and len(lengths) > 2  # sentences and outputs of different lengths
    checked = 0
    for i, (outs, scores) in enumerate(zip(hyp.nbest, hyp.nbest_scores)):
        for n, (out, score) in enumerate(zip(outs, scores)):
            if score == float("-inf"):
                continue
            kept = hyp.rows[i][n]
            assert kept.shape == (kept.size(0), len(out) + 1, int(src_len[i]))
            torch.testing.assert_close(kept, forced_rows(model, src, src_len, i, out, slot), atol=1e-5, rtol=1e-4)
            checked += 1
    assert checked >= 2 * len(hyp.nbest)


@pytest.mark.parametrize("which,slot", CASES[:2])
def test_greedy_keeps_the_rows_of_its_output(which, slot, request):
    model, src, src_len = request.getfixturevalue(which)
    hyp = greedy_decode(model, src, src_len, BOS, EOS, 1.5, 5, keep=RowSelection(Slot(slot), None))
    assert len({len(t) for t in hyp.tokens}) > 1
    for i, out in enumerate(hyp.tokens):
        assert len(hyp.rows[i]) == 1
        torch.testing.assert_close(hyp.rows[i][0], forced_rows(model, src, src_len, i, out, slot), atol=1e-5,
                                   rtol=1e-4)


@pytest.mark.parametrize("which,slot", CASES[:2])
def test_keeping_rows_changes_no_output(which, slot, request):
    """need_weights for one slot and the Trail leave the search alone: the same outputs; the same scores bit for
    bit where the slot computes its weights either way (an RNN), within rounding where keeping takes the explicit
    path instead of the fused kernel (a Transformer)."""
    model, src, src_len = request.getfixturevalue(which)
    plain = beam_search(model, src, src_len, 3, BOS, EOS, 1.0, 1.5, 5, nbest=2)
    kept = beam_search(model, src, src_len, 3, BOS, EOS, 1.0, 1.5, 5, nbest=2, keep=RowSelection(Slot(slot), 0))
    assert kept.nbest == plain.nbest and plain.rows is None and len(kept.rows) == len(plain.nbest)
    if which == "half_trained":
        assert torch.equal(kept.scores, plain.scores) and torch.equal(kept.nbest_scores, plain.nbest_scores)
    torch.testing.assert_close(kept.nbest_scores, plain.nbest_scores, atol=1e-5, rtol=1e-5)
