"""scripts/cpu_race.py: nmt's two sides (an earlier revision and this checkout) on the toy task with
3 s budgets, the report's ratios against JoeyNMT, and its refusals. JoeyNMT itself is not run here
(its venv is the kit's, outside the project); checks behaviour, never speed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bench_common import TINY  # scripts/, put on sys.path by this folder's conftest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "cpu_race.py"
TOY = ["data=toy", "data.corpus.eval_size=40", "trainer.device=cpu", "trainer.num_threads=1",
       "logger.probe_sentences=0", "logger.stats_sentences=0", *TINY["rnn"]]


@pytest.fixture(scope="module")
def race(load_script):
    return load_script("cpu_race")


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cpu_race")
    overrides = [a for o in TOY for a in ("--override", o)]
    proc = subprocess.run([sys.executable, str(SCRIPT), str(out), "--budget", "3", "--before", "HEAD",
                           "--models", "rnn", "--sides", "before", "nmt", *overrides], cwd=ROOT,
                          env={**os.environ, "NMT_CACHE_DIR": str(out / "cache")}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_each_side_reports_its_own_run_and_the_before_side_imports_the_old_tree(out):
    for side in ("before", "nmt"):
        record = json.loads((out / f"{side}_rnn.json").read_text())
        metrics = json.loads((out / "runs" / f"{side}_rnn" / "metrics.json").read_text())
        fig = record["figures"]
        assert record["rc"] == 0 and record["budget_s"] == 3.0 and "trainer.max_time_s=3.0" in record["command"]
        assert fig["tgt_tok_s"] == metrics["train_tokens_per_s"] > 0 and fig["steps"] == metrics["steps"]
        assert fig["test_bleu"] == metrics["test"]["bleu"] and metrics["stopped"] == "max_time_s"
    before = json.loads((out / "before_rnn.json").read_text())
    assert Path(before["nmt_source"]) == out / "src_HEAD" / "nmt" / "__init__.py"
    assert Path(json.loads((out / "nmt_rnn.json").read_text())["nmt_source"]) == ROOT / "nmt" / "__init__.py"
    assert [r["run"] for r in json.loads((out / "report.json").read_text())] == ["before_rnn", "nmt_rnn"]


def test_ratios_are_over_joeynmt_of_the_same_model(race):
    def rec(side, model, tok):
        return {"run": f"{side}_{model}", "side": side, "model": model, "budget_s": 240.0, "revision": "r",
                "load_1m_start": 0.1, "load_1m_end": 2.0, "figures": {"tgt_tok_s": tok, "steps": 10, "test_bleu": 20.0}}
    md = race.markdown([rec("joey", "rnn", 1000.0), rec("nmt", "rnn", 3000.0),
                        rec("joey", "transformer", 500.0), rec("nmt", "transformer", 750.0)])
    rows = [line.split(" | ") for line in md.splitlines() if line.startswith(("| rnn", "| transformer"))]
    assert [r[5] for r in rows] == ["n/a", "3.00", "n/a", "1.50"]


def test_a_missing_kit_is_named_before_anything_is_written(race, tmp_path, monkeypatch):
    monkeypatch.setattr(race, "PEER", tmp_path / ".peer")
    with pytest.raises(SystemExit, match=r"prepare\.sh"):
        race.main([str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_an_existing_run_dir_is_not_overwritten(race, tmp_path):
    (tmp_path / "runs" / "nmt_rnn").mkdir(parents=True)
    (tmp_path / "runs" / "nmt_rnn" / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit, match=r"nmt_rnn exist"):
        race.main([str(tmp_path), "--models", "rnn", "--sides", "nmt"])
    assert (tmp_path / "runs" / "nmt_rnn" / "keep.txt").read_text() == "mine"


def test_an_unknown_before_revision_is_named_before_anything_is_written(race, tmp_path):
    with pytest.raises(SystemExit, match="no-such-rev"):
        race.main([str(tmp_path / "out"), "--before", "no-such-rev", "--sides", "before"])
    assert not (tmp_path / "out").exists()
