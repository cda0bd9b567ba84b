"""torchrun target of test_ddp.py: nmt-train, plus a callback that saves each rank's final lr schedule and weights
to $NMT_TEST_DUMP/rank<r>.pt, and on rank $NMT_TEST_OOM_RANK a train step that runs out of device memory."""
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the nmt of this tree, not only the installed one
from nmt.cli import train as train_cli
from nmt.training import trainer as trainer_module


class Dump(trainer_module.Callbacks):
    def on_end(self, trainer):
        torch.save({"lr": trainer.optimizer.param_groups[0]["lr"], "scale": trainer.scheduler.scale,
                    "model": trainer.model.state_dict()}, Path(os.environ["NMT_TEST_DUMP"]) / f"rank{trainer.dist.rank}.pt")


def out_of_memory(*args):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


if __name__ == "__main__":
    if os.environ.get("NMT_TEST_OOM_RANK") == os.environ["RANK"]:
        trainer_module.train_step = out_of_memory
    train_cli.main([Dump()])
