"""One optimiser step, shared by the Trainer, scripts/benchmark.py and the tests."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.attention.slot import Slot
from nmt.common import HostLengths
from nmt.data.batching import Batch
from nmt.training.align_loss import AlignSpec, supervised_sum
from nmt.training.loss import label_smoothed_loss

# torch.compile: a decoder that loops over the target in Python (the RNN step decoder) is unrolled into one
# graph per target length, so under compile its batches are padded to a multiple of this many target positions:
# recompiles are bounded by the number of such length buckets (13 for data.max_len 100). Every other dimension
# (batch, source and, for a Transformer, target length) is marked dynamic: one graph serves all sizes.
TARGET_BUCKET = 8
# ... and the source to a multiple of this many positions: CUDA's memory-efficient attention kernel takes a mask
# (an additive bias) only with a 16-byte aligned row stride, so an odd source length would push every masked
# attention of the compiled (Inductor) graph onto the slow math kernel. The extra keys are masked padding.
SOURCE_BUCKET = 8
RECOMPILE_LIMIT = 32  # per code object; dynamo's default of 8 would fall back to eager after 8 buckets


@dataclass(frozen=True)
class CoverageSpec:
    """See et al.'s coverage loss of one model, resolved (coverage_spec): trainer.coverage_loss and the slot whose
    maps it reads."""
    slot: Slot
    weight: float


def coverage_spec(weight: float, model: nn.Module) -> CoverageSpec | None:
    """trainer.coverage_loss on `model` (a Seq2Seq): the decoder's last cross slot (an RNN decoder's one `cross`,
    a Transformer's dec.<L-1>.cross), or None when the weight is 0 (off). The loss reads that slot's weights,
    not an attention state, so it works with every attention type, coverage in the score or not."""
    if weight == 0:
        return None
    cross = sorted((Slot(s) for s in model.attention_modules() if Slot(s).is_cross), key=lambda s: s.depth)
    if not cross:
        raise ValueError(f"trainer.coverage_loss={weight} reads decoder->encoder attention, which this model has "
                         "none of: set trainer.coverage_loss=0")
    return CoverageSpec(cross[-1], weight)


def coverage_loss_sum(weights: Tensor, tgt_out: Tensor, pad_id: int) -> Tensor:
    """See et al. 2017, Eq. 12-13: sum over the target rows t of sum_j min(a_tj, c_tj), c_t = sum_{t'<t} a_t' the
    coverage before step t (c_1 = 0); padding rows (tgt_out == pad_id) add nothing. weights (B, H, T, S), a slot's
    maps; several heads: the mean of the heads' losses. -> () float32 sum (normalised by the caller)."""
    weights = weights.float()  # (B, H, T, S)
    before = weights.cumsum(2) - weights  # (B, H, T, S) c_t = sum_{t'<t} a_t'
    rows = torch.minimum(weights, before).sum(-1).mean(1)  # (B, T)
    return rows.masked_fill(tgt_out == pad_id, 0.0).sum()


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
    compiled: bool = False  # net is a CompiledNet: batches are bucketed and marked dynamic (compile_batch)
    align: AlignSpec | None = None  # trainer.align_loss (nmt.training.align_loss.align_spec); None = off
    coverage: CoverageSpec | None = None  # trainer.coverage_loss (coverage_spec); None = off


def micro_loss(parts: StepParts, b: Batch) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor] | None, Tensor | None]:
    """Forward one micro-batch -> (label-smoothed loss sum, NLL sum, alignment sums or None when off, coverage loss
    sum or None when off).

    With supervision on (parts.align) the forward also returns the attention maps (need_weights) and the
    sums run over the batch's linked rows (nmt.training.align_loss.supervised_sum on Batch.align: the
    objective's weighted sum and the logged one). With the coverage loss on (parts.coverage) the maps of its slot
    are returned too and coverage_loss_sum runs over the batch's target tokens."""
    supervised, covered = parts.align is not None, parts.coverage is not None
    slots = {parts.align.slot} if supervised else set()
    slots |= {parts.coverage.slot} if covered else set()
    maps = frozenset(slots) if slots else False  # the slots the losses read only: the others stay fused
    out, _ = parts.net(b.src, b.src_lengths, b.tgt_in, need_weights=maps, host_lengths=b.host)
    loss, nll = label_smoothed_loss(out.logits, b.tgt_out, parts.pad_id, parts.label_smoothing)
    cov = coverage_loss_sum(out.attention[parts.coverage.slot], b.tgt_out, parts.pad_id) if covered else None
    if not supervised:
        return loss, nll, None, cov
    if b.align is None:
        raise ValueError("trainer.align_loss is on (weight or centre_weight > 0) but the batch carries no alignment: "
                         "set data.alignment to the Pharaoh file of the training split")
    return loss, nll, supervised_sum(parts.align, out.attention, out.centres, b.align), cov


def train_step(parts: StepParts, micro: list[Batch], total: int, align_total: int = 0) -> dict[str, Tensor | bool]:
    """Forward/backward over this rank's micro-batches, clip, and update unless non-finite.

    The loss is normalised by `total`, the target tokens of the whole global batch (all ranks):
    DDP averages gradients over `world` ranks, so each rank scales by world / total and the
    update equals single-process training on the same global batch. Set the learning rate
    before calling. Returns this rank's summed loss and NLL, the gradient norm and whether the
    update was applied: all device tensors. The step makes no host sync: a non-finite loss or
    gradient reaches the fused optimizer as `found_inf` on the device, which skips the update there
    (its step count included), as torch.amp's GradScaler does; the trainer reads `applied` at its
    logging interval (tests/training/test_syncs.py counts the syncs).

    With alignment supervision (parts.align) the loss gains (align.weight * align_sum + align.centre_weight *
    centre_sum) / align_total, align_total the linked target rows of the global batch (Batch.n_align_rows,
    summed on the host like `total`), and the result carries this rank's `align_sum` (align_sum +
    centre_weight * centre_sum: before λ).

    With the coverage loss (parts.coverage) the loss gains coverage.weight * coverage_sum / total (See et al.
    2017, Eq. 13: per target token, like the translation loss), and the result carries this rank's
    `coverage_sum` (before the weight).
    """
    scale = parts.world / total
    align_scale = parts.world / max(align_total, 1)  # no linked row: the sum is 0 anyway
    align_sum = coverage_sum = torch.zeros((), device=parts.device)
    loss_sum = nll_sum = torch.zeros((), device=parts.device)
    for i, b in enumerate(micro):
        b = b.to(parts.device, non_blocking=True)
        if parts.compiled:
            b = compile_batch(b, parts.pad_id, parts.model.decoder.unrolls_target)
        sync = parts.world == 1 or i == len(micro) - 1  # all-reduce once per step
        with torch.autocast(parts.device.type, dtype=torch.bfloat16, enabled=parts.amp), \
                (contextlib.nullcontext() if sync else parts.net.no_sync()):
            loss, nll, align, cov = micro_loss(parts, b)
            objective = loss * scale
            if align is not None:
                objective = objective + align_scale * align[0]  # (λ align + centre_weight centre) / linked rows
                align_sum = align_sum + align[1].detach()
            if cov is not None:
                objective = objective + scale * parts.coverage.weight * cov  # λ covloss / target tokens
                coverage_sum = coverage_sum + cov.detach()
            objective.backward()
        loss_sum, nll_sum = loss_sum + loss.detach(), nll_sum + nll.detach()
    norm = torch.nn.utils.clip_grad_norm_(parts.model.parameters(), parts.clip_grad_norm)
    applied = torch.isfinite(norm) & torch.isfinite(loss_sum)  # () bool, on the device
    if parts.optimizer.defaults.get("fused"):
        parts.optimizer.found_inf = (~applied).float()  # 1 = skip this update, decided on the device
        parts.optimizer.step()
    elif bool(applied):  # an optimizer without found_inf (a caller's own): one host sync
        parts.optimizer.step()
    parts.optimizer.zero_grad(set_to_none=True)
    out = {"loss_sum": loss_sum, "nll_sum": nll_sum, "grad_norm": norm, "applied": applied}
    if parts.coverage is not None:
        out["coverage_sum"] = coverage_sum
    return out if parts.align is None else {**out, "align_sum": align_sum}


class CompiledNet(nn.Module):
    """torch.compile(net) called under the dynamo settings this project's models need: LSTM/GRU modules traced
    (dynamo's allow_rnn; otherwise every RNN decoder step is a graph break) and room for one graph per target
    bucket (RECOMPILE_LIMIT). The compiled module is built once; state stays in `net` (nothing is copied)."""

    def __init__(self, net: nn.Module, backend: str = "inductor"):
        super().__init__()
        self.compiled = torch.compile(net, backend=backend)

    def forward(self, *args, **kwargs):
        with torch._dynamo.config.patch(allow_rnn=True, recompile_limit=RECOMPILE_LIMIT):
            return self.compiled(*args, **kwargs)

    def no_sync(self):
        """DDP's no_sync of the wrapped module (gradient accumulation)."""
        return self.compiled.no_sync()


def compile_batch(b: Batch, pad_id: int, unrolls_target: bool) -> Batch:
    """The batch as the compiled net sees it: the source padded to a multiple of SOURCE_BUCKET (masked keys:
    the outputs are unchanged; this also keeps a one-token source, whose size 1 dynamo would specialise, out),
    the target to a multiple of TARGET_BUCKET when the decoder unrolls a loop over it (pad labels add nothing
    to the loss), and batch, source and (otherwise) target lengths marked dynamic, so that one graph serves
    them all."""
    src, tgt_in, tgt_out, align = b.src, b.tgt_in, b.tgt_out, b.align  # (B, S), (B, T), (B, T, S) or None
    extra_s, extra_t, host = -src.size(1) % SOURCE_BUCKET, 0, b.host
    src = F.pad(src, (0, extra_s), value=pad_id)  # (B, S + extra_s)
    if host is not None:  # the compiled graph always takes the (aligned) mask: one graph, padded or not
        host = HostLengths(host.lengths, padded=True)
    if unrolls_target:
        extra_t = -tgt_in.size(1) % TARGET_BUCKET
        tgt_in, tgt_out = (F.pad(t, (0, extra_t), value=pad_id) for t in (tgt_in, tgt_out))  # (B, T + extra_t)
    if align is not None:  # padded rows and columns carry no link: they add nothing to the alignment loss
        align = F.pad(align, (0, extra_s, 0, extra_t))  # (B, T + extra_t, S + extra_s)
    b = replace(b, src=src, tgt_in=tgt_in, tgt_out=tgt_out, align=align, host=host)
    for t in (b.src, b.src_lengths, b.tgt_in, b.tgt_out, *([] if align is None else [align]),
              *([] if host is None else [host.lengths])):
        torch._dynamo.maybe_mark_dynamic(t, 0)  # B
    for t in (b.src, *([] if align is None else [align])):
        torch._dynamo.maybe_mark_dynamic(t, t.dim() - 1)  # S
    if not unrolls_target:
        for t in (b.tgt_in, b.tgt_out, *([] if align is None else [align])):
            torch._dynamo.maybe_mark_dynamic(t, 1)  # T
    return b
