"""scripts/position_bench.py in a tiny CPU configuration on the toy corpus: report keys, the decoder state's bytes
against the cache shapes, a variant whose configs are missing, and BLEU by source length; no timing assertions."""
from __future__ import annotations

import json
import math

import pytest
import sacrebleu
from helpers import compose_cfg
from hydra.utils import instantiate
from omegaconf import OmegaConf

from nmt.runs.config import RunConfig

D, STEPS = 32, 3  # --tiny: d_model 32, one decoder layer; --cache-steps 3
TOY = ["--data", "toy", "--override", "data.corpus.size=200", "--override", "data.corpus.eval_size=20"]


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("position_bench")


@pytest.fixture(scope="module")
def run(bench, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("position_bench")
    argv = ["--tiny", *TOY, "--override", f"data.cache_dir={tmp / 'cache'}", "--variants", "sinusoidal,aan",
            "--variant", "nope=+model/position=nope", "--steps", "2", "--warmup", "1", "--max-tokens", "200",
            "--decode-sentences", "4", "--decode-batch", "4", "--beam", "2", "--cache-steps", str(STEPS),
            "--threads", "1", "--out", str(tmp / "out.json"), "--md", str(tmp / "out.md")]
    return bench.main(argv), tmp


def test_every_variant_has_its_figures_or_its_error(run):
    report, tmp = run
    assert json.loads((tmp / "out.json").read_text()) == report
    assert list(report["results"]) == ["sinusoidal", "aan", "nope"]
    for name in ("sinusoidal", "aan"):
        r = report["results"][name]
        for key in ("params", "train_tgt_tok_s", "step_ms", "beam_sent_s", "state_bytes_per_sent"):
            assert isinstance(r[key], (int, float)) and r[key] > 0 and math.isfinite(r[key]), (name, key)
    assert report["results"]["aan"]["overrides"] == ["model/slot@model.decoder.self_attention=aan"]
    assert "model/position/nope" in report["results"]["nope"]["error"]
    table = (tmp / "out.md").read_text()
    assert "| aan | `model/slot@model.decoder.self_attention=aan` |" in table and "| nope |" in table


def test_state_bytes_are_the_cache_shapes(run):
    """Multi-head: keys and values (H, t, dh) of t = cache-steps tokens, 2 t D float32; the AAN: one sum of D."""
    sinusoidal, aan = (run[0]["results"][n] for n in ("sinusoidal", "aan"))
    assert sinusoidal["self_cache_bytes_per_sent"] == 2 * STEPS * D * 4
    assert aan["self_cache_bytes_per_sent"] == D * 4
    assert sinusoidal["state_bytes_per_sent"] - sinusoidal["self_cache_bytes_per_sent"] == \
        aan["state_bytes_per_sent"] - aan["self_cache_bytes_per_sent"]  # the same projected source and counters
    assert sinusoidal["beam_out_len"] == aan["beam_out_len"]  # eos held back: the same tokens decoded


def test_bleu_by_source_length_against_sacrebleu(bench, tmp_path):
    """A fake finished run on the toy corpus (sources of 3..30 words): right on sources over 15 words, wrong on the
    rest; each bucket's BLEU is sacreBLEU's on its own lines."""
    cfg = compose_cfg(["data=toy", "trainer=cpu", "data.corpus.eval_size=40", "data.corpus.max_len=30"])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(RunConfig(OmegaConf.to_container(cfg, resolve=True)).to_yaml())
    test = instantiate(cfg.data.corpus).load("test")
    words = [len(s.split()) for s in test["src"]]
    hyps = [t if n > 15 else "w0 w0" for t, n in zip(test["tgt"], words)]
    (run_dir / "test.beam.hyp.txt").write_text("\n".join(hyps) + "\n")
    (run_dir / "test.ref.txt").write_text("\n".join(test["tgt"]) + "\n")
    report = bench.main(["--length-buckets", str(run_dir), "--md", str(tmp_path / "b.md")])[str(run_dir)]
    for name, keep in (("<=15", lambda n: n <= 15), ("16-25", lambda n: 16 <= n <= 25), (">25", lambda n: n > 25)):
        rows = [i for i, n in enumerate(words) if keep(n)]
        expected = sacrebleu.corpus_bleu([hyps[i] for i in rows], [[test["tgt"][i] for i in rows]]).score
        assert report[name]["n"] == len(rows) > 0 and report[name]["bleu"] == pytest.approx(expected, abs=0.01)
    assert report[">25"]["bleu"] == 100.0 and report["<=15"]["bleu"] < 5 and report["split"] == "test"
    assert report["all"]["n"] == 40 and "| BLEU <=15 words (n) |" in (tmp_path / "b.md").read_text()
    (run_dir / "test.beam.hyp.txt").write_text("\n".join(hyps[:10]) + "\n")
    with pytest.raises(ValueError, match="do not have the 40 lines of split test: pass a finished run"):
        bench.main(["--length-buckets", str(run_dir)])
