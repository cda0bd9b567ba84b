"""Ensembles (nmt.models.ensemble): every step averages the models' probabilities, each model keeps its own
cache through beam search, and runs with different sentencepiece models are refused."""
import math
import shutil

import pytest
import torch
from helpers import BOS, EOS
from trained_toy import copy_task_run

from nmt.decoding import beam_search, greedy_decode
from nmt.models.ensemble import Ensemble
from nmt.runs.run_dir import RunDirError
from nmt.runs.trained import load_runs


@pytest.fixture
def pair(half_trained, half_trained_transformer):
    """An RNN and a Transformer trained on the same pairs (one vocabulary): as different as two models get."""
    (rnn, src, src_len), (transformer, _, _) = half_trained, half_trained_transformer
    return rnn, transformer, src, src_len


def test_each_step_is_the_mean_of_the_models_probabilities(pair):
    rnn, transformer, src, src_len = pair
    ensemble = Ensemble([rnn, transformer])
    tgt_in = torch.full((src.size(0), 4), BOS)
    tgt_in[:, 1:] = 7
    enc = ensemble.encode(src, src_len)
    logits = ensemble.decode(tgt_in, enc, ensemble.init_state(enc)).logits  # (B, 4, V)
    p = [m(src, src_len, tgt_in)[0].logits.float().softmax(-1) for m in (rnn, transformer)]
    torch.testing.assert_close(logits.exp(), (p[0] + p[1]) / 2, atol=1e-6, rtol=1e-5)


def test_an_ensemble_of_one_model_twice_searches_like_the_model(pair):
    rnn, _, src, src_len = pair
    twice = Ensemble([rnn, rnn])
    for search in (lambda m: greedy_decode(m, src, src_len, BOS, EOS, 1.5, 5),
                   lambda m: beam_search(m, src, src_len, 4, BOS, EOS, 0.6, 1.5, 5, nbest=2)):
        alone, ensembled = search(rnn), search(twice)
        assert ensembled.tokens == alone.tokens
        torch.testing.assert_close(ensembled.scores, alone.scores, atol=1e-5, rtol=1e-5)


def test_beam_scores_are_the_teacher_forced_ensemble_log_probs(pair):
    """Fails if beam search pairs a hypothesis with another beam's cache of either model."""
    rnn, transformer, src, src_len = pair
    ensemble = Ensemble([rnn, transformer])
    b = beam_search(ensemble, src, src_len, 4, BOS, EOS, 0.0, 1.5, 5)
    for i, toks in enumerate(b.tokens):
        x, n = src[i: i + 1, : src_len[i]], src_len[i: i + 1]
        p = sum(m(x, n, torch.tensor([[BOS, *toks]]))[0].logits.float().softmax(-1) for m in (rnn, transformer)) / 2
        lp = p[0].log().gather(-1, torch.tensor([*toks, EOS])[:, None]).sum()
        assert math.isclose(float(b.scores[i]), float(lp.detach()), abs_tol=1e-3)


def test_runs_with_other_sentencepiece_models_are_refused(tmp_path_factory, tmp_path):
    run, _ = copy_task_run(tmp_path_factory)
    other = tmp_path / "other"
    shutil.copytree(run, other)
    ensemble = load_runs([str(run), str(other)], "best", torch.device("cpu"))
    assert isinstance(ensemble.model, Ensemble) and len(ensemble.model.models) == 2
    from sentencepiece import sentencepiece_model_pb2
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString((other / "tokenizer" / "tgt.model").read_bytes())
    piece = next(p for p in proto.pieces if p.type == p.NORMAL)
    piece.piece = "▁zz"  # the same vocabulary size, one id now means another piece
    (other / "tokenizer" / "tgt.model").write_bytes(proto.SerializeToString())
    with pytest.raises(RunDirError, match=f"{other} differ from {run}: ensemble runs trained on the same data"):
        load_runs([str(run), str(other)], "best", torch.device("cpu"))


def test_translate_and_evaluate_take_a_list_of_runs(tmp_path_factory, tmp_path, capsys):
    """run_dir=[A,B] in nmt-translate and nmt-evaluate; maps (explorer=) of an ensemble are refused."""
    from helpers import compose_cfg

    from nmt.cli.common import decode_settings
    from nmt.cli.translate import translate
    from nmt.evaluation.evaluate import evaluate_run
    run, _ = copy_task_run(tmp_path_factory)
    twin = tmp_path / "twin"
    shutil.copytree(run, twin)
    src = tmp_path / "src.txt"
    src.write_text("w1 w2 w3\nw4 w5\n")
    single = compose_cfg([f"run_dir={run}", f"input={src}", "decode.beam_size=2"], "translate")
    translate(single)
    alone = capsys.readouterr().out
    translate(compose_cfg([f"run_dir=[{run},{twin}]", f"input={src}", "decode.beam_size=2"], "translate"))
    assert capsys.readouterr().out == alone == "w1 w2 w3\nw4 w5\n"
    with pytest.raises(ValueError, match="an ensemble .* has one map per model: pass a single run_dir"):
        translate(compose_cfg([f"run_dir=[{run},{twin}]", f"input={src}", f"explorer={tmp_path / 'e.html'}"],
                              "translate"))
    assert not (tmp_path / "e.html").exists()
    result = evaluate_run([str(run), str(twin)], "test", "best", decode_settings(single), torch.device("cpu"), None)
    assert result["runs"] == [str(run), str(twin)] and result["bleu"] == 100.0
    assert (run / "test.ensemble2.best.beam2.hyp.txt").is_file()
