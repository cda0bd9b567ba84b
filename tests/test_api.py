"""The Python API (nmt.load -> translate, score, attention, plot_attention) on a tiny RNN that has learnt the
toy copy task: the same numbers as the library's own decoding and scoring, maps whose rows are attention
distributions over the labelled pieces, and clear errors for bad settings."""
import pytest
import torch
from trained_toy import copy_task_run

import nmt
from nmt.decoding import translate_lines
from nmt.evaluation.score import score_lines


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    run_dir, cfg = copy_task_run(tmp_path_factory)
    torch.set_num_threads(1)
    return nmt.load(run_dir, device="cpu"), cfg


@pytest.fixture(scope="module")
def pairs(model):
    test = model[0].trained.load_split("test")
    return list(test["src"][:6]), list(test["tgt"][:6])


def test_translate_is_the_library_decode_with_the_yaml_defaults_and_overrides(model, pairs):
    m, src = model[0], pairs[0]
    t = m.trained
    for beam in (1, 3):
        expected = translate_lines(t.model, t.src_tok, t.tgt_tok, src, m.decode_settings(beam_size=beam), m.device)
        assert m.translate(src, beam_size=beam) == expected.lines
    assert m.decode_settings().beam_size == 5  # configs/decode/default.yaml
    assert m.translate(src, beam_size=1) == pairs[1]  # the copy task is learnt: output == reference
    assert m.translate(src[0], beam_size=1) == pairs[1][0]
    greedy = m.translate(src[0], beam_size=1, return_attention=True)  # greedy: the raw log-probability
    assert greedy.scores[0] == pytest.approx(m.score([src[0]], greedy.outputs)[0]["logprob"], abs=1e-4)


def test_nbest_translations_come_best_first_with_their_attention(model, pairs):
    m, src = model[0], pairs[0][:2]
    out = m.translate(src, beam_size=3, nbest=2, return_attention=True)
    assert [len(t.outputs) for t in out] == [2, 2] and all(t.scores[0] >= t.scores[1] for t in out)
    maps = out[0].attention["cross"]
    assert maps.weights.shape == (1, len(maps.queries), len(maps.keys))
    assert maps.queries[-1] == "</s>" and len(maps.keys) == len(m.trained.src_tok.encode([src[0]])[0])


def test_score_equals_nmt_score_and_prefers_the_reference(model, pairs):
    m, (src, tgt) = model[0], pairs
    rows = m.score(src, tgt)
    assert rows == score_lines(m.trained, src, tgt, m.device, 64)
    assert all(r["logprob"] == pytest.approx(sum(r["token_logprobs"])) for r in rows)
    shuffled = m.score(src, [" ".join(reversed(t.split())) for t in tgt])
    assert all(s["logprob"] < r["logprob"] for s, r in zip(shuffled, rows) if len(set(r["tokens"])) > 2)


def test_attention_rows_are_distributions_over_the_labelled_source(model, pairs):
    m, (src, tgt) = model[0], pairs
    maps = m.attention(src[0], tgt[0])
    assert set(maps) == {"cross"}
    w = maps["cross"].weights
    assert w.shape[1:] == (len(maps["cross"].queries), len(maps["cross"].keys))
    assert torch.allclose(torch.from_numpy(w).sum(-1), torch.ones(w.shape[:2]), atol=1e-5)
    own = m.attention(src[0])  # no target: the model's own greedy translation
    assert own["cross"].queries[:-1] == m.trained.tgt_tok.pieces(m.trained.tgt_tok.encode([m.translate(src[0], beam_size=1)])[0])


def test_plot_attention_draws_every_head_of_the_chosen_slots(model, pairs):
    m, src = model[0], pairs[0]
    fig = m.plot_attention(src[0])
    assert len([ax for ax in fig.axes if ax.images]) == 1  # one cross slot, one head
    with pytest.raises(ValueError, match=r"slots \['dec.0.cross'\] are not in this model; it has \['cross'\]"):
        m.plot_attention(src[0], slots=["dec.0.cross"])


def test_bad_decode_settings_name_the_key(model):
    m = model[0]
    with pytest.raises(ValueError, match="unknown decode settings \\['beam'\\]; choose among"):
        m.translate(["a"], beam=3)
    with pytest.raises(ValueError, match="decode.beam_size='3' must be of type int"):
        m.translate(["a"], beam_size="3")
