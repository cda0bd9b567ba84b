"""Alignment losses on attention weights (supervised / guided attention), as pure functions on tensors.

The targets A (B, T, S) come from nmt.alignment.supervision.alignment_targets: row t (the decoder row that
predicts target piece t; the eos row last) is uniform over the source pieces linked to it and sums to 1;
a row with no link is all zero and adds nothing. The weights W (B, T, S) are one head of one cross slot of
the maps a forward pass with need_weights=True returns (supervised_weights). Every function returns a
*sum* over the linked rows, so a training step can normalise over a whole accumulated batch
(linked_rows(...).sum() per micro-batch, like n_tgt_tokens); align_loss is the per-batch mean. The step adds

    (weight * sum_t soft_or_hard_t + centre_weight * sum_t centre_t) / linked rows

to the translation loss (CE / target tokens): per linked target row, not per target token as Garg et al.
2019 and fairseq's transformer_align normalise (they divide by every target token, linked or not). With a
share r of the rows linked (83% of Multi30k de-en's decoder rows with the default tokenizer), our λ acts
like their λ / r (λ = 1 here ~ 1.2 there); the two weights are independent, so the centre loss trains at
weight 0 too.

    soft   (global, local-m, local-p, a Transformer head): KL(A_t || W_t) per linked row (Garg et al. 2019,
           Sec. 4; Liu et al. 2016 use the cross-entropy, which differs by the constant entropy of A)
    hard   (HardAttention's one-hot sample): log max A_t - log A_t(s*) for the sampled s*
    centre (local-p): ((p_t - c_t) / D)^2, c_t = sum_s A_t(s) s, the mean linked source position
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nmt.attention.slot import Slot

EPS = 1e-6  # inside every log: a linked piece with weight 0 costs log(1 / EPS) ~ 13.8, not infinity
KINDS = ("soft", "hard")
SLOT_CHOICES = ("penultimate", "last")  # or a cross slot's name: dec.<i>.cross, cross


@dataclass
class AlignLossSettings:
    """Mirrors trainer.align_loss in configs/trainer/*.yaml (weight 0 = off)."""
    weight: float          # λ: loss = CE / target tokens + (λ align_sum + centre_weight centre_sum) / linked rows
    slot: str              # penultimate | last | a cross slot name (dec.1.cross, cross)
    head: int              # the supervised head of that slot
    kind: str              # soft (KL, every soft type) | hard (HardAttention's sample)
    centre_weight: float   # local-p: weight of the centre loss ((p_t - c_t) / D)^2, independent of λ (0 = off)

    def __post_init__(self):
        for key in ("weight", "centre_weight"):
            if getattr(self, key) < 0:
                raise ValueError(f"trainer.align_loss.{key} must be >= 0 (0 = off), got {getattr(self, key)}")
        if self.head < 0:
            raise ValueError(f"trainer.align_loss.head must be >= 0, got {self.head}")
        if self.kind not in KINDS:
            raise ValueError(f"trainer.align_loss.kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def on(self) -> bool:
        """Supervision runs when either loss has a weight: λ (soft / hard) or local-p's centre_weight."""
        return self.weight > 0 or self.centre_weight > 0


@dataclass(frozen=True)
class AlignSpec:
    """The supervision of one model, resolved (align_spec): what nmt.training.step.train_step reads."""
    slot: Slot
    head: int
    kind: str
    weight: float
    centre_weight: float
    half_width: int | None  # D of the slot's window (local-p's centre loss), None when not windowed


def resolve_slot(setting: str, slots: list[str]) -> Slot:
    """trainer.align_loss.slot against a model's slots: penultimate (Garg et al. 2019), last, or a name."""
    cross = sorted((Slot(s) for s in slots if Slot(s).is_cross), key=lambda s: s.depth)
    if not cross:
        raise ValueError(f"trainer.align_loss: no cross-attention slot among {list(slots)}")
    if setting == "penultimate":
        return penultimate_cross(slots)
    if setting == "last":
        return cross[-1]
    if setting not in cross:
        raise ValueError(f"trainer.align_loss.slot={setting!r} is not a cross slot of this model; choose "
                         f"{' | '.join(SLOT_CHOICES)} or one of {[str(s) for s in cross]}")
    return Slot(setting)


def align_spec(settings: AlignLossSettings, model: nn.Module) -> AlignSpec | None:
    """The resolved supervision of `model` (a Seq2Seq), or None when weight and centre_weight are 0 (off).
    Raises ValueError naming trainer.align_loss.slot / head / centre_weight when the model has no such slot or
    head, or a centre weight without local-p attention in the slot."""
    modules = model.attention_modules()  # {slot: module}
    slot = resolve_slot(settings.slot, list(modules))
    heads = getattr(modules[slot], "num_heads", 1)  # single-head modules carry no num_heads
    if settings.head >= heads:
        raise ValueError(f"trainer.align_loss.head={settings.head} but slot {slot} has heads 0..{heads - 1}")
    if not settings.on:
        return None
    if settings.centre_weight > 0 and getattr(modules[slot], "window", None) != "local_p":
        raise ValueError(f"trainer.align_loss.centre_weight={settings.centre_weight} is local-p's centre loss but "
                         f"slot {slot} is not local-p attention: set trainer.align_loss.centre_weight=0 or "
                         "model/attention=local_p")
    return AlignSpec(slot, settings.head, settings.kind, settings.weight, settings.centre_weight,
                     model.attention_windows().get(slot))


def supervised_weights(maps: dict[str, Tensor], slot: str, head: int) -> Tensor:
    """The supervised head: maps {slot: (B, H, T, S)} (DecoderOutput.attention) -> (B, T, S) of `head`."""
    if slot not in maps:
        cross = [s for s in maps if Slot(s).is_cross]
        hint = ("the maps are empty: run the model with need_weights=True" if not maps else
                f"the model's cross slots are {cross}")
        raise ValueError(f"no attention map for slot {slot!r}; {hint}")
    if not Slot(slot).is_cross:
        raise ValueError(f"slot {slot!r} is not decoder->encoder attention; alignment supervision needs a cross "
                         f"slot: {[s for s in maps if Slot(s).is_cross]}")
    weights = maps[slot]  # (B, H, T, S)
    if weights.size(-1) == 0:
        raise ValueError(f"slot {slot!r} returned no weights (the fused path); run the model with need_weights=True")
    if not 0 <= head < weights.size(1):
        raise ValueError(f"head {head} of slot {slot!r}, which has heads 0..{weights.size(1) - 1}")
    return weights[:, head]  # (B, T, S)


def penultimate_cross(slots: list[str]) -> Slot:
    """Garg et al. 2019's choice: the cross slot of the penultimate decoder layer (the only one for an RNN
    decoder's "cross" or a one-layer decoder)."""
    cross = sorted((Slot(s) for s in slots if Slot(s).is_cross), key=lambda s: s.depth)
    if not cross:
        raise ValueError(f"no cross-attention slot among {list(slots)}; alignment needs decoder->encoder attention")
    return cross[-2] if len(cross) > 1 else cross[0]


def linked_rows(target: Tensor) -> Tensor:
    """target (B, T, S) -> (B, T) bool: rows with at least one link (the rows that count)."""
    return target.sum(-1) > 0


def soft_align_sum(weights: Tensor, target: Tensor) -> Tensor:
    """sum over linked rows of KL(A_t || W_t) = sum_s A log((A + EPS) / (W + EPS)): weights, target (B, T, S).

    The cross-entropy -sum A log W of Garg et al. 2019 (Sec. 4) minus the entropy of A, a constant, so the
    gradient is the same and the loss is exactly 0 when W_t = A_t. With A_t uniform over its links (as
    alignment_targets builds it) and sum_s W_t <= 1 (local-p's Gaussian-scaled rows sum to less), it is
    positive for every other W_t (Jensen). Rows without a link have A_t = 0 and add exactly 0.
    """
    w, a = weights.float(), target.float()  # (B, T, S)
    return (a * ((a + EPS).log() - (w + EPS).log())).sum()


def hard_align_sum(weights: Tensor, target: Tensor) -> Tensor:
    """sum over linked rows of log max_s A_t - sum_s W_t(s) log A_t(s): weights one-hot (B, T, S), target (B, T, S).

    HardAttention's sample s* is one-hot in W, so this is the sampled position's negative log-probability
    under the alignment distribution, shifted to be 0 when s* is a linked piece (of a uniform row) and about
    log(1 / EPS) when it is not. Its gradient reaches the scores through the straight-through relaxation that
    HardAttention's weights carry in training.
    """
    w, a = weights.float(), target.float()  # (B, T, S)
    log_a = (a + EPS).log()  # (B, T, S)
    per_row = log_a.max(-1).values - (w * log_a).sum(-1)  # (B, T)
    return (per_row * linked_rows(a)).sum()


def centre_sum(centres: Tensor, target: Tensor, half_width: int) -> Tensor:
    """sum over linked rows of ((p_t - c_t) / D)^2: centres p_t (B, T) of local-p (DecoderOutput.centres),
    target (B, T, S), D the window's half width; c_t = sum_s A_t(s) s, the mean linked source position."""
    a = target.float()  # (B, T, S)
    positions = torch.arange(a.size(-1), device=a.device, dtype=a.dtype)  # (S,)
    aligned = (a * positions).sum(-1)  # (B, T) c_t
    error = (centres.float() - aligned) / half_width  # (B, T)
    return (error.pow(2) * linked_rows(a)).sum()


def align_loss(weights: Tensor, target: Tensor, kind: str) -> Tensor:
    """The mean over this batch's linked rows of the soft or hard loss; 0 when no row has a link."""
    if kind not in KINDS:
        raise ValueError(f"trainer.align_loss.kind must be one of {KINDS}, got {kind!r}")
    total = soft_align_sum(weights, target) if kind == "soft" else hard_align_sum(weights, target)
    return total / linked_rows(target).sum().clamp(min=1)  # no host sync


def supervised_sum(spec: AlignSpec, maps: dict[str, Tensor], centres: dict[str, Tensor],
                   target: Tensor) -> tuple[Tensor, Tensor]:
    """One micro-batch's alignment sums over its linked rows: maps {slot: (B, H, T, S)} and centres {slot: (B, T)}
    of a forward with need_weights=True, target (B, T, S) (Batch.align). -> (the objective's sum, weight * align
    + centre_weight * centre; the logged sum, align + centre_weight * centre), align the soft or hard sum and
    centre local-p's centre sum (only computed when centre_weight > 0: align_spec checked the slot is local-p)."""
    weights = supervised_weights(maps, spec.slot, spec.head)  # (B, T, S)
    align = soft_align_sum(weights, target) if spec.kind == "soft" else hard_align_sum(weights, target)  # ()
    centre = torch.zeros((), device=target.device)
    if spec.centre_weight > 0:
        centre = centre_sum(centres[spec.slot], target, spec.half_width)  # ()
    return spec.weight * align + spec.centre_weight * centre, align + spec.centre_weight * centre
