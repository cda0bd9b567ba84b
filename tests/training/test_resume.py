"""Kill -9 mid-epoch and resume: same losses and bit-identical final weights; SIGTERM exits cleanly."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import TOY_TRAIN, tb_scalars

ARGS = [*TOY_TRAIN, "trainer.valid_every=30", "trainer.valid_max_sentences=10"]


def start(run_dir: Path, cache: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "nmt.cli.train", *ARGS, f"run_dir={run_dir}", f"data.cache_dir={cache}", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return out + err  # Hydra's job logging writes to stdout


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() - t0 < timeout
        time.sleep(0.005)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_sigkill_then_resume_equals_uninterrupted(tmp_path, cache):
    finish(start(tmp_path / "ref", cache, "trainer.max_steps=60"))
    victim = start(tmp_path / "cut", cache, "trainer.max_steps=60")
    wait_for(tmp_path / "cut" / "checkpoints" / "step_15.pt", victim)
    assert victim.poll() is None, "the run finished before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    err = finish(start(tmp_path / "cut", cache, "trainer.max_steps=60", "trainer.resume=true"))
    assert "resumed from" in err
    log = (tmp_path / "cut" / "train.log").read_text()  # Hydra's log follows run_dir, and appends
    assert log.count("parameters; run dir") == 2 and "resumed from" in log
    ref = torch.load(tmp_path / "ref" / "checkpoints" / "step_60.pt", weights_only=True)
    cut = torch.load(tmp_path / "cut" / "checkpoints" / "step_60.pt", weights_only=True)
    for name, tensor in ref["model"].items():
        assert torch.equal(tensor, cut["model"][name]), name
    strip = lambda hist: [(h["step"], h["loss"], h["bleu"]) for h in hist]  # noqa: E731 (times differ)
    assert strip(ref["progress"]["history"]) == strip(cut["progress"]["history"])
    assert tb_scalars(tmp_path / "ref", "train/loss") == tb_scalars(tmp_path / "cut", "train/loss")


def test_sigterm_checkpoints_and_exits_zero(tmp_path, cache):
    proc = start(tmp_path / "run", cache, "trainer.max_steps=100000")
    wait_for(tmp_path / "run" / "checkpoints" / "step_10.pt", proc)
    proc.send_signal(signal.SIGTERM)
    err = finish(proc)
    assert "interrupted by SIGTERM" in err and "trainer.resume=true" in err
    steps = sorted(int(p.stem.split("_")[1]) for p in (tmp_path / "run" / "checkpoints").glob("step_*.pt"))
    last = torch.load(tmp_path / "run" / "checkpoints" / f"step_{steps[-1]}.pt", weights_only=True)
    assert steps[-1] >= 10 and last["progress"]["step"] == steps[-1]
    assert "interrupted" in last["progress"]["stopped"]
