"""A tiny Transformer trained for a few steps on the toy copy task: a real run directory for the CLIs."""
import pytest
import torch
from helpers import TINY_RNN, TINY_TRANSFORMER, TOY_TRAIN, compose_cfg

from helpers import train


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory):
    """(run_dir, train cfg) of a 2-layer 2-head Transformer on the toy copy task (10 steps)."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("align_run")
    cfg = compose_cfg([o for o in TOY_TRAIN if o not in TINY_RNN] + TINY_TRANSFORMER +
                      [f"run_dir={tmp / 'run'}", f"data.cache_dir={tmp / 'cache'}", "data.corpus.task=copy",
                       "trainer.max_steps=10", "trainer.valid_every=10", "trainer.num_threads=1",
                       "logger.probe_sentences=2", "logger.stats_sentences=5"])
    train(cfg)
    return tmp / "run", cfg
