"""Copy attention (See et al. 2017): the mixture of Eq. 9 by hand, p_gen of Eq. 8 from the decoder's own
c_t, s_t, x_t, the loss on the mixture, search over it, the refusals, and a crippled generator that only
the pointer can overcome."""
import math

import pytest
import torch
from helpers import EOS, PAD, compose_cfg, overfit, pad_batch, tb_scalars, tiny_model, toy_cfg, train

from nmt.cli.train import run_settings
from nmt.decoding.beam import beam_search
from nmt.decoding.inspect import Probe, output_attention
from nmt.decoding.greedy import greedy_decode
from nmt.models.build import build_model, check_pointer
from nmt.models.ensemble import Ensemble
from nmt.models.pointer import copy_distribution, copy_mixture
from nmt.training.trainer import Callbacks
from nmt.training.loss import label_smoothed_loss

POINTER = ["model.pointer=true"]


def test_p_gen_zero_is_the_attention_mass_scattered_onto_source_ids():
    """A 3-piece source with a repeated piece, x = (5, 7, 5), a = (0.2, 0.3, 0.5): P(5) = 0.7, P(7) = 0.3."""
    src = torch.tensor([[5, 7, 5]])  # (1, 3)
    weights = torch.tensor([[[0.2, 0.3, 0.5]]])  # (1, 1, 3)
    logits = torch.randn(1, 1, 10)
    copied = copy_mixture(logits, torch.tensor([[-math.inf]]), weights, src).exp()[0, 0]  # p_gen = 0
    expected = torch.zeros(10)
    expected[5], expected[7] = 0.7, 0.3
    torch.testing.assert_close(copied, expected, atol=1e-6, rtol=0)
    generated = copy_mixture(logits, torch.tensor([[math.inf]]), weights, src).exp()[0, 0]  # p_gen = 1
    torch.testing.assert_close(generated, logits[0, 0].softmax(-1), atol=1e-6, rtol=1e-5)
    mixed = copy_mixture(logits, torch.tensor([[math.log(0.25 / 0.75)]]), weights, src).exp()[0, 0]  # p_gen 0.25
    torch.testing.assert_close(mixed, 0.25 * logits[0, 0].softmax(-1) + 0.75 * expected, atol=1e-6, rtol=1e-5)


def test_the_mixture_sums_to_one_over_the_vocabulary():
    """Random scores, a padded source and local-p-like rows that sum below 1 (renormalised for copying)."""
    g = torch.Generator().manual_seed(0)
    src = torch.tensor([[4, 9, 9, 6, 3], [8, 5, 3, PAD, PAD]])  # (2, 5)
    weights = torch.rand(2, 4, 5, generator=g) * (src != PAD)[:, None, :] * 0.6  # (2, 4, 5) rows < 1
    logp = copy_mixture(torch.randn(2, 4, 12, generator=g) * 5, torch.randn(2, 4, generator=g), weights, src)
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(2, 4), atol=1e-5, rtol=0)
    copied = copy_distribution(weights, src, 12)  # (2, 4, 12)
    assert torch.all(copied[1, :, PAD] == 0)  # padding is never copied


def test_label_smoothed_loss_stays_finite_where_a_piece_has_probability_zero():
    """p_gen ~ 0 and a generator whose softmax underflows to 0 off one token: log P is floored, not -inf,
    and the loss (the mean of -log P over the vocabulary) and its gradients stay finite."""
    logits = torch.full((1, 2, 8), -200.0)
    logits[..., 1] = 200.0  # softmax: exactly 0 everywhere but token 1 in float32
    logits.requires_grad_(True)
    gate = torch.full((1, 2), -200.0, requires_grad=True)  # p_gen = sigmoid(-200): 0 in float32
    weights = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], requires_grad=True)  # (1, 2, 2)
    logp = copy_mixture(logits, gate, weights, torch.tensor([[4, 5]]))
    loss, nll = label_smoothed_loss(logp, torch.tensor([[4, 6]]), PAD, 0.1)  # token 6: neither source nor gen
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(nll)
    assert all(torch.isfinite(t.grad).all() for t in (logits, gate, weights))


def _batch():
    src, src_len = pad_batch([[5, 6, 7, 8, 9], [10, 11, 5], [12, 13, 14, 15]], eos=True)
    tgt, _ = pad_batch([[7, 8, 9, 10], [11, 12, 5, 6], [4, 4, 13, 14]], bos=True)
    return src, src_len, tgt


@pytest.mark.parametrize("attention,extra", [("luong_general", []), ("luong_general", ["model.decoder.input_feeding=false"]),
                                             ("bahdanau", []), ("multihead", [])])
def test_decode_returns_the_mixture_of_eq_9_and_its_loss(attention, extra):
    """out.logits = log(p_gen softmax(generator(features)) + (1 - p_gen) a_t scattered onto src), built here
    from the decoder's own outputs (a_t: the cross-attention map, heads averaged); the trainer's label-smoothed
    loss over it is the loss on that mixture."""
    model = tiny_model([f"model/attention={attention}", *POINTER, *extra]).eval()
    src, src_len, tgt = _batch()
    with torch.no_grad():
        out, enc = model(src, src_len, tgt, need_weights=True)
        p_vocab = model.generator(out.features).softmax(-1)  # (B, T, V)
    a = out.attention["cross"].mean(1)  # (B, H, T, S) -> (B, T, S)
    copied = torch.zeros_like(p_vocab)
    for b in range(src.size(0)):
        for i in range(src.size(1)):
            copied[b, :, src[b, i]] += a[b, :, i]
    p = out.p_gen[..., None] * p_vocab + (1 - out.p_gen[..., None]) * copied  # (B, T, V)
    torch.testing.assert_close(out.logits.exp(), p, atol=1e-5, rtol=1e-4)
    target = torch.roll(tgt, -1, dims=1)
    loss, _ = label_smoothed_loss(out.logits, target, PAD, 0.1)
    keep = target != PAD
    by_hand = (0.9 * -p.log().gather(-1, target[..., None])[..., 0] + 0.1 * -p.log().mean(-1))[keep].sum()
    torch.testing.assert_close(loss, by_hand, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("attention,query", [("luong_general", "after"), ("bahdanau", "before")])
def test_p_gen_reads_context_query_state_and_input_embedding(attention, query):
    """Eq. 8 with s_t = the state that queried the attention: Luong h_t (the top layer after the step),
    Bahdanau s_{t-1} (the top layer before it); x_t = the embedding of the decoder input."""
    model = tiny_model([f"model/attention={attention}", *POINTER]).eval()
    src, src_len, tgt = _batch()
    with torch.no_grad():
        enc = model.encode(src, src_len)
        state = model.init_state(enc)
        out = model.decode(tgt[:, :1], enc, state, need_weights=True)
        s = (out.state if query == "after" else state)["h"][:, -1]  # (B, H) top layer
        c = model.decoder.attention(s[:, None], enc.memory, enc.memory, enc.mask[:, None, :]).context[:, 0]
        x = model.decoder.embed(tgt[:, 0])  # (B, E)
        gate = model.pointer.gate(torch.cat([c, s, x], dim=-1))[:, 0]  # (B,)
    torch.testing.assert_close(out.p_gen[:, 0], torch.sigmoid(gate), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.copy.weights, out.attention["cross"].mean(1), atol=0, rtol=0)


@pytest.mark.parametrize("attention", ["luong_general", "bahdanau"])
def test_teacher_forcing_equals_stepwise_with_the_pointer(attention):
    model = tiny_model([f"model/attention={attention}", *POINTER]).eval()
    src, src_len, tgt = _batch()
    with torch.no_grad():
        enc = model.encode(src, src_len)
        full = model.decode(tgt, enc, model.init_state(enc))
        state, logp, p_gen = model.init_state(enc), [], []
        for t in range(tgt.size(1)):
            out = model.decode(tgt[:, t: t + 1], enc, state)
            state = out.state
            logp.append(out.logits)
            p_gen.append(out.p_gen)
    torch.testing.assert_close(full.logits, torch.cat(logp, 1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(full.p_gen, torch.cat(p_gen, 1), atol=1e-6, rtol=1e-5)


def test_search_over_the_mixture():
    """Beam 1 = greedy (tokens and scores); beam 3's scores are the teacher-forced log P of its outputs (the
    source ids reorder with the hypotheses); an ensemble of pointer models averages their mixtures' P."""
    torch.manual_seed(0)
    model = tiny_model(["model/attention=bahdanau", *POINTER]).eval()
    with torch.no_grad():  # eos unlikely: outputs up to the length limits, eos forced at different steps, so
        model.generator.bias[EOS] = -3.0  # sentences leave the beam batch and src is reordered with the rest
    src, src_len, _ = _batch()
    greedy = greedy_decode(model, src, src_len, 2, EOS, 1.0, 3)
    beam1 = beam_search(model, src, src_len, 1, 2, EOS, 0.0, 1.0, 3)
    assert greedy.tokens == beam1.tokens
    torch.testing.assert_close(greedy.scores, beam1.scores, atol=1e-5, rtol=1e-5)
    beam3 = beam_search(model, src, src_len, 3, 2, EOS, 0.0, 1.0, 3)
    assert min(len(t) for t in beam3.tokens) >= 4  # not the empty outputs of an untouched eos (8, 6, 7 here)
    outs = [t + [EOS] for t in beam3.tokens]
    tgt_in, _ = pad_batch(outs, bos=True)
    tgt_out = pad_batch([o + [PAD] for o in outs])[0]
    with torch.no_grad():
        logp = model(src, src_len, tgt_in[:, :-1])[0].logits.gather(-1, tgt_out[:, :-1, None])[..., 0]
    forced = (logp * (tgt_out[:, :-1] != PAD)).sum(1)  # (B,)
    torch.testing.assert_close(beam3.scores, forced, atol=1e-4, rtol=1e-5)
    models = [model, tiny_model(["model/attention=luong_general", *POINTER]).eval()]
    ensemble, tgt = Ensemble(models), pad_batch(beam3.tokens, bos=True)[0]
    with torch.no_grad():  # the ensemble averages the mixtures' probabilities: log mean_m P_m
        enc = ensemble.encode(src, src_len)
        both = ensemble.decode(tgt, enc, ensemble.init_state(enc)).logits
        each = torch.stack([m.decode(tgt, e, m.init_state(e)).logits for m, e in zip(models, enc.parts)])
    torch.testing.assert_close(both, torch.logsumexp(each, 0) - math.log(2), atol=1e-5, rtol=1e-5)


def test_a_crippled_generator_is_overcome_by_copying():
    """Target = source over a 30-piece vocabulary, the generator frozen at zero (P_vocab uniform): only the
    pointer can put mass on the right piece. Without it the loss stays at log 30."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    seqs = [torch.randint(4, 30, (5,), generator=g).tolist() for _ in range(8)]
    src, src_len = pad_batch(seqs, eos=True)
    tgt_in, _ = pad_batch(seqs, bos=True)
    tgt_out, _ = pad_batch(seqs, eos=True)
    losses = {}
    for name, extra in (("pointer", POINTER), ("plain", [])):
        model = tiny_model(["model/attention=luong_dot", "model.decoder.hidden_size=32",
                            "model.decoder.input_feeding=false", *extra])
        for p in model.generator.parameters():
            p.data.zero_()
            p.requires_grad_(False)
        losses[name] = overfit(model, src, src_len, tgt_in, tgt_out, steps=25, lr=0.03)
    assert losses["plain"] > math.log(30) - 0.01
    assert losses["pointer"] < 0.5, losses  # 0.2 after 20 steps here


def test_refusals_name_the_fix():
    with pytest.raises(ValueError, match="model.pointer=true needs an RNN decoder"):
        build_model(compose_cfg(["model=transformer", *POINTER]).model, 30, 30, PAD)
    with pytest.raises(ValueError, match="data.tokenizer.joint=true"):
        tiny_model(POINTER, src_vocab=30, tgt_vocab=40)
    with pytest.raises(ValueError, match="data.tokenizer.joint=true"):
        check_pointer(compose_cfg(POINTER).model, joint=False)
    check_pointer(compose_cfg(POINTER).model, joint=True)
    check_pointer(compose_cfg([]).model, joint=False)  # no pointer: any vocabulary


def test_nmt_train_refuses_separate_vocabularies_before_any_file(tmp_path):
    with pytest.raises(ValueError, match="data.tokenizer.joint=true"):
        run_settings(toy_cfg(tmp_path / "run", tmp_path / "cache", [*POINTER, "data.tokenizer.joint=false"]))
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_hybrid_copies_and_a_run_stored_before_the_key_has_no_pointer():
    model = tiny_model(["model=hybrid", "model.encoder.d_model=16", "model.encoder.ff_size=32",
                        "model.encoder.num_layers=1", "model.encoder.self_attention.num_heads=2",
                        "model.decoder.emb_size=16", "model.decoder.hidden_size=24", *POINTER], base=[])
    src, src_len, tgt = _batch()
    assert model(src, src_len, tgt)[0].p_gen.shape == tgt.shape
    old = {k: v for k, v in compose_cfg([]).model.items() if k != "pointer"}  # a model node from before
    assert build_model(old, 30, 30, PAD).pointer is None


def test_probes_carry_p_gen_per_output_token():
    """output_attention's forced pass hands each sentence's p_gen (cut to its output) to the probe, the explorer and
    TensorBoard's probe text; probes.pt round-trips it; a model without the pointer gives None."""
    torch.manual_seed(0)
    model = tiny_model(["model/attention=bahdanau", *POINTER]).eval()
    src = [[5, 6, 7, 8, 9, EOS], [10, 11, 5, EOS]]
    outs = [[7, 8, 9], [11, 5]]
    got = output_attention(model, src, outs, pad_id=PAD, bos_id=2, eos_id=EOS, device=torch.device("cpu"))
    tgt_in, _ = pad_batch([o + [EOS] for o in outs], bos=True)
    src_t, src_len = pad_batch(src)
    with torch.no_grad():
        full = model(src_t, src_len, tgt_in[:, :-1])[0].p_gen  # (B, T)
    for b, maps in enumerate(got):
        assert maps.p_gen.shape == (len(outs[b]) + 1,)
        torch.testing.assert_close(maps.p_gen, full[b, : len(outs[b]) + 1], atol=1e-6, rtol=1e-5)
    probe = Probe(["a"], ["b", "</s>"], {}, p_gen=got[0].p_gen)
    torch.testing.assert_close(Probe(**probe.saved()).p_gen, got[0].p_gen)
    plain = tiny_model(["model/attention=bahdanau"]).eval()
    assert output_attention(plain, src, outs, pad_id=PAD, bos_id=2, eos_id=EOS,
                            device=torch.device("cpu"))[0].p_gen is None


def test_validation_logs_the_mean_p_gen_of_the_reference_tokens(tmp_path):
    """valid/p_gen = copy attention's p_gen averaged over the validation references' tokens (teacher forced, padding
    left out), in the validation result and TensorBoard."""
    class Recompute(Callbacks):
        seen: list = []

        def on_validation(self, trainer, result):
            num = den = 0.0
            with torch.no_grad():
                for b in trainer.parts.valid.batches:
                    out, _ = trainer.model(b.src, b.src_lengths, b.tgt_in)
                    real = (b.tgt_out != PAD).float()  # (B, T)
                    num, den = num + float((out.p_gen * real).sum()), den + float(real.sum())
            self.seen.append((result["p_gen"], num / den))

    run = tmp_path / "run"
    cfg = toy_cfg(run, tmp_path / "cache", [*POINTER, "data.tokenizer.joint=true", "trainer.max_steps=6",
                                            "trainer.valid_every=3", "logger.tensorboard=true"])
    train(cfg, [Recompute()])
    assert len(Recompute.seen) == 2
    for logged, by_hand in Recompute.seen:
        assert 0.0 < logged < 1.0 and logged == pytest.approx(by_hand, rel=1e-5)
    assert tb_scalars(run, "valid/p_gen")[6] == pytest.approx(Recompute.seen[-1][0], rel=1e-5)
