"""User errors print one or two plain lines naming key, value and fix, exit non-zero, leave nothing behind;
every suggested fix works."""
import os
import subprocess
import sys

import pytest
from helpers import compose_cfg

from nmt.cli import evaluate as evaluate_cli
from nmt.cli import train as train_cli
from nmt.cli import translate as translate_cli


def run_main(module, args, monkeypatch, capsys) -> str:
    """module.main() with args; returns stderr after asserting a plain non-zero exit."""
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(sys, "argv", [module.PROG, *args])
    with pytest.raises(SystemExit) as e:
        module.main()
    err = capsys.readouterr().err
    assert e.value.code == 1 and "Traceback" not in err and err.startswith(module.PROG + ": ")
    return err


def test_a_typo_suggests_the_closest_real_key_and_that_key_works(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    err = run_main(train_cli, ["trainer.max_step=40"], monkeypatch, capsys)
    assert "did you mean trainer.max_steps=40?" in err and "+trainer" not in err
    assert compose_cfg(["trainer.max_steps=40"]).trainer.max_steps == 40
    err = run_main(evaluate_cli, ["run_dir=x", "data.root=/data"], monkeypatch, capsys)
    assert "did you mean data_root=/data?" in err
    assert compose_cfg(["run_dir=x", "data_root=/data"], "evaluate").data_root == "/data"
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("arg, message", [
    ("trainer.max_steps=abc", "trainer.max_steps='abc' must be of type int"),
    ("trainer.max_steps=-1", "trainer.max_steps must be >= 1, got -1"),
    ("decode.beam_size=0", "decode.beam_size must be >= 1, got 0"),
])
def test_a_bad_value_names_the_key_and_leaves_no_directory(arg, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    err = run_main(train_cli, [arg, "trainer=cpu"], monkeypatch, capsys)
    assert message in err and len(err.splitlines()) <= 2
    assert os.listdir(tmp_path) == []  # no outputs/<date>/<time> with .hydra/ and an empty train.log


def test_an_unwritable_run_dir_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    err = run_main(train_cli, ["run_dir=/proc/x", "trainer=cpu", "data=toy"], monkeypatch, capsys)
    assert "run_dir=/proc/x cannot be created" in err and "choose a directory you can write" in err


def test_a_missing_run_dir_lists_the_newest_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for i, name in enumerate(["runs/old", "outputs/2026-01-01/10-00-00", "runs/new"]):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "config.yaml").write_text("x: 1\n")
        os.utime(tmp_path / name / "config.yaml", (1000 + i, 1000 + i))
    err = run_main(translate_cli, [], monkeypatch, capsys)
    lines = err.splitlines()
    assert "pass run_dir=" in lines[0] and lines[1:] == ["  run_dir=runs/new", "  run_dir=outputs/2026-01-01/10-00-00",
                                                        "  run_dir=runs/old"]


def test_the_console_shows_no_traceback_unless_asked(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    cmd = [sys.executable, "-m", "nmt.cli.train", "trainer.max_steps=abc", "trainer=cpu"]
    plain = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert plain.returncode == 1 and plain.stderr.strip().splitlines() == [
        "nmt-train: trainer.max_steps='abc' must be of type int; pass e.g. trainer.max_steps=<int>"]
    full = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env={**env, "HYDRA_FULL_ERROR": "1"},
                          timeout=300)
    assert full.returncode != 0 and "Traceback" in full.stderr
    assert os.listdir(tmp_path) == []
