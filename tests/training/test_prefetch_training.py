"""The trainer with trainer.prefetch on: a checkpoint written mid-epoch holds the data position of the
batches trained on (not of those the thread built ahead), and an error or Ctrl-C inside a step leaves
no prefetch thread behind. Exact resume with prefetch on: test_resume.py (SIGKILL), test_exact_resume.py."""
import threading

import pytest
import torch
from helpers import toy_cfg, train

from nmt.training.trainer import Callbacks


class FailAtStep(Callbacks):
    def __init__(self, error: type[BaseException]):
        self.error = error

    def on_step(self, trainer, result):
        assert trainer.batches.worker is not None, "trainer.prefetch=2 should build batches in a thread"
        if trainer.progress.step == 2:
            raise self.error("step 2 failed")


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_an_error_inside_a_step_stops_the_prefetch_thread(tmp_path, error):
    cfg = toy_cfg(tmp_path / "run", tmp_path / "cache", ["trainer.prefetch=2", "trainer.max_steps=5",
                                                          "trainer.num_threads=1"])
    with pytest.raises(error, match="step 2 failed") as caught:
        train(cfg, callbacks=[FailAtStep(error)])
    assert caught.traceback[-1].name == "on_step"  # raised in the step; its frames are still alive here
    assert not [t for t in threading.enumerate() if t.name == "nmt-prefetch"]


def test_a_mid_epoch_checkpoint_holds_the_position_of_the_batches_trained_on(tmp_path):
    cfg = toy_cfg(tmp_path / "run", tmp_path / "cache", ["trainer.prefetch=3", "trainer.max_steps=5",
                                                          "trainer.save_every=2", "trainer.num_threads=1"])
    train(cfg)
    for step in (2, 4):  # written inside the loop, while the thread was up to 3 batches ahead
        state = torch.load(tmp_path / "run" / "checkpoints" / f"step_{step}.pt", weights_only=True)
        assert state["sampler"] == {"epoch": 0, "position": step}
