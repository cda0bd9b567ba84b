"""DistributedDataParallel through torchrun: NCCL on GPU, gloo on CPU. Rank 0 validates and writes."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def agree(self, reason: str) -> str:
        """Every rank takes rank 0's stop decision ('' = go on): one small broadcast per step."""
        if self.world == 1:
            return reason
        flag = torch.tensor([1 if reason else 0], device=_device())
        dist.broadcast(flag, src=0)
        if not flag.item():
            return ""
        box = [reason]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def init_distributed(device: str) -> DistInfo:
    """Join the torchrun process group when WORLD_SIZE > 1 (multi-node via torchrun's rendezvous)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistInfo()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(dist.get_rank(), world, local)


def shutdown(info: DistInfo) -> None:
    if info.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
