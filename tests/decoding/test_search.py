"""Beam search: beam 1 equals greedy; a wider beam never finds a worse model log-probability."""
import math

import pytest
import torch
from helpers import BOS, EOS

from nmt.decoding import beam_search, greedy_decode


@pytest.mark.parametrize("which", ["half_trained", "half_trained_transformer"])
def test_beam_one_equals_greedy(which, request):
    model, src, src_len = request.getfixturevalue(which)
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


# --- a model whose next-token distributions are fixed: the search's answer is known by hand ---

A, B_, C = 4, 5, 6  # tokens a, b, c after PAD, UNK, BOS, EOS


class FixedModel(torch.nn.Module):
    """p(next | step, previous token) from a table; ignores the source. Rows not set: eos 0.98, c 0.02."""

    def __init__(self, rows: dict[tuple[int, int], dict[int, float]], steps: int = 12, vocab: int = 7):
        super().__init__()
        table = torch.full((steps, vocab, vocab), 1e-12)
        table[:, :, EOS], table[:, :, C] = 0.98, 0.02
        for (t, prev), dist in rows.items():
            table[t, prev] = 1e-12
            for tok, p in dist.items():
                table[t, prev, tok] = p
        self.register_buffer("logp", table.log())

    def encode(self, src, src_lengths):
        from nmt.models.seq2seq import EncoderOutput
        return EncoderOutput(torch.zeros(src.size(0), src.size(1), 1), src != 0)

    def init_state(self, enc):
        return {"t": torch.zeros(enc.memory.size(0), dtype=torch.long)}

    def decode(self, tgt_in, enc, state):
        from nmt.models.seq2seq import DecoderOutput
        logits = self.logp[state["t"].clamp(max=self.logp.size(0) - 1), tgt_in[:, -1]]  # (N, V)
        return DecoderOutput(logits[:, None], {"t": state["t"] + 1}, logits=logits[:, None])


# [eos] has p 0.4 (normalised -0.916 with alpha = 1); [b c c c] + eos has p 0.25 * 0.98^4 (-1.467 raw,
# -0.880 normalised over |Y| = 5); the a-branch ends at once with [a eos] (-0.990).
SHORT_OR_LONG = {(0, BOS): {EOS: 0.4, A: 0.35, B_: 0.25}, (1, A): {EOS: 0.9, C: 0.1}, (1, B_): {C: 0.98, EOS: 0.02},
                 (2, C): {C: 0.98, EOS: 0.02}, (3, C): {C: 0.98, EOS: 0.02}}


def fixed_search(k: int, alpha: float, **kw):
    """The search with the stop checked at every step (as early as possible), which must not change
    the answer of checking only every 8 steps."""
    src, lens = torch.tensor([[7, 8, EOS]]), torch.tensor([3])
    hyp = beam_search(FixedModel(SHORT_OR_LONG), src, lens, k, BOS, EOS, alpha, 0.0, 10, check_every=1, **kw)
    assert beam_search(FixedModel(SHORT_OR_LONG), src, lens, k, BOS, EOS, alpha, 0.0, 10, **kw).nbest == hyp.nbest
    return hyp


def test_finished_hypotheses_do_not_take_beam_slots():
    """K = 2, alpha = 1: a beam that keeps [eos] in a slot drops the b-branch at step 1 and returns []."""
    hyp = fixed_search(2, 1.0)
    assert hyp.tokens == [[B_, C, C, C]]
    torch.testing.assert_close(hyp.scores, torch.tensor([math.log(0.25) + 4 * math.log(0.98)]))
    torch.testing.assert_close(hyp.nbest_scores[:, 0], hyp.scores / (10 / 6))


def test_length_penalty_decides_between_short_and_long():
    """alpha = 0 ranks by log-probability: [] (0.4) beats [b c c c] (0.24); alpha = 1 flips it."""
    assert fixed_search(2, 0.0).tokens == [[]]
    assert fixed_search(2, 1.0).tokens == [[B_, C, C, C]]


def test_nbest_lists_distinct_hypotheses_best_first():
    hyp = fixed_search(3, 1.0, nbest=3)
    assert hyp.nbest[0] == [[B_, C, C, C], [], [A]]
    norm = hyp.nbest_scores[0]
    assert torch.all(norm[:-1] >= norm[1:])
    torch.testing.assert_close(norm[1:], torch.tensor([math.log(0.4), (math.log(0.35) + math.log(0.9)) / (7 / 6)]))


# alpha = 1, limit 10: [] (0.61) is finished at step 0 with -0.494; the live [a] (0.3) can still reach
# log 0.3 / lp(10) = -0.482 and does: [a c c c c c c c c] + eos ends at -1.213 / 2.5 = -0.485. A bound taken
# at |Y| = 9 (log 0.3 / lp(9) = -0.516) would stop at step 0 and return [].
ONE_AT_THE_LIMIT = {(0, BOS): {EOS: 0.61, A: 0.3, B_: 0.09}, (1, A): {C: 0.999, B_: 0.001},
                    **{(t, C): {C: 0.999, B_: 0.001} for t in range(2, 9)}, (9, C): {EOS: 0.999, C: 0.001}}


def test_stop_bound_is_taken_at_the_length_limit():
    """Huang et al. 2017's bound: a live hypothesis can reach raw / lp(limit), the limit counting eos;
    the search stops only when its best finished hypothesis beats that, and here it must not."""
    src, lens = torch.tensor([[7, 8, EOS]]), torch.tensor([3])
    hyp = beam_search(FixedModel(ONE_AT_THE_LIMIT), src, lens, 2, BOS, EOS, 1.0, 0.0, 10, check_every=1)
    assert hyp.tokens == [[A] + [C] * 8]
    torch.testing.assert_close(hyp.nbest_scores[:, 0], hyp.scores / (15 / 6))
    assert hyp.nbest_scores[0, 0] > math.log(0.61)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_early_stop_equals_search_to_the_length_limit(half_trained, alpha):
    """Stopping a sentence when no live beam can beat its best finished one never changes the answer:
    checking every step (stop as early as possible) equals never checking (search to the limit)."""
    model, src, src_len = half_trained
    early = beam_search(model, src, src_len, 3, BOS, EOS, alpha, 1.5, 5, nbest=2, check_every=1)
    full = beam_search(model, src, src_len, 3, BOS, EOS, alpha, 1.5, 5, nbest=2, check_every=10 ** 6)
    assert early.nbest == full.nbest
    torch.testing.assert_close(early.nbest_scores, full.nbest_scores)


@pytest.mark.parametrize("which", ["half_trained", "half_trained_transformer"])
def test_every_nbest_score_is_the_teacher_forced_log_prob(which, request):
    """Raw and normalised scores of every n-best output equal a teacher-forced pass over it: fails if
    the search pairs a hypothesis with another beam's state (e.g. the Transformer cache not reordered)."""
    model, src, src_len = request.getfixturevalue(which)
    alpha = 0.6
    b = beam_search(model, src, src_len, 4, BOS, EOS, alpha, 1.5, 5, nbest=3)
    for i, outputs in enumerate(b.nbest):
        for n, toks in enumerate(outputs):
            out, _ = model(src[i: i + 1, : src_len[i]], src_len[i: i + 1], torch.tensor([[BOS, *toks]]))
            lp = out.logits.log_softmax(-1)[0].gather(-1, torch.tensor([*toks, EOS])[:, None]).sum()
            if n == 0:
                torch.testing.assert_close(b.scores[i], lp, atol=1e-4, rtol=1e-4)
            lp_len = ((5 + len(toks) + 1) / 6) ** alpha
            torch.testing.assert_close(b.nbest_scores[i, n], lp / lp_len, atol=1e-4, rtol=1e-4)



@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_search_reads_the_host_once_every_8_steps(search):
    """24 steps with nobody finishing early: greedy and beam read "all finished?" on the host every 8
    steps (3 reads), not every step; plus one read of the length limit at the start."""
    from sync_counter import SyncCounter
    long_c = {(t, prev): {C: 0.9, EOS: 0.1} for t in range(30) for prev in range(7)}
    src, lens = torch.tensor([[7, 8, EOS]]), torch.tensor([3])
    model = FixedModel(long_c, steps=30)
    with SyncCounter() as counter:
        if search == "greedy":
            hyp = greedy_decode(model, src, lens, BOS, EOS, 0.0, 24)
        else:
            hyp = beam_search(model, src, lens, 2, BOS, EOS, 1.0, 0.0, 24)
    assert hyp.tokens[0] == [C] * 23  # the 24th token is the forced eos
    if search == "greedy":
        assert counter.counts["_local_scalar_dense"] == 1 + 24 // 8
    else:  # beam copies its "done" flags to the host every 8 steps and reads that copy (all, any)
        assert counter.counts[".cpu()"] == 24 // 8 and counter.counts["_local_scalar_dense"] <= 1 + 2 * (24 // 8)
