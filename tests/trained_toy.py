"""A tiny RNN that has learnt the toy copy task (500 steps, ~20 s on one core): a real run directory for
the commands that read a trained run (nmt-score, nmt-average). Trained once per pytest session."""
from __future__ import annotations

from pathlib import Path

import torch
from helpers import toy_cfg

from helpers import train

COPY_TASK = ["data.corpus.task=copy", "data.corpus.size=2000", "data.corpus.vocab=8", "data.corpus.max_len=6",
             "model.encoder.hidden_size=32", "model.decoder.hidden_size=32", "optim.schedule=constant",
             "optim.lr=0.005", "optim.label_smoothing=0.0", "trainer.max_steps=500", "trainer.valid_every=500",
             "trainer.num_threads=1", "logger.probe_sentences=0", "logger.tensorboard=false"]


def copy_task_run(tmp_path_factory) -> tuple[Path, object]:
    """(run_dir, train cfg); checkpoints/step_490.pt, step_495.pt, step_500.pt (keep_last=3, save_every=5)
    and best.pt. Shared by every test module of the session through pytest's base temp directory."""
    base = tmp_path_factory.getbasetemp() / "copy_task_run"
    cfg = toy_cfg(base / "run", base / "cache", COPY_TASK)
    if not (base / "run" / "metrics.json").is_file():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            train(cfg)
        finally:
            torch.set_num_threads(threads)
    return base / "run", cfg
