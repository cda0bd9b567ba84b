"""DDP on CPU (gloo, 2 processes through torchrun): equals single-process training with the same global batch;
every rank follows rank 0's plateau schedule and hands its RNG states to the checkpoint; a rank out of memory
ends the job with the one-line error instead of hanging its peer."""
import os
import subprocess
import sys
from pathlib import Path

import torch
from helpers import TOY_TRAIN, tb_scalars

ARGS = [*TOY_TRAIN, "trainer.max_steps=8", "trainer.valid_every=8", "trainer.valid_max_sentences=5",
        "trainer.num_threads=1", "trainer.log_every=1"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]  # a free port
WORKER = str(Path(__file__).with_name("ddp_worker.py"))


def train(cmd_prefix: list[str], run_dir, cache, *extra, env: dict | None = None, code: int = 0):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run([*cmd_prefix, *ARGS, f"run_dir={run_dir}", f"data.cache_dir={cache}", *extra],
                          capture_output=True, text=True, timeout=600, env=env)
    assert (proc.returncode == 0) == (code == 0), (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout + proc.stderr


def test_two_gloo_ranks_match_single_process(tmp_path):
    cache = tmp_path / "cache"
    train([sys.executable, "-m", "nmt.cli.train"], tmp_path / "single", cache, "trainer.accum_steps=2")
    out = train([*TORCHRUN, "-m", "nmt.cli.train"], tmp_path / "ddp", cache, "trainer.accum_steps=1")
    assert "rank 1 of 2" in out
    single, ddp = tb_scalars(tmp_path / "single", "train/loss"), tb_scalars(tmp_path / "ddp", "train/loss")
    assert sorted(single) == sorted(ddp) == list(range(1, 9))
    for step in single:
        assert abs(single[step] - ddp[step]) < 1e-4 * max(1.0, abs(single[step])), step
    a = torch.load(tmp_path / "single" / "checkpoints" / "step_8.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "ddp" / "checkpoints" / "step_8.pt", weights_only=True)["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-4, rtol=1e-3)


def test_every_rank_follows_the_plateau_schedule_and_saves_its_rng(tmp_path):
    """Only rank 0 validates; with patience 0 its BLEU lowers the lr, and both ranks must lower it alike."""
    train([*TORCHRUN, WORKER], tmp_path / "ddp", tmp_path / "cache", "optim=plateau", "optim.plateau_patience=0",
          "trainer.valid_every=2", "trainer.patience=10", env={"NMT_TEST_DUMP": str(tmp_path)})
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert rank0["scale"] < 1.0, "no validation lowered the lr: the test proves nothing"
    assert (rank0["scale"], rank0["lr"]) == (rank1["scale"], rank1["lr"])
    for name, weights in rank0["model"].items():
        assert torch.equal(weights, rank1["model"][name]), f"{name} differs between the ranks"
    saved = torch.load(tmp_path / "ddp" / "checkpoints" / "step_8.pt", weights_only=True)
    assert len(saved["rng"]) == 2 and saved["scheduler"]["scale"] == rank0["scale"]


def test_a_rank_out_of_memory_ends_the_job_with_the_user_error(tmp_path):
    out = train([*TORCHRUN, WORKER], tmp_path / "ddp", tmp_path / "cache", code=1,
                env={"NMT_TEST_OOM_RANK": "1", "NMT_TEST_DUMP": str(tmp_path)})
    assert "nmt-train: out of memory on cpu in training step 1 (rank 1)" in out and "trainer.max_tokens" in out
    assert not list((tmp_path / "ddp" / "checkpoints").glob("*.pt"))
