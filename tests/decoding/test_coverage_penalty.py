"""GNMT coverage penalty (Wu et al. 2016, Eq. 14): cp = beta * sum_j log(min(sum_t a_tj, 1)), added to the
length-normalised score of a finished hypothesis; beam search's stop bound stays right with it."""
import math

import pytest
import torch
from helpers import BOS, EOS

from nmt.attention.slot import Slot
from nmt.decoding import DecodeSettings, beam_search
from nmt.decoding.rows import RowSelection, coverage_penalty, resolve_selection
from nmt.models.seq2seq import DecoderOutput, EncoderOutput

A, B_, C = 4, 5, 6  # tokens a, b, c after PAD, UNK, BOS, EOS
CROSS = RowSelection(Slot("cross"), None)


class TableModel(torch.nn.Module):
    """p(next | step, previous token) and the attention row (over S = 2 source pieces) of that step from
    tables, whatever the source. Unset rows: eos 0.98, c 0.02, attention [0.5, 0.5]."""

    def __init__(self, probs: dict, rows: dict, steps: int = 6, vocab: int = 7):
        super().__init__()
        table = torch.full((steps, vocab, vocab), 1e-12)
        table[:, :, EOS], table[:, :, C] = 0.98, 0.02
        att = torch.full((steps, vocab, 2), 0.5)
        for (t, prev), dist in probs.items():
            table[t, prev] = 1e-12
            for tok, p in dist.items():
                table[t, prev, tok] = p
        for (t, prev), row in rows.items():
            att[t, prev] = torch.tensor(row)
        self.register_buffer("logp", table.log())
        self.register_buffer("att", att)

    def encode(self, src, src_lengths):
        return EncoderOutput(torch.zeros(src.size(0), src.size(1), 1), src != 0)

    def init_state(self, enc):
        return {"t": torch.zeros(enc.memory.size(0), dtype=torch.long)}

    def decode(self, tgt_in, enc, state, need_weights=False):
        t, prev = state["t"], tgt_in[:, -1]  # (R,), (R,)
        rows = self.att[t, prev][:, None, None, :]  # (R, H=1, 1, S)
        return DecoderOutput(torch.zeros(len(t), 1, 1), {"t": t + 1}, {Slot("cross"): rows},
                             logits=self.logp[t, prev][:, None, :])


def search(model, beta: float, nbest: int = 2, K: int = 2, check_every: int = 1):
    src, lens = torch.tensor([[7, 8]]), torch.tensor([2])
    return beam_search(model, src, lens, K, BOS, EOS, 0.0, 0.0, 4, nbest=nbest, check_every=check_every,
                       coverage_penalty=beta, keep=CROSS if beta > 0 else None)


def test_the_penalty_is_the_formula_on_real_pieces_only():
    coverage = torch.tensor([[1.5, 0.25, 0.7], [0.5, 1.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])  # the first sentence's third piece: padding
    got = coverage_penalty(coverage, mask, 0.4)
    torch.testing.assert_close(got, torch.tensor([0.4 * math.log(0.25), 0.4 * (math.log(0.5) + math.log(1e-6))]))


def test_the_penalty_flips_the_ranking_of_two_finished_outputs():
    """a eos has the higher log-probability but leaves source piece 1 half covered; b eos covers both. The rows:
    step 0 (shared) [0.5, 0.5]; step 1 after a [1, 0], after b [0.5, 0.5]: coverage [1.5, 0.5] vs [1, 1]."""
    model = TableModel({(0, BOS): {A: 0.6, B_: 0.4}}, {(1, A): [1.0, 0.0]})
    raw_a, raw_b = math.log(0.6) + math.log(0.98), math.log(0.4) + math.log(0.98)
    plain = search(model, 0.0)
    assert plain.nbest[0] == [[A], [B_]]
    torch.testing.assert_close(plain.nbest_scores[0], torch.tensor([raw_a, raw_b]), atol=1e-5, rtol=0)
    beta = 1.0
    penalised = search(model, beta)
    assert penalised.tokens == [[B_]] and penalised.nbest[0] == [[B_], [A]]
    torch.testing.assert_close(penalised.nbest_scores[0], torch.tensor([raw_b, raw_a + beta * math.log(0.5)]),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(penalised.scores, torch.tensor([raw_b]), atol=1e-5, rtol=0)  # the model's log p


def test_the_stop_bound_leaves_room_for_a_live_output_whose_coverage_still_grows():
    """After step 1, a eos is finished with cp = log 0.1 while b's prefix covers only piece 0 (its cp now is
    log 1e-6); b c eos then covers both (cp 0) and wins. A bound that counted the live prefix's current cp
    would stop at step 1 and return a eos."""
    model = TableModel({(0, BOS): {A: 0.5, B_: 0.5}, (1, B_): {C: 0.98, EOS: 0.02}},
                       {(0, BOS): [1.0, 0.0], (1, A): [0.9, 0.1], (1, B_): [1.0, 0.0], (2, C): [0.0, 1.0]})
    hyp = search(model, 1.0, nbest=1)
    assert hyp.tokens == [[B_, C]]
    torch.testing.assert_close(hyp.nbest_scores[0], torch.tensor([math.log(0.5) + 2 * math.log(0.98)]), atol=1e-5,
                               rtol=0)


def test_beta_zero_keeps_no_rows_and_changes_nothing(half_trained):
    model, src, src_len = half_trained
    plain = beam_search(model, src, src_len, 3, BOS, EOS, 1.0, 1.5, 5, nbest=2)
    zero = beam_search(model, src, src_len, 3, BOS, EOS, 1.0, 1.5, 5, nbest=2, coverage_penalty=0.0)
    assert zero.nbest == plain.nbest and zero.rows is None
    assert torch.equal(zero.nbest_scores, plain.nbest_scores) and torch.equal(zero.scores, plain.scores)
    penalised = beam_search(model, src, src_len, 3, BOS, EOS, 1.0, 1.5, 5, nbest=2, coverage_penalty=2.0, keep=CROSS)
    assert torch.all(penalised.nbest_scores <= plain.nbest_scores.max(-1, keepdim=True).values + 1e-6)


def test_settings_refuse_a_negative_beta_and_unknown_choices():
    from helpers import compose_cfg
    from omegaconf import OmegaConf
    decode = OmegaConf.to_container(compose_cfg(["run_dir=x"], "translate").decode)
    assert (decode["coverage_penalty"], decode["alignment"], decode["selection"]) == (0.0, "none", "auto")
    assert not DecodeSettings(**decode).keeps_rows()
    with pytest.raises(ValueError, match=r"decode.coverage_penalty must be >= 0 \(0 = none\), got -0.1"):
        DecodeSettings(**{**decode, "coverage_penalty": -0.1})
    with pytest.raises(ValueError, match="decode.alignment must be one of none, hard, soft; got 'words'"):
        DecodeSettings(**{**decode, "alignment": "words"})
    with pytest.raises(ValueError, match="decode.selection='dec.1.self' is not a cross-attention selection"):
        DecodeSettings(**{**decode, "selection": "dec.1.self"})


def test_a_selection_the_model_lacks_is_refused_naming_the_choices(half_trained_transformer):
    model = half_trained_transformer[0]
    assert resolve_selection("auto", model) == RowSelection(Slot("dec.1.cross"), None)
    assert resolve_selection("dec.0.cross:h1", model) == RowSelection(Slot("dec.0.cross"), 1)
    with pytest.raises(ValueError, match=r"slot dec.0.cross has 2 head\(s\); choose auto or dec.0.cross:mean"):
        resolve_selection("dec.0.cross:h2", model)
    with pytest.raises(ValueError, match="this model has no slot dec.5.cross"):
        resolve_selection("dec.5.cross:mean", model)
