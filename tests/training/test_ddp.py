"""DDP on CPU (gloo, 2 processes) equals single-process training with the same global batch."""
import os
import subprocess
import sys

import torch
from helpers import TOY_TRAIN, tb_scalars

ARGS = [*TOY_TRAIN, "trainer.max_steps=8", "trainer.valid_every=8", "trainer.valid_max_sentences=5",
        "trainer.num_threads=1", "trainer.log_every=1"]


def train(cmd_prefix: list[str], run_dir, cache, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*cmd_prefix, *ARGS, f"run_dir={run_dir}", f"data.cache_dir={cache}", *extra],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout + proc.stderr


def test_two_gloo_ranks_match_single_process(tmp_path):
    cache = tmp_path / "cache"
    train([sys.executable, "-m", "nmt.cli.train"], tmp_path / "single", cache, "trainer.accum_steps=2")
    out = train([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
                 "-m", "nmt.cli.train"], tmp_path / "ddp", cache, "trainer.accum_steps=1")
    assert "rank 1 of 2" in out
    single, ddp = tb_scalars(tmp_path / "single", "train/loss"), tb_scalars(tmp_path / "ddp", "train/loss")
    assert sorted(single) == sorted(ddp) == list(range(1, 9))
    for step in single:
        assert abs(single[step] - ddp[step]) < 1e-4 * max(1.0, abs(single[step])), step
    a = torch.load(tmp_path / "single" / "checkpoints" / "step_8.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "ddp" / "checkpoints" / "step_8.pt", weights_only=True)["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-4, rtol=1e-3)
