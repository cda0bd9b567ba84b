"""nmt.training.session: every bad setting fails before any data is read; the progress bar shows
the budget that will stop the run."""
import pytest
from helpers import toy_cfg

from helpers import train
from nmt.cli.train import run_settings
from nmt.scoring import corpus_scores
from nmt.training.trainer import BudgetBar, Callbacks, Progress, TrainSettings

BAD = [
    ("trainer.valid_every=0", "trainer.valid_every must be >= 1, got 0"),
    ("trainer.max_time_s=0", "trainer.max_time_s must be > 0"),
    ("trainer.device=tpu", "trainer.device must be one of auto, cpu, cuda"),
    ("optim.schedule=cosine", r"optim.schedule must be one of \('inverse_sqrt', 'plateau', 'constant'\), got 'cosine'"),
    ("optim.name=sgd", r"optim.name must be one of \['adam', 'adamw'\], got 'sgd'"),
    ("decode.beam_size=0", "decode.beam_size must be >= 1, got 0"),
    ("logger.attention_slots=some", "logger.attention_slots must be one of all, cross; got 'some'"),
    ("model.encoder.cell=transformer", "cell must be one of"),
    ("model.attention.flow=joey", "flow must be one of"),
    ("model.attention.score=cosine", "model.attention.score must be one of"),
]


@pytest.mark.parametrize("override,message", BAD, ids=[o for o, _ in BAD])
def test_bad_value_fails_before_any_data_is_read(override, message, tmp_path, monkeypatch):
    """The corpus raises if read, and so does the locked part of training (run dir, data, model): the error
    must come from the config check, before any of that work starts."""
    from nmt.training import session

    def locked(*args, **kwargs):
        raise AssertionError("training began (run dir, data, model) before the config was checked")
    monkeypatch.setattr(session, "train_locked", locked)
    cfg = toy_cfg(tmp_path / "run", tmp_path / "cache", [override, "data.corpus._target_=helpers.ExplodingCorpus"])
    with pytest.raises(ValueError, match=message):
        train(cfg)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_a_good_config_passes_the_check(tmp_path):
    settings = run_settings(toy_cfg(tmp_path / "run", tmp_path / "cache", []))
    assert settings.decode.beam_size == 2 and settings.trainer.max_steps > 0


def settings(**overrides) -> TrainSettings:
    cfg = toy_cfg("unused", "unused", [])
    from omegaconf import OmegaConf
    return TrainSettings(**{**OmegaConf.to_container(cfg.trainer), **overrides})


@pytest.mark.parametrize("limits,progress,expected", [
    # 10 steps in 1 s with 1019 s left: ~10,200 steps by time, fewer than max_steps
    ({"max_steps": 100000, "max_time_s": 1020, "max_epochs": 1000}, Progress(step=10, elapsed_s=1.0),
     (10200, "max_time_s")),
    # the same pace with a small step budget: the steps decide
    ({"max_steps": 2500, "max_time_s": 1020, "max_epochs": 1000}, Progress(step=10, elapsed_s=1.0),
     (2500, "max_steps")),
    # 3 epochs of 40 steps come first
    ({"max_steps": 2500, "max_time_s": 1020, "max_epochs": 3}, Progress(step=10, elapsed_s=1.0), (120, "max_epochs")),
    # before the first step nothing is known about the pace: steps or epochs
    ({"max_steps": 2500, "max_time_s": 1, "max_epochs": 1000}, Progress(), (2500, "max_steps")),
])
def test_progress_bar_shows_the_budget_that_stops_the_run(limits, progress, expected):
    bar = BudgetBar(settings(**limits), steps_per_epoch=40, progress=progress, enabled=False)
    assert bar.budget(progress) == expected
    bar.update(progress)
    assert bar.bar.total == expected[0] and bar.bar.n == progress.step


class Recorder(Callbacks):
    def __init__(self):
        self.events = []

    def on_start(self):
        self.events.append("start")

    def on_step(self, trainer, result):
        self.events.append(("step", trainer.progress.step, result["tokens"]))

    def on_validation(self, trainer, result):
        self.events.append(("valid", trainer.progress.step, trainer.valid_decode.beam_size, round(result["bleu"], 6)))

    def on_end(self, trainer):
        self.events.append(("end", trainer.progress.stopped))


def test_callbacks_see_start_every_step_every_validation_and_the_end(tmp_path):
    """The trainer's hooks (what scripts/scale_benchmark.py uses instead of patching Trainer.step); the
    validation decodes with trainer.valid_beam_size from the YAML, not a beam forced in Python."""
    rec = Recorder()
    metrics = train(toy_cfg(tmp_path / "run", tmp_path / "cache", ["trainer.max_steps=4", "trainer.valid_every=2",
                                                                   "trainer.valid_beam_size=2"]), [rec])
    steps = [e for e in rec.events if e[0] == "step"]
    assert rec.events[0] == "start" and rec.events[-1] == ("end", "max_steps")
    assert [s[1] for s in steps] == [1, 2, 3, 4] and all(s[2] > 0 for s in steps)
    valids = [e for e in rec.events if e[0] == "valid"]
    assert [(v[1], v[2]) for v in valids] == [(2, 2), (4, 2)]
    assert valids[-1][3] == round(metrics["history"][-1]["bleu"], 6)


class DecodeRecorder(Callbacks):
    def __init__(self):
        self.valid = []

    def on_validation(self, trainer, result):
        self.valid.append((trainer.valid_decode.beam_size, trainer.valid_decode.sampling))


def test_validation_searches_when_decode_samples(tmp_path):
    """decode.sampling applies to the final evaluation; the validation BLEU that early stopping reads
    comes from a search (trainer.valid_beam_size, sampling none), never from draws."""
    rec = DecodeRecorder()
    metrics = train(toy_cfg(tmp_path / "run", tmp_path / "cache", [
        "trainer.max_steps=2", "trainer.valid_every=2", "trainer.valid_beam_size=2", "decode.beam_size=1",
        "decode.sampling=topp"]), [rec])
    assert rec.valid == [(2, "none")]
    run = tmp_path / "run"  # the test BLEU is the score of the drawn outputs written beside it
    drawn, refs = ((run / f"test.{kind}.txt").read_text().splitlines() for kind in ("beam.hyp", "ref"))
    assert metrics["beam_size"] == 1 and metrics["test"]["bleu"] == corpus_scores(drawn, refs)["bleu"]
