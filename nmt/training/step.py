"""One optimiser step, shared by the Trainer, scripts/benchmark.py and the tests."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nmt.data.batching import Batch
from nmt.training.loss import label_smoothed_loss


@dataclass
class StepParts:
    """What a training step needs. `net` runs forward/backward (the model, or its DDP / compiled
    wrapper); `model` is the plain module whose gradients are clipped."""
    net: nn.Module
    model: nn.Module
    optimizer: torch.optim.Optimizer
    pad_id: int
    label_smoothing: float
    clip_grad_norm: float
    amp: bool               # bf16 autocast
    device: torch.device
    world: int              # DDP ranks (1 = single process)


def train_step(parts: StepParts, micro: list[Batch], total: int) -> dict[str, Tensor | bool]:
    """Forward/backward over this rank's micro-batches, clip, and update unless non-finite.

    The loss is normalised by `total`, the target tokens of the whole global batch (all ranks):
    DDP averages gradients over `world` ranks, so each rank scales by world / total and the
    update equals single-process training on the same global batch. Set the learning rate
    before calling. Returns this rank's summed loss and NLL, the gradient norm and whether the
    update was applied: all device tensors. The step makes no host sync: a non-finite loss or
    gradient reaches the fused optimizer as `found_inf` on the device, which skips the update there
    (its step count included), as torch.amp's GradScaler does; the trainer reads `applied` at its
    logging interval (tests/training/test_syncs.py counts the syncs).
    """
    scale = parts.world / total
    loss_sum = nll_sum = torch.zeros((), device=parts.device)
    for i, b in enumerate(micro):
        b = b.to(parts.device, non_blocking=True)
        sync = parts.world == 1 or i == len(micro) - 1  # all-reduce once per step
        with torch.autocast(parts.device.type, dtype=torch.bfloat16, enabled=parts.amp), \
                (contextlib.nullcontext() if sync else parts.net.no_sync()):
            out, _ = parts.net(b.src, b.src_lengths, b.tgt_in)
            loss, nll = label_smoothed_loss(out.logits, b.tgt_out, parts.pad_id, parts.label_smoothing)
            (loss * scale).backward()
        loss_sum, nll_sum = loss_sum + loss.detach(), nll_sum + nll.detach()
    norm = torch.nn.utils.clip_grad_norm_(parts.model.parameters(), parts.clip_grad_norm)
    applied = torch.isfinite(norm) & torch.isfinite(loss_sum)  # () bool, on the device
    if parts.optimizer.defaults.get("fused"):
        parts.optimizer.found_inf = (~applied).float()  # 1 = skip this update, decided on the device
        parts.optimizer.step()
    elif bool(applied):  # an optimizer without found_inf (a caller's own): one host sync
        parts.optimizer.step()
    parts.optimizer.zero_grad(set_to_none=True)
    return {"loss_sum": loss_sum, "nll_sum": nll_sum, "grad_norm": norm, "applied": applied}
