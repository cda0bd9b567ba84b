"""The learning-rate schedule against its formula: linear warmup, then lr * sqrt(warmup / step)."""
import math

import pytest
import torch

from nmt.training.optim import OptimSettings, Scheduler

LR, WARMUP, MIN_LR = 0.002, 400, 1e-5


def settings(schedule: str, warmup: int = WARMUP, min_lr: float = MIN_LR) -> OptimSettings:
    return OptimSettings(name="adam", lr=LR, betas=[0.9, 0.98], eps=1e-9, weight_decay=0.0, schedule=schedule,
                         warmup_steps=warmup, plateau_factor=0.5, plateau_patience=1, min_lr=min_lr,
                         clip_grad_norm=1.0, label_smoothing=0.1)


def scheduler(s: OptimSettings) -> tuple[Scheduler, torch.optim.Optimizer]:
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=s.lr)
    return Scheduler(opt, s), opt


def inverse_sqrt(step: int) -> float:
    """Vaswani et al. 2017, Eq. 3 in shape, peak LR at step == WARMUP, floor MIN_LR after warmup."""
    if step < WARMUP:
        return LR * step / WARMUP
    return max(LR * math.sqrt(WARMUP / step), MIN_LR)


@pytest.mark.parametrize("step", [1, 2, 100, 399, 400, 401, 1600, 10_000, 100_000_000])
def test_inverse_sqrt_follows_its_formula(step):
    sched, opt = scheduler(settings("inverse_sqrt"))
    lr = sched.step(step)
    assert lr == pytest.approx(inverse_sqrt(step), rel=1e-12)
    assert opt.param_groups[0]["lr"] == lr


def test_inverse_sqrt_peaks_at_warmup_and_halves_at_four_times_warmup():
    sched, _ = scheduler(settings("inverse_sqrt"))
    assert sched.step(WARMUP) == pytest.approx(LR)
    assert sched.step(4 * WARMUP) == pytest.approx(LR / 2)
    assert sched.step(WARMUP - 1) < LR and sched.step(WARMUP + 1) < LR


@pytest.mark.parametrize("step", [1, 200, 400, 5000])
def test_constant_after_warmup(step):
    sched, _ = scheduler(settings("constant"))
    assert sched.step(step) == pytest.approx(LR * min(step / WARMUP, 1.0))


def test_plateau_halves_after_patience_bad_validations():
    sched, _ = scheduler(settings("plateau", warmup=0, min_lr=0.0))
    for bleu, expected in [(10.0, LR), (9.0, LR), (8.0, LR / 2), (7.0, LR / 2), (6.0, LR / 4), (20.0, LR / 4)]:
        sched.validation(bleu)
        assert sched.step(50) == pytest.approx(expected)


def test_plateau_state_survives_a_resume():
    """A resumed run's scheduler (state_dict -> load_state_dict) keeps the lr scale, best BLEU and bad count:
    its lr and its next reductions equal the uninterrupted run's."""
    s = settings("plateau", warmup=0, min_lr=0.0)
    sched, _ = scheduler(s)
    for bleu in (10.0, 9.0, 8.0, 7.0, 6.0, 5.0):  # two reductions (LR / 4), then one bad validation pending
        sched.validation(bleu)
    resumed, opt = scheduler(s)
    resumed.load_state_dict(sched.state_dict())
    assert resumed.step(50) == pytest.approx(LR / 4) and opt.param_groups[0]["lr"] == pytest.approx(LR / 4)
    for bleu, expected in [(4.0, LR / 8), (21.0, LR / 8), (3.0, LR / 8), (2.0, LR / 16)]:
        sched.validation(bleu)
        resumed.validation(bleu)
        assert resumed.step(50) == pytest.approx(expected) == sched.step(50)
