"""Coverage attention (Tu et al. 2016, Eq. 5-8; See et al. 2017, Eq. 10-11): hand-computed steps, the fertility
update by formula, the contract, masked keys, teacher forcing == steps, and the decoder's state under beam
search (nmt.attention.coverage, GlobalAttention.covered, RNNDecoder's "attn_state")."""
import math
from pathlib import Path

import pytest
import torch
from helpers import BOS, EOS, PAD, overfit, pad_batch, tiny_model
from omegaconf import OmegaConf

from nmt.alignment.counterfactual import intervening, uniform
from nmt.alignment.explain import ExplainSettings, importance_agreement, output_changes
from nmt.attention import GlobalAttention
from nmt.attention.contract import check_all
from nmt.data.batching import Batch
from nmt.decoding.beam import beam_search
from nmt.models.build import build_attention

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "model" / "attention"
CONFIGS = ("coverage", "coverage_fertility")
FLOWS = {"bahdanau": ["model/attention=coverage"],
         "bahdanau_fertility": ["model/attention=coverage_fertility"],
         "luong_feed": ["model/attention=coverage", "model.attention.flow=luong", "model.attention.score=concat"],
         "luong_parallel": ["model/attention=coverage", "model.attention.flow=luong", "model.decoder.input_feeding=false"]}


def scalar_attention(coverage: str, fertility_max=None) -> GlobalAttention:
    """Additive coverage attention with Dq = Dk = A = 1 and fixed weights: W_a = 1, U_a = 1, v_a = 1, V = -2
    (U_f = 1 for the fertility variant)."""
    att = GlobalAttention(1, 1, "additive", coverage=coverage, fertility_max=fertility_max)
    with torch.no_grad():
        for p in (att.score.W_a.weight, att.score.U_a.weight, att.score.v_a.weight):
            p.fill_(1.0)
        att.coverage.V.weight.fill_(-2.0)
        if att.coverage.U_f is not None:
            att.coverage.U_f.weight.fill_(1.0)
    return att


def softmax(xs: list[float]) -> list[float]:
    exps = [math.exp(x) for x in xs]
    return [e / sum(exps) for e in exps]


def test_two_steps_by_hand():
    """e_tj = tanh(s_t + h_j - 2 C_{t-1,j}); C_1 = a_1; the second step's score reads V C_1."""
    att = scalar_attention("sum")
    h, s = [1.0, -1.0], [0.5, 0.0]
    keys = torch.tensor(h).view(1, 2, 1)  # (B, Tk, Dk)
    a1 = softmax([math.tanh(s[0] + hj) for hj in h])
    a2 = softmax([math.tanh(s[1] + hj - 2.0 * c) for hj, c in zip(h, a1)])
    first = att(torch.tensor([[[s[0]]]]), keys, keys, None)
    second = att(torch.tensor([[[s[1]]]]), keys, keys, None, state=first.state)
    assert first.weights[0, 0, 0].tolist() == pytest.approx(a1, abs=1e-6)
    assert first.state[0].tolist() == pytest.approx(a1, abs=1e-6)  # C_1 = C_0 + a_1, C_0 = 0
    assert second.weights[0, 0, 0].tolist() == pytest.approx(a2, abs=1e-6)
    assert second.state[0].tolist() == pytest.approx([x + y for x, y in zip(a1, a2)], abs=1e-6)
    assert second.context[0, 0, 0].item() == pytest.approx(sum(a * hj for a, hj in zip(a2, h)), abs=1e-6)


def test_fertility_update_by_formula():
    """C_t = C_{t-1} + a_t / Phi_j, Phi_j = N sigma(U_f h_j) (Tu et al. Eq. 7-8), N = 2, U_f = 1."""
    att = scalar_attention("fertility", fertility_max=2.0)
    h, s = [1.0, -1.0], [0.5, 0.0]
    keys = torch.tensor(h).view(1, 2, 1)
    phi = [2.0 / (1.0 + math.exp(-hj)) for hj in h]
    a1 = softmax([math.tanh(s[0] + hj) for hj in h])
    c1 = [a / p for a, p in zip(a1, phi)]
    a2 = softmax([math.tanh(s[1] + hj - 2.0 * c) for hj, c in zip(h, c1)])
    first = att(torch.tensor([[[s[0]]]]), keys, keys, None)
    second = att(torch.tensor([[[s[1]]]]), keys, keys, None, state=first.state)
    assert first.state[0].tolist() == pytest.approx(c1, abs=1e-6)
    assert second.weights[0, 0, 0].tolist() == pytest.approx(a2, abs=1e-6)
    assert second.state[0].tolist() == pytest.approx([c + a / p for c, a, p in zip(c1, a2, phi)], abs=1e-6)


@pytest.mark.parametrize("name", CONFIGS)
def test_coverage_configs_keep_the_contract(name):
    check_all(build_attention(OmegaConf.load(CONFIG_DIR / f"{name}.yaml"), 6, 8), 6, 8)


@pytest.mark.parametrize("name", CONFIGS)
def test_masked_keys_stay_uncovered_and_tq_queries_are_tq_steps(name):
    """Five queries in one call = five calls of one query, state passed on; padded keys keep C = 0."""
    att = build_attention(OmegaConf.load(CONFIG_DIR / f"{name}.yaml"), 6, 8).eval()
    g = torch.Generator().manual_seed(0)
    query, keys = torch.randn(2, 5, 6, generator=g), torch.randn(2, 4, 8, generator=g)
    mask = torch.tensor([[True] * 4, [True, True, False, False]])[:, None, :]  # (B, 1, Tk)
    whole = att(query, keys, keys, mask)
    state, rows = None, []
    for t in range(5):
        out = att(query[:, t: t + 1], keys, keys, mask, state=state)
        state = out.state
        rows.append(out.weights)
    torch.testing.assert_close(torch.cat(rows, dim=2), whole.weights, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(state, whole.state, atol=1e-6, rtol=1e-6)
    assert (whole.state[1, 2:] == 0).all() and (whole.state[0] > 0).all()


def test_coverage_needs_a_tanh_score():
    with pytest.raises(ValueError, match=r"coverage=sum .* one of \('additive', 'concat'\) \(got 'general'\)"):
        GlobalAttention(8, 8, "general", coverage="sum")
    with pytest.raises(ValueError, match="coverage must be one of"):
        GlobalAttention(8, 8, "additive", coverage="summ")
    with pytest.raises(ValueError, match="fertility_max .* goes with coverage=fertility"):
        GlobalAttention(8, 8, "additive", coverage="sum", fertility_max=2.0)
    with pytest.raises(ValueError, match="fertility_max .* goes with coverage=fertility"):
        GlobalAttention(8, 8, "additive", coverage="fertility")


def toy_batch(n: int = 3):
    """n sentences of 6, 4, 3 (, 5) source and 4, 5, 2 (, 3) target words over 12 ids -> src, src_len, tgt_in, tgt_out."""
    g = torch.Generator().manual_seed(1)
    srcs = [torch.randint(4, 16, (k,), generator=g).tolist() for k in (6, 4, 3, 5)[:n]]
    tgts = [torch.randint(4, 16, (k,), generator=g).tolist() for k in (4, 5, 2, 3)[:n]]
    src, src_len = pad_batch(srcs, eos=True)
    return src, src_len, pad_batch(tgts, bos=True)[0], pad_batch(tgts, eos=True)[0]


def step_by_step(model, src, src_len, tgt_in):
    """The decoder one target position at a time, its state passed on -> logits (B, T, V), final state."""
    enc = model.encode(src, src_len)
    state, logits = model.init_state(enc), []
    for t in range(tgt_in.size(1)):
        out = model.decode(tgt_in[:, t: t + 1], enc, state)
        state = out.state
        logits.append(out.logits)
    return torch.cat(logits, dim=1), state


@pytest.mark.parametrize("flow", FLOWS)
def test_teacher_forcing_equals_single_steps(flow):
    src, src_len, tgt_in, _ = toy_batch()
    model = tiny_model(FLOWS[flow], 16, 16).eval()
    with torch.no_grad():
        forced, _ = model(src, src_len, tgt_in)
        logits, state = step_by_step(model, src, src_len, tgt_in)
    torch.testing.assert_close(logits, forced.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state["attn_state"], forced.state["attn_state"], atol=1e-5, rtol=1e-5)
    assert state["attn_state"].shape == src.shape  # (B, S), batch-first


def test_a_reordered_state_carries_each_rows_coverage():
    """After two steps, index_select the batch (as beam search does): the third step of row i is the third step
    of the row it came from, because C travels in the decoder state."""
    src, src_len, tgt_in, _ = toy_batch()
    model = tiny_model(FLOWS["bahdanau"], 16, 16).eval()
    perm = torch.tensor([2, 0, 1])
    with torch.no_grad():
        enc = model.encode(src, src_len)
        state = model.decode(tgt_in[:, :2], enc, model.init_state(enc)).state
        plain = model.decode(tgt_in[:, 2:3], enc, state)
        moved = model.decode(tgt_in[perm, 2:3], enc.index_select(perm),
                             {k: v.index_select(0, perm) for k, v in state.items()})
    assert not torch.allclose(state["attn_state"][perm], state["attn_state"])  # the reorder matters
    torch.testing.assert_close(moved.logits, plain.logits[perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(moved.state["attn_state"], plain.state["attn_state"][perm], atol=1e-5, rtol=1e-5)


def test_beam_search_scores_equal_the_teacher_forced_pass():
    """Beam 3 on a briefly trained model with coverage: each of the 3 best hypotheses' log-probability equals a
    teacher-forced pass over it (beams are reordered every step; a beam that carried another beam's C, or none,
    would score differently)."""
    src, src_len, tgt_in, tgt_out = toy_batch(4)
    torch.manual_seed(0)
    model = tiny_model(FLOWS["bahdanau"], 16, 16)
    overfit(model, src, src_len, tgt_in, tgt_out, steps=30, lr=0.03)
    with torch.no_grad():
        hyp = beam_search(model.eval(), src, src_len, 3, BOS, EOS, alpha=0.0, max_len_a=1.0, max_len_b=3, nbest=3)
        outputs = [t for sentence in hyp.nbest for t in sentence]  # 4 x 3 hypotheses, sentence-major
        rows = torch.arange(4).repeat_interleave(3)
        forced_in = torch.nn.utils.rnn.pad_sequence([torch.tensor([BOS, *t]) for t in outputs], batch_first=True)
        forced_out = torch.nn.utils.rnn.pad_sequence([torch.tensor([*t, EOS]) for t in outputs], batch_first=True)
        logits = model(src[rows], src_len[rows], forced_in)[0].logits  # (12, T, V)
        logp = logits.log_softmax(-1).gather(-1, forced_out[..., None])[..., 0]  # (12, T)
        forced = logp.masked_fill(forced_out == PAD, 0.0).sum(1)  # (12,)
    assert max(len(t) for t in outputs) >= 5  # the beams ran several steps
    torch.testing.assert_close(hyp.nbest_scores.view(-1), forced, atol=1e-4, rtol=1e-5)  # alpha 0: raw scores


@pytest.mark.parametrize("flow", ["bahdanau", "luong_parallel"])
def test_an_rnn_with_coverage_overfits_one_batch(flow):
    src, src_len, tgt_in, tgt_out = toy_batch(4)
    torch.manual_seed(0)
    model = tiny_model(FLOWS[flow], 16, 16)
    assert overfit(model, src, src_len, tgt_in, tgt_out, steps=60, lr=0.03) < 0.05


def test_a_counterfactual_changes_the_coverage_too():
    """The update reads the weights after the intervention hook: under `uniform`, C after two steps over two
    keys is (1, 1) whatever the scores (GlobalAttention.covered's docstring)."""
    att = scalar_attention("sum")
    keys = torch.tensor([[[1.0], [-1.0]]])
    with intervening(att, uniform):
        out = att(torch.tensor([[[0.5], [0.0]]]), keys, keys, None)
    assert out.state[0].tolist() == pytest.approx([1.0, 1.0])
    assert att(torch.tensor([[[0.5], [0.0]]]), keys, keys, None).state[0, 0].item() > 1.2  # a_1 + a_2 without


def test_nmt_explain_measures_run_on_a_coverage_model():
    """nmt-explain's counterfactuals and both taus on a model with coverage: forced passes carry the state."""
    src, src_len, tgt_in, tgt_out = toy_batch()
    model = tiny_model(FLOWS["bahdanau"], 16, 16).eval()
    b = Batch(src, src_len, tgt_in, tgt_out, torch.arange(3), int((tgt_out != PAD).sum()))
    changes = output_changes(model, [b], PAD, {("cross", "uniform"): (model.decoder.attention, uniform)})
    assert changes[("cross", "uniform")]["tvd"] > 0
    settings = ExplainSettings(counterfactuals=[], seed=0, gradient=True, leave_one_out=True, chunk=4)
    taus = importance_agreement(model, [b], PAD, settings)["cross"]
    assert set(taus) == {"tau_grad", "tau_loo"} and all(math.isfinite(t) for t in taus.values())
