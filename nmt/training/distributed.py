"""DistributedDataParallel through torchrun: NCCL on GPU, gloo on CPU. Rank 0 validates and writes; every rank
follows its decisions (stop, checkpoint, the plateau schedule's BLEU) through one small broadcast per step."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

SAVES = ("", "step", "best")  # Decision.save: none, a step checkpoint, a step checkpoint that is also best.pt


@dataclass(frozen=True)
class Decision:
    """What rank 0 decided after a step; every rank follows it (DistInfo.agree)."""
    stopped: str = ""          # '' = go on
    save: str = ""             # one of SAVES: every rank hands its RNG states to the checkpoint
    bleu: float | None = None  # the BLEU of a validation this step: every rank's plateau schedule reads it


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a torchrun job, read from torchrun's environment (dist_env)."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1   # ranks on this node; fewer than world: a multi-node run

    @property
    def main(self) -> bool:
        return self.rank == 0

    def agree(self, decision: Decision) -> Decision:
        """Every rank takes rank 0's decision: one small broadcast per step (and the stop reason's text when
        there is one)."""
        if self.world == 1:
            return decision
        bleu = math.nan if decision.bleu is None else decision.bleu
        code = torch.tensor([float(bool(decision.stopped)), SAVES.index(decision.save), bleu],
                            dtype=torch.float64, device=_device())  # (3,)
        dist.broadcast(code, src=0)
        stop, save, bleu = code.tolist()
        box = [decision.stopped]
        if stop:
            dist.broadcast_object_list(box, src=0)
        return Decision(box[0] if stop else "", SAVES[int(save)], None if math.isnan(bleu) else bleu)

    def gather(self, obj) -> list | None:
        """`obj` of every rank in rank order on rank 0, None on the others; [obj] without DDP."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world if self.main else None
        dist.gather_object(obj, out, dst=0)
        return out


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def dist_env() -> DistInfo:
    """Rank, world size and local rank as torchrun sets them (no process group is joined here)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistInfo()
    return DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")),
                    int(os.environ.get("LOCAL_WORLD_SIZE", str(world))))


def check_launch(info: DistInfo, device: str, cache_dir: str) -> None:
    """Settings a torchrun job cannot use: a ValueError naming the fix."""
    if info.world == 1:
        return
    if device.startswith("cuda:"):
        raise ValueError(f"trainer.device={device} under torchrun would put all {info.world} ranks on one GPU; "
                         "use trainer.device=cuda (rank r takes cuda:LOCAL_RANK; pick GPUs with CUDA_VISIBLE_DEVICES)")
    if info.world > info.local_world and not os.path.isabs(cache_dir):
        raise ValueError(f"data.cache_dir={cache_dir} is relative, so each node of this {info.world}-rank multi-node "
                         "job would build its own tokenizer; set data.cache_dir (or NMT_CACHE_DIR) to an absolute "
                         "path on a filesystem every node shares")


def init_distributed(info: DistInfo, device: torch.device, timeout_s: float) -> None:
    """Join torchrun's process group (multi-node via its rendezvous): NCCL with this rank's GPU made current on
    CUDA, gloo on CPU. A collective waits at most `timeout_s` for the other ranks (NCCL's own default is 10
    minutes, shorter than rank 0's validation on a large corpus)."""
    if info.world == 1:
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=timeout_s))


def shutdown(info: DistInfo) -> None:
    if info.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
