"""scripts/gpu_race.py on CPU: nmt's side only, 5 s budgets, tiny models on the toy task, a fake
nvidia-smi (named like an H100) on PATH; then the report against the real JoeyNMT H100 reference.
Checks behaviour (columns, where each row comes from, ratios, MFU), never speed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_race.py"
RUNS = ["nmt_transformer", "nmt_rnn_luong", "nmt_transformer_base_mfu"]
FAKE_SMI = """#!/bin/sh
case "$*" in
  *query-gpu=name*) echo "NVIDIA H100 80GB HBM3" ;;
  *-lms*) echo "[N/A], [N/A]"; while true; do echo "50, 1500"; sleep 0.1; done ;;
  *) echo "0, 1000" ;;
esac
"""
TOY = ["data=toy", "data.corpus.eval_size=40", "trainer.device=cpu", "trainer.num_threads=1",
       "logger.probe_sentences=0", "logger.stats_sentences=0"]


@pytest.fixture(scope="module")
def race(load_script):
    return load_script("gpu_race")


@pytest.fixture(scope="module")
def fake_smi(tmp_path_factory) -> Path:
    bin_dir = tmp_path_factory.mktemp("bin")
    smi = bin_dir / "nvidia-smi"
    smi.write_text(FAKE_SMI)
    smi.chmod(0o755)
    return bin_dir


# Stand-in for the kit's h100_reference.json where the checkout has no ../shared beside it: the
# fields the report reads, with round figures (the real file is used whenever it is there).
STAND_IN = {config: {"steps": 1000 * (i + 1), "epochs_done_fractional": 10.5 + i,
                     "avg_trg_tokens_per_s_excl_valid": 20000.0 * (i + 1), "test_beam5_bleu": 10.0 * (i + 1),
                     "max_mem_alloc_GiB": 3.0, "test_phase_s": 16.0 + i, "gpu": "NVIDIA H100 80GB HBM3",
                     "train_loop_wall_s": 300.0, "n_params": 7_000_000,
                     "sacrebleu_signature": "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"}
            for i, config in enumerate(("rnn_bahdanau", "rnn_luong", "transformer_small"))}


@pytest.fixture(scope="module")
def reference_file(race, tmp_path_factory) -> Path:
    """The kit's JoeyNMT H100 reference, else the stand-in above."""
    try:
        return race.reference_path(None)
    except SystemExit:
        path = tmp_path_factory.mktemp("reference") / "h100_reference.json"
        path.write_text(json.dumps(STAND_IN))
        return path


@pytest.fixture(scope="module")
def out(tmp_path_factory, fake_smi, reference_file) -> Path:
    """Three nmt runs of 5 s each (the MFU run stops at 10 steps) and the report, as a user calls it."""
    out = tmp_path_factory.mktemp("race")
    overrides = [a for o in TOY for a in ("--override", o)]
    env = {**os.environ, "PATH": f"{fake_smi}{os.pathsep}{os.environ['PATH']}",
           "NMT_CACHE_DIR": str(out / "cache")}
    proc = subprocess.run([sys.executable, str(SCRIPT), str(out), *RUNS, "report", "--budget", "5",
                           "--mfu-steps", "10", "--tiny", "--smi-interval-ms", "100",
                           "--reference", str(reference_file), *overrides],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def ref(reference_file) -> dict:
    """The JoeyNMT H100 figures the report must use."""
    return json.loads(reference_file.read_text())


def test_one_json_per_run_with_the_metrics_of_its_run_dir(out):
    for name in RUNS:
        record = json.loads((out / f"{name}.json").read_text())
        assert record["rc"] == 0 and record["source"] == "measured" and record["budget_s"] == 5.0
        metrics = json.loads((Path(record["run_dir"]) / "metrics.json").read_text())
        fig = record["figures"]
        assert fig["tgt_tok_s"] == metrics["train_tokens_per_s"] > 0
        assert fig["steps"] == metrics["steps"] and fig["test_bleu"] == metrics["test"]["bleu"]
        assert fig["beam5_sent_s"] == metrics["decode_sentences_per_s"] > 0
    mfu_run = json.loads((out / "nmt_transformer_base_mfu.json").read_text())
    assert "trainer.max_steps=10" in mfu_run["command"] and 1 <= mfu_run["figures"]["steps"] <= 10  # --mfu-steps


def test_gpu_sampling_and_mfu_from_the_device_name(out, race):
    """The fake GPU idles at 1000 MiB and runs at 50 % / 1500 MiB: util 50, +500 MiB; its H100 name
    gives the peak FLOP/s of MFU = 6 N tokens/s / peak."""
    record = json.loads((out / "nmt_transformer_base_mfu.json").read_text())
    assert record["device"] == "NVIDIA H100 80GB HBM3" and record["gpu"]["samples"] >= 1
    assert record["figures"]["gpu_util_mean"] == 50.0 and record["figures"]["smi_mem_mib"] == 500.0
    m = json.loads((out / "report.json").read_text())["mfu"]
    fig = record["figures"]
    assert m["peak_flops"] == race.peak_flops_for("H100 SXM") > 0
    assert m["mfu"] == pytest.approx(6 * fig["parameters"] * fig["tgt_tok_s"] / m["peak_flops"])
    assert "6 * N * tokens/s / peak FLOP/s" in (out / "report.md").read_text()


def test_report_holds_every_column(out, race):
    report = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| run |"))
    for key, (title, _) in race.COLUMNS.items():
        assert f"| {title} |" in header
        assert all(key in row for row in report["rows"])
    assert [r["run"] for r in report["rows"]] == [
        "nmt_transformer", "joey_transformer", "nmt_rnn_luong", "joey_rnn_luong", "nmt_rnn_bahdanau",
        "joey_rnn_bahdanau", "nmt_transformer_base_mfu"]
    assert {r["run"]: r["source"] for r in report["rows"]}["nmt_rnn_bahdanau"] == "not run"


def test_joey_rows_come_from_the_reference_and_say_so(out, ref):
    report = json.loads((out / "report.json").read_text())
    md_rows = {line.split("|")[1].strip(): line for line in (out / "report.md").read_text().splitlines()
               if line.startswith("| joey_")}
    for row in (r for r in report["rows"] if r["side"] == "joey"):
        summary = ref[{"joey_transformer": "transformer_small"}.get(row["run"], row["run"][5:])]
        assert row["source"] == "reference" and row["device"] == summary["gpu"]
        assert row["tgt_tok_s"] == summary["avg_trg_tokens_per_s_excl_valid"]
        assert row["test_bleu"] == summary["test_beam5_bleu"] and row["steps"] == summary["steps"]
        assert row["beam5_sent_s"] == pytest.approx((1014 + 1000) / summary["test_phase_s"])
        assert row["gpu_util_mean"] is None
        assert "| reference |" in md_rows[row["run"]] and "H100 reference" in md_rows[row["run"]]


def test_ratios_are_nmt_over_joey(out, ref):
    ratios = json.loads((out / "report.json").read_text())["ratios"]
    pairs = {"transformer": ("nmt_transformer", "transformer_small"), "rnn_luong": ("nmt_rnn_luong", "rnn_luong")}
    for pair, (ours, joey) in pairs.items():
        fig = json.loads((out / f"{ours}.json").read_text())["figures"]
        assert ratios[pair]["joey_source"] == "reference" and ratios[pair]["same_device"] is False
        joey_tok_s = ref[joey]["avg_trg_tokens_per_s_excl_valid"]
        assert ratios[pair]["tgt_tok_s"] == pytest.approx(fig["tgt_tok_s"] / joey_tok_s)
        assert ratios[pair]["test_bleu"] == pytest.approx(fig["test_bleu"] / ref[joey]["test_beam5_bleu"])
        assert ratios[pair]["beam5_sent_s"] == pytest.approx(
            fig["beam5_sent_s"] * ref[joey]["test_phase_s"] / (1014 + 1000))
        assert ratios[pair]["gpu_util_mean"] is None  # the reference has no utilisation
    assert all(v is None for k, v in ratios["rnn_bahdanau"].items() if k in ("tgt_tok_s", "test_bleu"))
    md = (out / "report.md").read_text()
    assert f"| {ratios['transformer']['tgt_tok_s']:.2f} |" in md


def test_without_nvidia_smi_figures_are_null_and_said(race, out, reference_file, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    with race.GpuSampler(tmp_path / "smi.csv", 100, 0) as smi:
        pass
    gpu = smi.summary()
    assert gpu["available"] is False and gpu["util_mean"] is None and gpu["mem_peak_mib"] is None
    record = json.loads((out / "nmt_rnn_luong.json").read_text())
    record["gpu"], record["figures"]["gpu_util_mean"] = gpu, None
    (tmp_path / "nmt_rnn_luong.json").write_text(json.dumps(record))
    report = race.build_report(tmp_path, reference_file)
    assert "nvidia-smi was not found for nmt_rnn_luong" in report["notes"][0]
    assert {r["run"]: r["note"] for r in report["rows"]}["nmt_rnn_luong"] == "no nvidia-smi"


def test_joey_without_wheels_names_prepare_sh(race, tmp_path, monkeypatch):
    monkeypatch.setattr(race, "PEER", tmp_path / ".peer")
    with pytest.raises(SystemExit, match=r"bash \.\./shared/bench/joeynmt/prepare\.sh"):
        race.main([str(tmp_path / "out"), "joey_transformer", "--work-dir", str(tmp_path / "work")])


def test_unknown_run_is_rejected(race, tmp_path):
    with pytest.raises(SystemExit):
        race.parse_args([str(tmp_path), "nmt_transformer", "joey_nope"])
