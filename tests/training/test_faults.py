"""Faults lose nothing: corrupt/mismatched/unsafe checkpoints, full disks, non-finite losses."""
import errno
import logging
import pickle

import pytest
import torch
from helpers import toy_cfg

from helpers import train
from nmt.runs import checkpoint as ckpt
from nmt.training.trainer import Trainer


def test_truncated_latest_falls_back_to_previous(tmp_path, caplog):
    for step in (5, 10):
        ckpt.save_step({"step": torch.tensor(step)}, tmp_path, step, keep_last=3)
    data = (tmp_path / "step_10.pt").read_bytes()
    (tmp_path / "step_10.pt").write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING):
        path, state = ckpt.load_latest(tmp_path)
    assert path.name == "step_5.pt" and int(state["step"]) == 5
    assert "step_10.pt" in caplog.text and "falling back" in caplog.text


class Evil:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_checkpoint_with_pickled_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"model": {}, "payload": Evil()}, tmp_path / "step_1.pt", pickle_module=pickle)
    with pytest.raises(ckpt.CheckpointError, match="cannot load checkpoint"):
        ckpt.load(tmp_path / "step_1.pt")
    assert not (tmp_path / "PWNED").exists()


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    ckpt.save_step({"w": torch.ones(3)}, tmp_path, 5, keep_last=1)

    def disk_full(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError):
        ckpt.save_step({"w": torch.zeros(3)}, tmp_path, 10, keep_last=1)
    assert [p.name for p in tmp_path.iterdir()] == ["step_5.pt"]  # no temp file, old one kept
    monkeypatch.undo()
    assert torch.equal(ckpt.load(tmp_path / "step_5.pt")["w"], torch.ones(3))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_trainer_survives_disk_full_and_says_so(tmp_path, cache, monkeypatch, caplog):
    cfg = toy_cfg(tmp_path / "run", cache, ["trainer.max_steps=10"])
    real_save = ckpt.atomic_save

    def flaky(payload, path):
        if "step_10" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(payload, path)
    monkeypatch.setattr(ckpt, "atomic_save", flaky)
    with caplog.at_level(logging.ERROR):
        train(cfg)
    assert "previous checkpoints kept intact" in caplog.text and "step_5.pt" in caplog.text
    assert ckpt.load(tmp_path / "run" / "checkpoints" / "step_5.pt")["progress"]["step"] == 5


def every_file(run_dir):
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_mismatched_checkpoint_is_refused_and_untouched(tmp_path, cache):
    train(toy_cfg(tmp_path / "run", cache, ["trainer.max_steps=5"]))
    before = every_file(tmp_path / "run")  # config.yaml, tokenizer/, tb/, checkpoints/, metrics.json, ...
    bigger = toy_cfg(tmp_path / "run", cache, ["trainer.max_steps=10", "trainer.resume=true",
                                               "model.decoder.hidden_size=40"])
    with pytest.raises(ckpt.CheckpointError, match="hidden_size: 40"):
        train(bigger)
    assert every_file(tmp_path / "run") == before


def test_ctrl_c_in_the_final_evaluation_says_resume_finishes_it(tmp_path, cache, monkeypatch):
    from nmt.training import session
    real = session.beam_evaluation

    def interrupted(trainer, ds, split, decode, metrics):
        if split == "test":
            raise KeyboardInterrupt
        return real(trainer, ds, split, decode, metrics)
    monkeypatch.setattr(session, "beam_evaluation", interrupted)
    with pytest.raises(session.EvaluationInterrupted) as e:
        train(toy_cfg(tmp_path / "run", cache, ["trainer.max_steps=5"]))
    assert "checkpoints are safe" in str(e.value) and not (tmp_path / "run" / "metrics.json").exists()
    command = str(e.value).split("with: ")[1]
    assert command == f"nmt-train trainer.resume=true run_dir={tmp_path / 'run'}"
    assert console_exit(e.value) == (130, f"nmt-train: {e.value}\n")  # what nmt-train prints: one line, no traceback
    monkeypatch.setattr(session, "beam_evaluation", real)
    metrics = train(toy_cfg(tmp_path / "run", cache, ["trainer.max_steps=5", "trainer.resume=true"]))
    assert metrics["steps"] == 5 and (tmp_path / "run" / "metrics.json").is_file()


def test_non_finite_losses_skip_updates_then_stop_with_last_good_state(tmp_path, cache, monkeypatch):
    """Steps 1-6 are good, from step 7 every loss is NaN: updates are skipped (on the device, no host sync),
    and the counters, read every trainer.log_every=5 steps, find trainer.max_nonfinite=4 such steps at
    step 10: the run stops with a checkpoint equal to step 6's weights."""
    from nmt.training.loss import label_smoothed_loss as real_loss
    cfg = toy_cfg(tmp_path / "run", cache, ["trainer.max_steps=50", "trainer.max_nonfinite=4", "trainer.log_every=5"])
    calls, weights = [0], {}

    def nan_after_six(logits, target, pad_id, smoothing):
        calls[0] += 1
        loss, nll = real_loss(logits, target, pad_id, smoothing)
        return (loss * float("nan"), nll) if calls[0] > 6 else (loss, nll)
    real_step = Trainer.step

    def recording_step(self, *args):
        out = real_step(self, *args)
        weights[self.progress.step] = {k: v.clone() for k, v in self.model.state_dict().items()}
        return out
    monkeypatch.setattr("nmt.training.step.label_smoothed_loss", nan_after_six)
    monkeypatch.setattr(Trainer, "step", recording_step)
    with pytest.raises(RuntimeError, match="non-finite loss/gradient in 4 steps in a row"):
        train(cfg)
    last = ckpt.load_latest(tmp_path / "run" / "checkpoints")[1]
    assert last["progress"]["step"] == 10
    for name, tensor in last["model"].items():
        assert torch.equal(tensor, weights[6][name]), f"{name} changed by a skipped update"


def test_run_finishes_when_best_checkpoint_cannot_be_written(tmp_path, cache, monkeypatch, caplog):
    real_save = ckpt.atomic_save

    def no_best(payload, path):
        if path.name == "best.pt":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(payload, path)
    monkeypatch.setattr(ckpt, "atomic_save", no_best)
    with caplog.at_level(logging.ERROR):
        metrics = train(toy_cfg(tmp_path / "run", cache, ["trainer.max_steps=5"]))
    assert "best.pt missing: evaluating the final weights" in caplog.text
    assert metrics["steps"] == 5 and (tmp_path / "run" / "metrics.json").is_file()


def console_exit(error: BaseException) -> tuple[int, str]:
    """(exit status, stderr) of nmt-train when `error` is raised inside its run (nmt.cli.errors.user_errors)."""
    import contextlib
    import io
    import os
    from unittest import mock

    from nmt.cli.errors import user_errors
    stderr = io.StringIO()
    with mock.patch.dict(os.environ, {"HYDRA_FULL_ERROR": "0"}), contextlib.redirect_stderr(stderr):
        with pytest.raises(SystemExit) as exit_:
            with user_errors("nmt-train"):
                raise error
    return exit_.value.code, stderr.getvalue()


def test_ctrl_c_during_training_exits_130_in_one_line():
    assert console_exit(KeyboardInterrupt()) == (130, "nmt-train: interrupted (Ctrl-C)\n")


def test_a_second_signal_stops_at_once():
    """The first SIGTERM/SIGINT only sets the flag (the step finishes and checkpoints); a second one raises
    KeyboardInterrupt there and then; the previous handlers come back afterwards."""
    import os
    import signal

    from nmt.training.trainer import StopOnSignal
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with StopOnSignal() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.received == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            signal.sigtimedwait([], 0)  # nothing to wait for: a point where the handler has run
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_over_long_training_pairs_are_counted_in_metrics_json(tmp_path, cache, caplog):
    """data.max_len drops training pairs only; the count is in the log and in metrics.json."""
    import json
    with caplog.at_level(logging.INFO):
        metrics = train(toy_cfg(tmp_path / "run", cache, ["trainer.max_steps=2", "data.max_len=6"]))
    dropped = metrics["dropped_train_pairs"]
    assert 0 < dropped["train"] < 300 and dropped["valid"] == dropped["test"] == 0
    assert f"dropped {dropped['train']} of 300 training pairs longer than max_len=6" in caplog.text
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["dropped_train_pairs"] == dropped


def test_export_without_ctranslate2_names_the_install_and_writes_nothing(tmp_path, monkeypatch):
    import sys

    from nmt.runs.export import ExportJob, export_run
    from nmt.runs.run_dir import RunDirError
    for module in ("ctranslate2", "ctranslate2.converters", "ctranslate2.converters.converter"):
        monkeypatch.setitem(sys.modules, module, None)  # an import of it raises ImportError
    out = tmp_path / "ct2_model"
    with pytest.raises(RunDirError, match=r"^nmt-export needs CTranslate2: pip install ctranslate2$"):
        export_run(ExportJob(str(tmp_path / "run"), "best", "ctranslate2", "float32", str(out)))
    assert not out.exists()
