"""See et al. 2017's coverage loss (Eq. 12-13): the sum by hand, the step's objective and its gradient, the slot it
reads, the setting's checks, its TensorBoard scalar and an exact resume (nmt.training.step, TrainSettings,
nmt.cli.resume)."""
import copy

import pytest
import torch
from helpers import PAD, TINY_TRANSFORMER, compose_cfg, pad_batch, tb_scalars, tiny_model, toy_cfg, train
from omegaconf import OmegaConf

from nmt.cli.resume import resume_config
from nmt.data.batching import Batch
from nmt.runs.run_dir import RunDirError
from nmt.training.step import CoverageSpec, StepParts, coverage_loss_sum, coverage_spec, train_step
from nmt.training.trainer import TrainSettings


def test_the_coverage_loss_by_hand():
    """a_1 = (.7, .3), a_2 = (.4, .6), a_3 = (.5, .5): row 1 costs 0 (c_1 = 0), row 2 min(.4, .7) + min(.6, .3)
    = .7, row 3 (c_3 = (1.1, .9)) .5 + .5 = 1; a padded row 3 costs nothing; a second head's loss is averaged."""
    a = torch.tensor([[0.7, 0.3], [0.4, 0.6], [0.5, 0.5]]).view(1, 1, 3, 2)  # (B, H, T, S)
    tgt = torch.tensor([[5, 6, 7]])
    assert coverage_loss_sum(a, tgt, PAD).item() == pytest.approx(1.7)
    assert coverage_loss_sum(a, torch.tensor([[5, 6, PAD]]), PAD).item() == pytest.approx(0.7)
    flat = torch.tensor([[0.5, 0.5]] * 3).view(1, 1, 3, 2)  # rows 2, 3: .5 + .5 and .5 + .5
    assert coverage_loss_sum(torch.cat([a, flat], 1), tgt, PAD).item() == pytest.approx((1.7 + 2.0) / 2)


def toy_batch() -> Batch:
    g = torch.Generator().manual_seed(2)
    srcs = [torch.randint(4, 16, (k,), generator=g).tolist() for k in (5, 3)]
    tgts = [torch.randint(4, 16, (k,), generator=g).tolist() for k in (4, 2)]
    src, src_len = pad_batch(srcs, eos=True)
    tgt_out = pad_batch(tgts, eos=True)[0]
    return Batch(src, src_len, pad_batch(tgts, bos=True)[0], tgt_out, torch.arange(2), int((tgt_out != PAD).sum()))


def sgd_step(model, batch: Batch, weight: float) -> dict:
    parts = StepParts(model, model, torch.optim.SGD(model.parameters(), lr=1.0), PAD, 0.0, 1e9, False,
                      torch.device("cpu"), 1, coverage=coverage_spec(weight, model))
    return train_step(parts, [batch], batch.n_tgt_tokens)


def test_the_step_adds_weight_times_the_loss_per_target_token():
    """One SGD step (lr 1) with weight 0.5 moves every parameter by -0.5 grad(covloss sum / target tokens) more
    than a step without; the step returns the unweighted sum."""
    batch, model = toy_batch(), tiny_model(["model/attention=coverage"], 16, 16).train()
    plain, covered = copy.deepcopy(model), copy.deepcopy(model)
    out, _ = model(batch.src, batch.src_lengths, batch.tgt_in, need_weights=True)
    cov = coverage_loss_sum(out.attention["cross"], batch.tgt_out, PAD)
    (cov / batch.n_tgt_tokens).backward()
    assert "coverage_sum" not in sgd_step(plain, batch, 0.0)
    result = sgd_step(covered, batch, 0.5)
    assert result["coverage_sum"].item() == pytest.approx(cov.item(), rel=1e-5)
    for (name, p), q, r in zip(model.named_parameters(), plain.parameters(), covered.parameters()):
        grad = torch.zeros_like(p) if p.grad is None else p.grad  # the generator does not move the weights
        torch.testing.assert_close(r - q, -0.5 * grad, atol=1e-5, rtol=1e-4, msg=name)
    assert model.decoder.attention.coverage.V.weight.grad.abs().sum() > 0


def test_the_loss_reads_the_last_cross_slot_and_any_rnn_attention():
    assert coverage_spec(0.0, tiny_model([])) is None
    assert coverage_spec(0.3, tiny_model(["model/attention=luong_general"])) == CoverageSpec("cross", 0.3)
    assert coverage_spec(1.0, tiny_model([], base=TINY_TRANSFORMER)).slot == "dec.1.cross"


def test_train_settings_refuse_a_negative_weight():
    trainer = OmegaConf.to_container(compose_cfg([]).trainer)
    assert trainer["coverage_loss"] == 0.0  # off unless asked for
    with pytest.raises(ValueError, match=r"trainer.coverage_loss must be >= 0 \(0 = off\), got -0.1"):
        TrainSettings(**{**trainer, "coverage_loss": -0.1})


def test_a_resume_keeps_the_runs_coverage_loss(tmp_path):
    """The weight changes the objective: a resume refuses a new one; a run stored before the setting existed
    resumes with 0, as it was trained."""
    stored = OmegaConf.create(OmegaConf.to_container(compose_cfg(["trainer.coverage_loss=0.5", f"run_dir={tmp_path}"]),
                                                     resolve=True))
    args = ["trainer.resume=true", f"run_dir={tmp_path}", "trainer.coverage_loss=1.0"]
    with pytest.raises(RunDirError, match=r"trainer.coverage_loss: 0.5 \(run\) vs 1.0 \(given\)"):
        resume_config(stored, compose_cfg([]), compose_cfg(args), [a.split("=")[0] for a in args])
    del stored.trainer["coverage_loss"]
    out = resume_config(stored, compose_cfg([]), compose_cfg(args[:2]), ["trainer.resume", "run_dir"])
    assert out.trainer.coverage_loss == 0.0


def test_a_coverage_run_logs_its_loss_and_resumes_exactly(tmp_path):
    """nmt-train model/attention=coverage trainer.coverage_loss=1 on the toy task: train/coverage_loss is logged;
    4 steps at once equal 2 steps and a resume to 4 (weights and logged losses)."""
    run = ["model/attention=coverage", "trainer.coverage_loss=1.0", "trainer.save_every=2", "trainer.log_every=1",
           "trainer.valid_max_sentences=2", "data.corpus.size=60", "data.corpus.eval_size=2", "decode.beam_size=1",
           "trainer.prefetch=0"]
    cache = tmp_path / "cache"
    for run_dir, legs in ((tmp_path / "ref", [4]), (tmp_path / "cut", [2, 4])):
        for i, steps in enumerate(legs):
            train(toy_cfg(run_dir, cache, [*run, f"trainer.max_steps={steps}", f"trainer.resume={i > 0}"]))
    ref, cut = (torch.load(tmp_path / d / "checkpoints" / "step_4.pt", weights_only=True)["model"] for d in ("ref", "cut"))
    assert all(torch.equal(t, cut[k]) for k, t in ref.items())
    losses = tb_scalars(tmp_path / "ref", "train/coverage_loss")
    assert sorted(losses) == [1, 2, 3, 4] and all(v > 0 for v in losses.values())
    assert tb_scalars(tmp_path / "cut", "train/coverage_loss") == losses
