"""scripts/gpu_smoke.py on CPU: the CUDA rows say "skipped: no CUDA", the CPU rows pass with their figures,
and a row with an injected failure (--break) says FAIL and makes the exit status 1 (one run of the script,
--quick sizes). The verdicts that only a GPU reaches (the OOM exit, the LSTM dtypes, resume on CUDA) are
checked as functions; the wrappers' refusals without running anything."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_smoke.py"
CPU_ROWS = {"train_rnn", "train_transformer", "resume", "beam_decode", "compile"}
CUDA_ROWS = {"lstm_dtype", "prefetch", "peak_memory", "torchrun_nccl", "oom"}
BROKEN = "train_transformer"  # its run still trains (beam_decode decodes it); its verdict sees a NaN loss


@pytest.fixture(scope="module")
def smoke(load_script):
    return load_script("gpu_smoke")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict, str]:
    """One CPU run of every row, train_transformer broken on purpose."""
    tmp = tmp_path_factory.mktemp("gpu_smoke")
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp / "out"), "--quick", "--work", str(tmp / "work"),
                           "--break", BROKEN], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert (tmp / "out" / "smoke.json").is_file(), proc.stderr[-3000:]
    return proc, json.loads((tmp / "out" / "smoke.json").read_text()), (tmp / "out" / "smoke.md").read_text()


def rows_of(report: dict) -> dict[str, dict]:
    return {r["name"]: r for r in report["rows"]}


def test_cuda_rows_are_skipped_and_cpu_rows_pass_with_their_figures(run):
    proc, report, md = run
    rows = rows_of(report)
    assert set(rows) == CPU_ROWS | CUDA_ROWS
    for name in CUDA_ROWS:
        assert rows[name]["result"] == "skipped: no CUDA", name
        assert f"| {name} | {rows[name]['what']} | skipped: no CUDA |" in md
    for name in CPU_ROWS - {BROKEN}:
        assert rows[name]["result"] == "PASS", (name, rows[name]["figure"], proc.stdout[-3000:])
    first, last = map(float, re.search(r"loss (\d+\.\d+) -> (\d+\.\d+) over 20 steps, fp32",
                                       rows["train_rnn"]["figure"]).groups())
    assert last <= 0.9 * first and len(rows["train_rnn"]["details"]["losses"]) == 20
    resume = rows["resume"]
    assert "bit-identical to an uninterrupted run" in resume["figure"]
    assert resume["details"]["unlogged_at_cut"] == 2 and resume["details"]["max_weight_diff"] == 0
    assert resume["details"]["ref_losses"] == resume["details"]["resumed_losses"]
    assert "1 graph(s), 0 break(s)" in rows["compile"]["figure"] and rows["compile"]["details"]["batch_shapes"] > 1
    beam = rows["beam_decode"]["details"]
    assert {k: v["sentences"] for k, v in beam.items()} == {f"train_{m}_beam{b}": 20 for m in ("rnn", "transformer")
                                                           for b in (5, 1)}


def test_a_broken_row_says_fail_and_the_exit_status_is_1(run):
    proc, report, md = run
    assert proc.returncode == 1, proc.stderr[-3000:]
    row = rows_of(report)[BROKEN]
    assert row["result"] == "FAIL" and row["figure"].startswith("non-finite loss at step 3 of 20")
    assert report["failed"] == [BROKEN]
    assert f"1 failed: {BROKEN}" in md and f"1 failed: {BROKEN}" in proc.stdout


def test_verdicts_of_the_train_and_compile_rows(smoke):
    falling = [4.0] * 5 + [3.0] * 5
    assert smoke.judge_train(falling, "max_steps")[0]
    assert not smoke.judge_train([4.0] * 5 + [3.9] * 5, "max_steps")[0]  # fell by less than 10 %
    assert not smoke.judge_train(falling, "max_time_s")[0]
    assert smoke.judge_train(falling[:-1] + [math.nan], "max_steps") == (False, "non-finite loss at step 10 of 10")
    assert smoke.judge_compile(1, {}, 5, [1.0])[0]
    assert not smoke.judge_compile(1, {"torch.* op returned non-Tensor": 1}, 5, [1.0])[0]
    assert not smoke.judge_compile(smoke.COMPILE_GRAPH_BOUND + 1, {}, 5, [1.0])[0]


def test_verdict_of_the_oom_row(smoke):
    line = "nmt-train: CUDA out of memory in a batch of (2000, 26) tokens: lower trainer.max_tokens or raise " \
           "trainer.accum_steps"
    assert smoke.judge_oom(1, f"[log] step 0\n{line}\n", [])[0]
    assert not smoke.judge_oom(0, f"{line}\n", [])[0]
    assert not smoke.judge_oom(1, f"Traceback (most recent call last):\n{line}\n", [])[0]
    assert not smoke.judge_oom(1, f"{line}\n", ["step_1.pt"])[0]
    assert not smoke.judge_oom(1, "torch.OutOfMemoryError: CUDA out of memory (set trainer.max_tokens)\n", [])[0]


def test_verdicts_of_the_resume_and_lstm_rows(smoke):
    cut, stopped, unlogged = smoke.CUT_STEP, "interrupted by SIGINT", smoke.CUT_STEP % smoke.LOG_EVERY
    assert smoke.judge_resume(True, 0.0, 0.0, cut, stopped, unlogged)[0]
    assert not smoke.judge_resume(True, 1e-7, 0.0, cut, stopped, unlogged)[0]  # CPU: bit-identical promised
    assert smoke.judge_resume(False, 1e-4, 1e-3, cut, stopped, unlogged)[0]  # CUDA: close is enough
    assert not smoke.judge_resume(False, 1e-1, 0.5, cut, stopped, unlogged)[0]
    assert not smoke.judge_resume(True, 0.0, 0.0, cut - 1, stopped, unlogged)[0]
    assert not smoke.judge_resume(True, 0.0, 0.0, cut, "max_steps", unlogged)[0]
    assert not smoke.judge_resume(True, 0.0, 0.0, cut, stopped, 0)[0]
    assert smoke.judge_lstm_dtypes({"_cudnn_rnn": {"torch.float32"}})[0]
    assert not smoke.judge_lstm_dtypes({"_cudnn_rnn": {"torch.float16", "torch.float32"}})[0]
    assert not smoke.judge_lstm_dtypes({})[0]


def test_wheels_script_refuses_a_folder_with_another_version(tmp_path):
    (tmp_path / "dill-0.3.9-py3-none-any.whl").write_bytes(b"")
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_wheels.sh"), str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1 and "dill-0.3.9-py3-none-any.whl is another version of dill==" in proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["dill-0.3.9-py3-none-any.whl"]  # nothing downloaded


def test_smoke_wrapper_runs_the_script_without_wheels(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_smoke.sh"), "--help"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "NMT_WHEELS": str(tmp_path)})
    assert proc.returncode == 0 and "usage: gpu_smoke.py" in proc.stdout and "installed" not in proc.stderr
