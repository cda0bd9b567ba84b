"""A training step makes no host sync (issue: GPU-ready, proven on CPU). Counted with a TorchDispatchMode:
the ops that force a device->host read or have data-dependent shapes, plus the Python-level reads
(.item(), .tolist(), .cpu(), .numpy()), inside one train_step of the default RNN, local-p, hard attention
and the Transformer. The RNN encoder's packing needs its lengths on the host: it takes them from the batch
(Batch.host, built by the collator: tests/data/test_host_lengths.py), so not even that costs a .cpu()."""
import pytest
import torch
from helpers import TINY_RNN, TINY_TRANSFORMER, compose_cfg, tiny_model
from sync_counter import SyncCounter
from omegaconf import OmegaConf

from nmt.data.batching import collate
from nmt.training.optim import OptimSettings, build_optimizer
from nmt.training.step import StepParts, train_step

def step_parts(overrides, base):
    model = tiny_model(overrides, base=base)
    optim = OptimSettings(**OmegaConf.to_container(compose_cfg([]).optim, resolve=True))
    return StepParts(model, model, build_optimizer(model, optim, torch.device("cpu")), 0, 0.1, 1.0, False,
                     torch.device("cpu"), 1)


BATCH = collate([[5, 6, 7, 8], [9, 10]], [[5, 6], [7, 8, 9]], [0, 1], 0, 1, 2)
ALLOWED = {"rnn": {}, "transformer": {}}


@pytest.mark.parametrize("name, overrides, base", [
    ("rnn", [], TINY_RNN), ("rnn", ["model/attention=local_p"], TINY_RNN),
    ("rnn", ["model/attention=hard"], TINY_RNN), ("transformer", [], TINY_TRANSFORMER)],
    ids=["default_rnn", "local_p", "hard", "transformer"])
def test_a_training_step_makes_no_host_sync(name, overrides, base):
    parts = step_parts(overrides, base)
    train_step(parts, [BATCH], 5)  # the optimizer's state exists from here on
    with SyncCounter() as counter:
        out = train_step(parts, [BATCH], 5)
    assert dict(counter.counts) == ALLOWED[name]
    assert bool(out["applied"])  # read after the step, as the trainer does at its logging interval


def test_the_counter_sees_an_item_added_to_the_step():
    parts = step_parts([], TINY_TRANSFORMER)
    with SyncCounter() as counter:
        out = train_step(parts, [BATCH], 5)
        float(out["loss_sum"])  # what a `.item()` in the step would cost
        out["nll_sum"].item()
    assert counter.counts["_local_scalar_dense"] == 2 and counter.counts[".item()"] == 1


def test_a_non_finite_step_is_skipped_on_the_device(monkeypatch):
    from nmt.training.loss import label_smoothed_loss
    parts = step_parts([], TINY_TRANSFORMER)
    train_step(parts, [BATCH], 5)
    before = {k: v.clone() for k, v in parts.model.state_dict().items()}
    steps = [s["step"].clone() for s in parts.optimizer.state.values()]
    monkeypatch.setattr("nmt.training.step.label_smoothed_loss",
                        lambda *a: tuple(x * float("nan") for x in label_smoothed_loss(*a)))
    with SyncCounter() as counter:
        out = train_step(parts, [BATCH], 5)
    assert dict(counter.counts) == {}  # skipped without reading anything on the host
    assert not bool(out["applied"])
    assert all(torch.equal(v, parts.model.state_dict()[k]) for k, v in before.items())
    assert [s["step"] for s in parts.optimizer.state.values()] == steps  # the skipped step is not counted
