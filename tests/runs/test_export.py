"""nmt-export to CTranslate2 on a tiny trained Transformer: float32 greedy outputs equal nmt's, int8 stays close
in BLEU, CTranslate2's cross-attention equals nmt's last layer (heads averaged), and what CTranslate2
cannot run is refused before anything is written. A missing ctranslate2 fails under CI=true (dev extras)."""
import os

import numpy as np
import pytest
import sacrebleu
import torch
from helpers import TINY_RNN, TINY_TRANSFORMER, TOY_TRAIN, compose_cfg
from trained_toy import copy_task_run

import nmt
from nmt.cli.common import job
from nmt.runs.export import ExportJob, export_run
from nmt.runs.run_dir import RunDirError

try:
    import ctranslate2
except ImportError:  # pragma: no cover - CI installs it with the dev extras
    ctranslate2 = None


@pytest.fixture(scope="module")
def transformer_run(tmp_path_factory):
    if ctranslate2 is None:
        if os.environ.get("CI") == "true":
            pytest.fail("ctranslate2 missing: CI installs it with the dev extras")
        pytest.skip("pip install ctranslate2 (this test fails instead when CI=true)")
    from helpers import train
    tmp = tmp_path_factory.mktemp("export")
    torch.set_num_threads(1)
    train(compose_cfg([o for o in TOY_TRAIN if o not in TINY_RNN] + TINY_TRANSFORMER + [
        f"run_dir={tmp / 'run'}", f"data.cache_dir={tmp / 'cache'}", "data.corpus.task=reverse", "data.corpus.size=2000",
        "data.corpus.vocab=8", "data.corpus.max_len=6", "data.corpus.eval_size=200", "trainer.max_steps=800",
        "trainer.valid_every=800", "trainer.num_threads=1", "optim.lr=0.003", "optim.schedule=constant"]))
    model = nmt.load(tmp / "run", device="cpu")
    test = model.trained.load_split("test")
    return tmp, model, list(test["src"]), list(test["tgt"])


def ct2_translate(translator, model, lines, **kwargs):
    tok = model.trained
    results = translator.translate_batch([tok.src_tok.pieces(ids) for ids in tok.src_tok.encode(lines)], **kwargs)
    texts = tok.tgt_tok.decode([[tok.tgt_tok.pieces(range(len(tok.tgt_tok))).index(p) for p in r.hypotheses[0]]
                                for r in results])
    return texts, results


def export(tmp, name, quantization="float32", run="run"):
    return export_run(ExportJob(str(tmp / run), "best", "ctranslate2", quantization, str(tmp / name)))


def test_float32_export_translates_like_nmt(transformer_run):
    tmp, model, src, _ = transformer_run
    out = export(tmp, "f32")
    assert (out / "src.model").is_file() and (out / "tgt.model").is_file()
    theirs, _ = ct2_translate(ctranslate2.Translator(str(out), device="cpu"), model, src, beam_size=1)
    ours = model.translate(src, beam_size=1)
    assert len(src) == 200 and sum(a == b for a, b in zip(ours, theirs)) >= 198


def test_int8_export_stays_close_to_float32(transformer_run):
    """Greedy on both sides: CTranslate2's beam normalises by |Y|^alpha, nmt by GNMT's ((5 + |Y|) / 6)^alpha,
    so their beam outputs differ by design, not by the export. On this d=16 toy model int8 moves BLEU by
    about 1 point either way (95.5 vs 94.2 here); a broken quantization (wrong scales) loses far more. The
    issue's <= 0.5 BLEU target is for the d=256 model, measured with scripts, not asserted here."""
    tmp, model, src, ref = transformer_run
    out = export(tmp, "i8", "int8")
    theirs, _ = ct2_translate(ctranslate2.Translator(str(out), device="cpu", compute_type="int8"), model, src,
                              beam_size=1)
    ours = model.translate(src, beam_size=1)
    assert sum(a == b for a, b in zip(ours, theirs)) >= 0.9 * len(src)
    assert abs(sacrebleu.corpus_bleu(theirs, [ref]).score - sacrebleu.corpus_bleu(ours, [ref]).score) <= 2.0


def test_ctranslate2_attention_is_the_last_cross_layer_heads_averaged(transformer_run):
    tmp, model, src, _ = transformer_run
    translator = ctranslate2.Translator(str(export(tmp, "att")), device="cpu")
    texts, results = ct2_translate(translator, model, src[:5], beam_size=1, return_attention=True)
    for line, text, result in zip(src[:5], texts, results):
        maps = model.attention(line, text)
        last = max((k for k in maps if k.endswith(".cross")), key=lambda k: int(k.split(".")[1]))
        ours = maps[last].weights.mean(0)  # (T + 1, S): the last row is the final eos's
        theirs = np.array(result.attention[0])  # (T, S)
        np.testing.assert_allclose(theirs, ours[: len(theirs)], atol=1e-4)


def test_what_ctranslate2_cannot_run_is_refused_and_nothing_written(transformer_run, tmp_path, tmp_path_factory):
    tmp, *_ = transformer_run
    rnn_run, _ = copy_task_run(tmp_path_factory)
    with pytest.raises(RunDirError, match="model.family=rnn .* runs with nmt-translate and the Python API"):
        export_run(ExportJob(str(rnn_run), "best", "ctranslate2", "float32", str(tmp_path / "rnn")))
    assert not (tmp_path / "rnn").exists()
    with pytest.raises(ValueError, match="quantization='int4' must be one of float32, int8"):
        job(ExportJob, compose_cfg([f"run_dir={tmp / 'run'}", f"out={tmp_path / 'x'}", "quantization=int4"], "export"))


def test_the_speed_script_reports_every_engine_on_the_same_sentences(transformer_run, tmp_path):
    """scripts/ct2_benchmark.py (the README's table): nmt, the float32 and the int8 export decode the same
    sentences with the same beam; nmt's BLEU is that of nmt's own translations, and the exports stay close."""
    import importlib.util
    import sys
    from pathlib import Path
    scripts = Path(__file__).resolve().parents[2] / "scripts"
    sys.path.insert(0, str(scripts))
    spec = importlib.util.spec_from_file_location("nmt_script_ct2_benchmark", scripts / "ct2_benchmark.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    tmp, model, src, ref = transformer_run
    report = bench.main([str(tmp / "run"), "--max-sentences", "40", "--repeats", "1", "--threads", "1",
                         "--beam", "2", "--md", str(tmp_path / "t.md")])
    results = report["results"]
    assert list(results) == ["nmt", "ctranslate2 float32", "ctranslate2 int8"] and report["sentences"] == 40
    assert results["nmt"]["vs_nmt"] == 1.0 and all(r["sent_per_s"] > 0 for r in results.values())
    ours = sacrebleu.corpus_bleu(model.translate(src[:40], beam_size=2), [ref[:40]]).score
    assert results["nmt"]["bleu"] == round(ours, 2)
    assert results["ctranslate2 float32"]["bleu"] >= 0.9 * ours  # beams differ by length normalisation only
    assert "| ctranslate2 int8 |" in (tmp_path / "t.md").read_text()
