"""nmt-average: the averaged weights are exactly the mean of the newest step checkpoints' weights; the file
loads with weights_only=True and as checkpoint=avg_last<N> everywhere; a refusal leaves no file behind."""
import os
import shutil
import sys

import pytest
import torch
from helpers import compose_cfg
from trained_toy import copy_task_run

from nmt.cli import average as average_cli
from nmt.cli.common import decode_settings, job
from nmt.evaluation.evaluate import evaluate_run
from nmt.runs.average import AverageJob, average_run, average_weights
from nmt.runs.checkpoint import CheckpointError
from nmt.runs.trained import load_trained


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return copy_task_run(tmp_path_factory)[0]


@pytest.fixture
def run_dir(trained, tmp_path):
    """A copy of the trained run (every test may write into its checkpoints/)."""
    return shutil.copytree(trained, tmp_path / "run")


def average(run_dir, last: int):
    return average_run(job(AverageJob, compose_cfg([f"run_dir={run_dir}", f"last={last}"], "average")))


def test_the_average_is_the_exact_mean_of_the_newest_step_checkpoints(run_dir):
    path = average(run_dir, 3)
    assert path == run_dir / "checkpoints" / "avg_last3.pt"
    saved = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only
    steps = [torch.load(run_dir / "checkpoints" / f"step_{s}.pt", map_location="cpu", weights_only=True)
             for s in (500, 495, 490)]
    assert saved["step"] == 500 and saved["averaged_steps"] == [500, 495, 490]
    assert saved["meta"] == steps[0]["meta"] and set(saved["model"]) == set(steps[0]["model"])
    assert "optimizer" not in saved
    differ = 0
    for name, value in saved["model"].items():
        inputs = [s["model"][name] for s in steps]
        mean = ((inputs[0].double() + inputs[1].double() + inputs[2].double()) / 3).to(inputs[0].dtype)
        assert torch.equal(value, mean), name
        differ += not torch.equal(inputs[0], inputs[2])
    assert differ == len(saved["model"])  # every tensor's inputs differ: the newest alone would not pass


def test_integer_buffers_come_from_the_newest_checkpoint():
    newest = {"w": torch.tensor([1.0, 2.0]), "count": torch.tensor([7, 1])}
    older = {"w": torch.tensor([3.0, 5.0]), "count": torch.tensor([2, 2])}
    out = average_weights([newest, older])
    assert torch.equal(out["w"], torch.tensor([2.0, 3.5]))
    assert torch.equal(out["count"], torch.tensor([7, 1])) and out["count"].dtype == torch.int64


def test_too_few_checkpoints_are_refused_and_nothing_is_written(run_dir):
    before = sorted(os.listdir(run_dir / "checkpoints"))
    with pytest.raises(CheckpointError) as refused:
        average(run_dir, 4)
    message = str(refused.value)
    assert "last=4 needs 4 loadable step checkpoints" in message and "has 3 (step_500.pt, step_495.pt, step_490.pt)" \
        in message
    assert "trainer.keep_last=3" in message and "trainer.keep_last>=4" in message
    (run_dir / "checkpoints" / "step_495.pt").write_bytes(b"truncated")  # a corrupt one does not count
    with pytest.raises(CheckpointError, match="has 2 "):
        average(run_dir, 3)
    assert sorted(os.listdir(run_dir / "checkpoints")) == before


def test_a_checkpoint_of_another_model_is_refused(run_dir):
    path = run_dir / "checkpoints" / "step_490.pt"
    state = torch.load(path, map_location="cpu", weights_only=True)
    state["meta"]["tgt_vocab"] += 1
    torch.save(state, path)
    before = sorted(os.listdir(run_dir / "checkpoints"))
    with pytest.raises(CheckpointError, match=r"cannot average step_490.pt with step_500.pt: another model\n"
                                              r"  tgt_vocab: step_490.pt \d+ vs step_500.pt \d+"):
        average(run_dir, 3)
    assert sorted(os.listdir(run_dir / "checkpoints")) == before


def test_avg_last3_loads_by_name_and_evaluates(run_dir):
    average(run_dir, 3)
    loaded = load_trained(run_dir, "avg_last3", torch.device("cpu"))
    saved = torch.load(run_dir / "checkpoints" / "avg_last3.pt", weights_only=True)["model"]
    assert all(torch.equal(v, saved[k]) for k, v in loaded.model.state_dict().items()) and loaded.step == 500
    decode = decode_settings(compose_cfg(["run_dir=x", "decode.beam_size=2"], "evaluate"))
    result = evaluate_run(run_dir, "test", "avg_last3", decode, torch.device("cpu"), None)
    assert result["step"] == 500 and result["bleu"] > 90  # the copy task is learnt; the mean of its neighbours too
    assert (run_dir / "test.avg_last3.beam2.hyp.txt").is_file()
    with pytest.raises(Exception, match="checkpoint=avg_last9: no file .*avg_last9.pt.*avg_last3, best"):
        load_trained(run_dir, "avg_last9", torch.device("cpu"))


def test_cli_writes_the_file_and_a_bad_value_is_one_line(run_dir, monkeypatch, capsys):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(sys, "argv", ["nmt-average", f"run_dir={run_dir}", "last=2"])
    average_cli.main()
    assert capsys.readouterr().out.strip() == str(run_dir / "checkpoints" / "avg_last2.pt")
    monkeypatch.setattr(sys, "argv", ["nmt-average", f"run_dir={run_dir}", "last=0"])
    with pytest.raises(SystemExit) as done:
        average_cli.main()
    assert done.value.code == 1 and capsys.readouterr().err == "nmt-average: last must be >= 1, got 0\n"
