"""Supervised alignment in training (trainer.align_loss, data.alignment): off is bit-identical to training without
a file, supervision teaches the supervised slot the given alignment, the step weighs the losses by λ and
centre_weight and normalises them per linked row, a bad file fails before the run dir exists, and a short
supervised run logs train/align_loss through the whole pipeline (prefetch thread included)."""
import copy
import json

import numpy as np
import pytest
import torch
from helpers import PAD, TINY_TRANSFORMER, compose_cfg, pad_batch, tb_scalars, tiny_model, toy_cfg, train
from omegaconf import OmegaConf

from nmt.alignment.aer import aer_scores
from nmt.alignment.links import AlignmentFileError, GoldAlignment
from nmt.alignment.supervision import split_lines
from nmt.cli.resume import resume_config
from nmt.cli.train import prepare, run_settings
from nmt.data.align_rows import alignment_targets, linked_row_count
from nmt.data.batching import Batch
from nmt.models.build import build_corpus
from nmt.runs import checkpoint as ckpt
from nmt.runs.config import RunConfig
from nmt.runs.run_dir import RunDirError
from nmt.training.align_loss import EPS, AlignLossSettings, align_spec, centre_sum
from nmt.training.loss import label_smoothed_loss
from nmt.training.step import StepParts, compile_batch, train_step

COPY = ["data.corpus.task=copy"]


def diagonal_file(tmp_path, cfg, bad_line: int | None = None, drop_last: bool = False):
    """The copy task's alignment as a 0-based Pharaoh file (word i of the target is word i of the source)."""
    src, _ = split_lines(build_corpus(cfg.data.corpus), "train")
    lines = [" ".join(f"{i}-{i}" for i in range(len(s.split()))) for s in src]
    if bad_line is not None:
        lines[bad_line - 1] += " 40-0"  # beyond every toy sentence (12 words at most)
    if drop_last:
        lines = lines[:-1]
    path = tmp_path / "copy.align"
    path.write_text("\n".join(lines) + "\n")
    return path


def last_weights(run_dir):
    return ckpt.load_latest(run_dir / "checkpoints")[1]["model"]


def test_supervision_off_is_bit_identical_to_no_alignment_file(tmp_path):
    base = toy_cfg(tmp_path / "unused", tmp_path / "cache", COPY)
    path = diagonal_file(tmp_path, base)
    common = [*COPY, "trainer.max_steps=6", "trainer.align_loss.weight=0.0"]
    train(toy_cfg(tmp_path / "plain", tmp_path / "cache", common))
    train(toy_cfg(tmp_path / "file", tmp_path / "cache", [*common, f"data.alignment={path}"]))
    plain, with_file = last_weights(tmp_path / "plain"), last_weights(tmp_path / "file")
    assert plain.keys() == with_file.keys()
    assert all(torch.equal(plain[k], with_file[k]) for k in plain)


@pytest.mark.parametrize("weights", [["trainer.align_loss.weight=1.0"],
                                     ["model/attention=local_p", "trainer.align_loss.centre_weight=1.0"]])
def test_a_supervised_run_logs_the_alignment_loss(tmp_path, weights):
    """λ alone, or local-p's centre loss alone (λ = 0): either turns supervision on in nmt-train."""
    base = toy_cfg(tmp_path / "unused", tmp_path / "cache", COPY)
    path = diagonal_file(tmp_path, base)
    run = tmp_path / "run"
    metrics = train(toy_cfg(run, tmp_path / "cache", [*COPY, "trainer.max_steps=4", f"data.alignment={path}",
                                                      *weights, "trainer.prefetch=2"]))
    logged = tb_scalars(run, "train/align_loss")
    assert sorted(logged) == [2, 4] and all(v > 0 for v in logged.values())
    assert metrics["train_align_loss"] == pytest.approx(logged[4])
    assert json.loads((run / "metrics.json").read_text())["train_align_loss"] == metrics["train_align_loss"]


@pytest.mark.parametrize("bad,message", [({"bad_line": 7}, r"copy.align, line 7: link 40-0 is beyond"),
                                         ({"drop_last": True}, r"299 lines for 300 sentence pairs")])
def test_a_bad_alignment_file_fails_before_the_run_dir_exists(tmp_path, bad, message):
    path = diagonal_file(tmp_path, toy_cfg(tmp_path / "unused", tmp_path / "cache", COPY), **bad)
    run = tmp_path / "run"
    args = ["data=toy", "data.corpus.size=300", *COPY, f"run_dir={run}", f"data.cache_dir={tmp_path / 'cache'}",
            f"data.alignment={path}", "trainer=cpu"]
    with pytest.raises(AlignmentFileError, match=message):
        prepare(args)
    assert not run.exists()


def test_weight_without_a_file_and_a_missing_head_name_their_keys(tmp_path):
    with pytest.raises(ValueError, match=r"trainer.align_loss.weight=1.0 / centre_weight=0.0 needs data.alignment"):
        run_settings(toy_cfg(tmp_path / "run", tmp_path / "cache", ["trainer.align_loss.weight=1.0"]))
    local_p = ["model/attention=local_p", "trainer.align_loss.centre_weight=1.0"]  # the centre loss alone
    with pytest.raises(ValueError, match=r"weight=0.0 / centre_weight=1.0 needs data.alignment"):
        run_settings(toy_cfg(tmp_path / "run", tmp_path / "cache", local_p))
    with pytest.raises(ValueError, match=r"trainer.align_loss.head=1 but slot cross has heads 0..0"):
        run_settings(toy_cfg(tmp_path / "run", tmp_path / "cache", ["trainer.align_loss.head=1"]))
    with pytest.raises(ValueError, match=r"trainer.align_loss.slot='dec.5.cross' is not a cross slot"):
        run_settings(toy_cfg(tmp_path / "run", tmp_path / "cache", ["trainer.align_loss.slot=dec.5.cross"]))
    with pytest.raises(ValueError, match=r"trainer.align_loss.kind must be one of"):
        run_settings(toy_cfg(tmp_path / "run", tmp_path / "cache", ["trainer.align_loss.kind=sharp"]))
    assert not (tmp_path / "run").exists()


def copy_batch(n: int = 32, seed: int = 0) -> Batch:
    """A copy task on word ids with its diagonal alignment: row t (predicting y_t) is linked to source t."""
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(4, 30, size=int(rng.integers(4, 9))).tolist() for _ in range(n)]
    src, src_len = pad_batch(seqs)
    tgt_in, _ = pad_batch(seqs, bos=True)
    tgt_out, _ = pad_batch(seqs, eos=True)
    links = [np.stack([np.arange(len(s)), np.arange(len(s))], 1) for s in seqs]  # (L, 2) rows (t, s)
    align = alignment_targets(links, tgt_out.size(1), src.size(1))  # (B, T, S)
    return Batch(src, src_len, tgt_in, tgt_out, torch.arange(n), int((tgt_out != PAD).sum()), align,
                 linked_row_count(links))


def two_link_batch(n: int = 6) -> Batch:
    """copy_batch, but target row t is linked to source pieces t and t + 1 (where it exists): more links than
    linked rows, so a normaliser that counts links is told apart from one that counts rows."""
    batch = copy_batch(n, seed=3)
    links = [np.array([(t, s) for t in range(int(n_src)) for s in (t, t + 1) if s < n_src])
             for n_src in batch.src_lengths.tolist()]
    align = alignment_targets(links, batch.tgt_out.size(1), batch.src.size(1))  # (B, T, S)
    return Batch(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.indices, batch.n_tgt_tokens,
                 align, linked_row_count(links))


def expected_gradients(model, batch: Batch, weight: float, centre_weight: float) -> dict:
    """Gradients of CE / target tokens + (weight * KL + centre_weight * centre) / linked rows, the linked rows
    counted here from the targets and the KL written out: the step's objective, computed apart from it."""
    model = copy.deepcopy(model)
    out, _ = model(batch.src, batch.src_lengths, batch.tgt_in, need_weights=True)
    ce, _ = label_smoothed_loss(out.logits, batch.tgt_out, PAD, 0.0)
    A, W = batch.align, out.attention["cross"][:, 0]  # (B, T, S) each
    rows = int((A.sum(-1) > 0).sum())
    kl = (A * torch.log((A + EPS) / (W + EPS))).sum()
    centre = centre_sum(out.centres["cross"], A, model.attention_windows()["cross"])
    (ce / batch.n_tgt_tokens + (weight * kl + centre_weight * centre) / rows).backward()
    return {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("weight, centre_weight", [(0.5, 0.0), (0.5, 0.3), (0.0, 0.3)])
def test_the_step_weighs_each_loss_and_normalises_per_linked_row(weight, centre_weight):
    """One SGD step (lr 1, no clipping) moves every parameter by minus the gradient of the objective above; at
    weight 0 the centre loss still trains (centre_weight is not silenced by λ)."""
    torch.manual_seed(0)
    model = tiny_model(["model/attention=local_p"])
    batch = two_link_batch()
    assert batch.n_align_rows == int((batch.align.sum(-1) > 0).sum()) < int((batch.align > 0).sum())
    expected = expected_gradients(model, batch, weight, centre_weight)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    spec = align_spec(AlignLossSettings(weight, "penultimate", 0, "soft", centre_weight), model)
    parts = StepParts(model, model, torch.optim.SGD(model.parameters(), lr=1.0), PAD, 0.0, 1e9, False,
                      torch.device("cpu"), 1, align=spec)
    out = train_step(parts, [batch], batch.n_tgt_tokens, batch.n_align_rows)
    for name, p in model.named_parameters():
        grad = expected[name] if expected[name] is not None else torch.zeros_like(p)
        torch.testing.assert_close(before[name] - p.detach(), grad, atol=1e-6, rtol=1e-4, msg=name)
    assert out["align_sum"] > 0


def test_centre_weight_needs_local_p_and_zero_weights_are_off():
    rnn = tiny_model([])  # Luong general attention: no centres
    assert align_spec(AlignLossSettings(0.0, "penultimate", 0, "soft", 0.0), rnn) is None
    with pytest.raises(ValueError, match=r"centre_weight=0.5 is local-p's centre loss but slot cross is not local-p"):
        align_spec(AlignLossSettings(1.0, "penultimate", 0, "soft", 0.5), rnn)
    spec = align_spec(AlignLossSettings(0.0, "penultimate", 0, "soft", 0.5), tiny_model(["model/attention=local_p"]))
    assert (spec.weight, spec.centre_weight, spec.half_width) == (0.0, 0.5, 10)


def copy_aer(model, batch: Batch, slot: str) -> float:
    """AER of the arg-max alignment of `slot` (head 0) on the batch's target words against the diagonal."""
    model.eval()
    with torch.no_grad():
        out, _ = model(batch.src, batch.src_lengths, batch.tgt_in, need_weights=True)
    model.train()
    weights = out.attention[slot][:, 0]  # (B, T, S)
    predicted, golds = [], []
    for b, n in enumerate(batch.src_lengths.tolist()):
        predicted.append({(int(weights[b, t].argmax()), t) for t in range(n)})
        golds.append(GoldAlignment(sure={(t, t) for t in range(n)}, possible={(t, t) for t in range(n)}))
    return aer_scores(predicted, golds)["aer"]


@pytest.mark.parametrize("base", [[], TINY_TRANSFORMER], ids=["rnn", "transformer"])
def test_supervision_teaches_the_copy_alignment_faster(base):
    """The same model, data and 50 steps: with the loss the supervised slot aligns the copy task (AER near 0),
    without it not yet."""
    batch = copy_batch(24)
    aer = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        model = tiny_model([], base=base) if base else tiny_model([])
        spec = align_spec(AlignLossSettings(weight, "penultimate", 0, "soft", 0.0), model)
        parts = StepParts(model, model, torch.optim.Adam(model.parameters(), lr=0.01), PAD, 0.0, 1.0, False,
                          torch.device("cpu"), 1, align=spec)
        for _ in range(50):
            out = train_step(parts, [batch], batch.n_tgt_tokens, batch.n_align_rows)
        slot = spec.slot if spec else align_spec(AlignLossSettings(1.0, "penultimate", 0, "soft", 0.0), model).slot
        aer[weight] = copy_aer(model, batch, slot)
        assert ("align_sum" in out) == (weight > 0)
    assert aer[1.0] < 0.05 and aer[0.0] > 0.3, aer


def test_compile_batch_pads_the_alignment_with_the_target():
    batch = copy_batch(4)
    padded = compile_batch(batch, PAD, unrolls_target=True)
    assert padded.align.shape == (*padded.tgt_out.shape, padded.src.size(1))
    T, S = batch.align.shape[1:]
    assert torch.equal(padded.align[:, :T, :S], batch.align) and padded.align[:, T:].sum() == 0
    assert padded.tgt_out.size(1) % 8 == 0


@pytest.mark.parametrize("override", ["trainer.align_loss.weight=0.5", "data.alignment=/elsewhere.align"])
def test_a_resume_may_not_change_the_supervision(tmp_path, override):
    stored = OmegaConf.create(OmegaConf.to_container(compose_cfg([f"run_dir={tmp_path}"]), resolve=True))
    args = ["trainer.resume=true", f"run_dir={tmp_path}", override]
    with pytest.raises(RunDirError, match=override.split("=")[0]):
        resume_config(stored, compose_cfg([]), compose_cfg(args), [a.split("=")[0] for a in args])


def test_a_run_stored_before_supervision_reads_back_without_it(tmp_path):
    values = OmegaConf.to_container(compose_cfg([f"run_dir={tmp_path}"]), resolve=True)
    del values["data"]["alignment"]
    assert RunConfig(values).data.alignment is None

