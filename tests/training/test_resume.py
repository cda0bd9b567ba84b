"""Kill -9 mid-epoch and resume: same losses and bit-identical final weights; SIGTERM exits cleanly.

The killed run builds its batches ahead in a thread (trainer.prefetch=3), the reference in the loop
(trainer.prefetch=0): a checkpoint holds the data position of the batches trained on, not of those built."""
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import TOY_TRAIN, job_cfg, tb_scalars

# one thread per trainer: a test may run a trainer beside another process, and the machine may have 2 cores
ARGS = [*TOY_TRAIN, "trainer.valid_every=30", "trainer.valid_max_sentences=10", "trainer.num_threads=1"]


def start(run_dir: Path, cache: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "nmt.cli.train", *ARGS, f"run_dir={run_dir}", f"data.cache_dir={cache}", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return out + err  # Hydra's job logging writes to stdout


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 600) -> None:
    """Until `path` exists; a bound on the wait (the test fails rather than hangs), not a speed requirement."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate(timeout=60)[1][-3000:]
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout:.0f} s"
        time.sleep(0.005)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_sigkill_then_resume_equals_uninterrupted(tmp_path, cache):
    finish(start(tmp_path / "ref", cache, "trainer.max_steps=60", "trainer.prefetch=0"))
    victim = start(tmp_path / "cut", cache, "trainer.max_steps=60", "trainer.prefetch=3")
    wait_for(tmp_path / "cut" / "checkpoints" / "step_15.pt", victim)
    assert victim.poll() is None, "the run finished before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    err = finish(start(tmp_path / "cut", cache, "trainer.max_steps=60", "trainer.prefetch=3", "trainer.resume=true"))
    assert "resumed from" in err
    log = (tmp_path / "cut" / "train.log").read_text()  # Hydra's log follows run_dir, and appends
    assert log.count("parameters; run dir") == 2 and "resumed from" in log
    ref = torch.load(tmp_path / "ref" / "checkpoints" / "step_60.pt", weights_only=True)
    cut = torch.load(tmp_path / "cut" / "checkpoints" / "step_60.pt", weights_only=True)
    for name, tensor in ref["model"].items():
        assert torch.equal(tensor, cut["model"][name]), name
    strip = lambda hist: [(h["step"], h["loss"], h["bleu"]) for h in hist]  # noqa: E731 (times differ)
    assert strip(ref["progress"]["history"]) == strip(cut["progress"]["history"])
    assert tb_scalars(tmp_path / "ref", "train/loss") == tb_scalars(tmp_path / "cut", "train/loss")


def test_sigterm_checkpoints_and_exits_zero(tmp_path, cache):
    proc = start(tmp_path / "run", cache, "trainer.max_steps=100000", "trainer.prefetch=3")  # the thread ends too
    wait_for(tmp_path / "run" / "checkpoints" / "step_10.pt", proc)
    proc.send_signal(signal.SIGTERM)
    err = finish(proc)
    assert "interrupted by SIGTERM" in err
    assert f"Resume with:\n  nmt-train trainer.resume=true run_dir={tmp_path / 'run'}\n" in err  # nothing to fill in
    steps = sorted(int(p.stem.split("_")[1]) for p in (tmp_path / "run" / "checkpoints").glob("step_*.pt"))
    last = torch.load(tmp_path / "run" / "checkpoints" / f"step_{steps[-1]}.pt", weights_only=True)
    assert steps[-1] >= 10 and last["progress"]["step"] == steps[-1]
    assert "interrupted" in last["progress"]["stopped"]


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run dir (.hydra/, .lock, tb/ included), byte for byte."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def cli(module: str, *args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"nmt.cli.{module}", *args], capture_output=True, text=True,
                          cwd=cwd, input=stdin, timeout=600)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, cache):
    """A tiny run trained by nmt-train with overrides (a 1000-piece vocabulary cap, small sizes)."""
    tmp = tmp_path_factory.mktemp("resume_cli")
    proc = cli("train", *ARGS, "data.tokenizer.vocab_size=1000", "trainer.max_steps=10", "run_dir=run",
               f"data.cache_dir={cache}", cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run"


def hold_lock(run_dir: Path) -> subprocess.Popen:
    """Another process holding the run dir's lock as a training does (nmt.runs.run_dir.run_lock)."""
    code = ("import sys, time; from pathlib import Path; from nmt.runs.run_dir import run_lock\n"
            "with run_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert select.select([proc.stdout], [], [], 300)[0], "the lock holder printed nothing in 300 s"
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_refused_resume_changes_no_file_and_the_run_still_translates(cli_run):
    import yaml
    stored = yaml.safe_load((cli_run / "config.yaml").read_text())
    assert Path(stored["data"]["root"]).is_absolute() and Path(stored["data"]["cache_dir"]).is_absolute()
    before = snapshot(cli_run)
    proc = cli("train", "trainer.resume=true", f"run_dir={cli_run}", "model.attention.score=dot",
               "trainer.max_steps=12", cwd=cli_run.parent)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "  model.attention.score: general (run) vs dot (given)" in proc.stderr.splitlines()
    assert f"nmt-train trainer.resume=true run_dir={cli_run} trainer.max_steps=12" in proc.stderr
    assert snapshot(cli_run) == before
    out = cli("translate", f"run_dir={cli_run}", "device=cpu", cwd=cli_run.parent, stdin="w1 w2 w3\n")
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 1, out.stderr[-2000:]


def test_a_held_run_dir_refuses_a_second_trainer_and_readers_still_read(cli_run):
    proc = hold_lock(cli_run)
    try:
        before = snapshot(cli_run)
        second = cli("train", "trainer.resume=true", f"run_dir={cli_run}", "trainer.max_steps=12", cwd=cli_run.parent)
        assert second.returncode == 1 and f"PID {proc.pid} on host" in second.stderr, second.stderr[-2000:]
        assert "Traceback" not in second.stderr and snapshot(cli_run) == before
        out = cli("translate", f"run_dir={cli_run}", "device=cpu", cwd=cli_run.parent, stdin="w1 w2\n")
        assert out.returncode == 0, out.stderr[-2000:]
    finally:
        proc.kill()
        proc.wait(timeout=60)


def test_bare_resume_after_the_holder_was_killed_continues_from_the_runs_own_config(cli_run):
    proc = hold_lock(cli_run)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    overrides = (cli_run / ".hydra" / "overrides.yaml").read_bytes()
    resumed = cli("train", "trainer.resume=true", f"run_dir={cli_run}", "trainer.max_steps=15", cwd=cli_run.parent)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout + resumed.stderr
    assert (cli_run / ".hydra" / "overrides.yaml").read_bytes() == overrides  # the first command's record
    assert (cli_run / "checkpoints" / "step_15.pt").is_file()


def test_data_root_moves_a_runs_corpus_and_the_error_names_it(cli_run, tmp_path):
    """A run whose corpus (here TSV) moved: the error names data_root=, and that fix works."""
    import shutil

    from omegaconf import OmegaConf

    from nmt.data.corpus import CorpusError
    from nmt.decoding import DecodeSettings
    from nmt.evaluation.evaluate import evaluate_run
    from helpers import compose_cfg
    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    cfg = OmegaConf.load(run / "config.yaml")
    tsv = OmegaConf.to_container(compose_cfg(["data=tsv", "data.root=/gone/data"]).data, resolve=True)
    cfg.data.root, cfg.data.corpus, cfg.data.splits = tsv["root"], tsv["corpus"], tsv["splits"]
    OmegaConf.save(cfg, run / "config.yaml")
    (tmp_path / "moved" / "my_corpus").mkdir(parents=True)
    (tmp_path / "moved" / "my_corpus" / "test.tsv").write_text("w1 w2 w3\tw3 w2 w1\nw4 w5\tw5 w4\n")
    decode = DecodeSettings(**OmegaConf.to_container(compose_cfg([]).decode))
    with pytest.raises(CorpusError, match="pass data_root=<the directory that holds it>") as e:
        evaluate_run(run, "test", "best", decode, torch.device("cpu"), None)
    result = evaluate_run(run, "test", "best", decode, torch.device("cpu"), str(tmp_path / "moved"))
    assert result["sentences"] == 2
    from nmt.alignment.explain import explain_run  # nmt-explain takes the same fix
    args = [f"run_dir={run}", "split=test", "counterfactuals=[uniform]", "gradient=false", "leave_one_out=false"]
    with pytest.raises(CorpusError, match="pass data_root="):
        explain_run(job_cfg(args, "explain"))
    assert explain_run(job_cfg([*args, f"data_root={tmp_path / 'moved'}"], "explain"))["sentences"] == 2


def test_two_trainers_started_together_one_trains_the_other_writes_nothing(tmp_path, cache):
    procs = [start(tmp_path / "run", cache, "trainer.max_steps=10", f"seed={seed}") for seed in (1, 2)]
    results = [(p, *p.communicate(timeout=600)) for p in procs]
    winners = [r for r in results if r[0].returncode == 0]
    losers = [r for r in results if r[0].returncode != 0]
    assert len(winners) == 1 and len(losers) == 1, [r[2][-1000:] for r in results]
    loser_err = losers[0][2]
    assert "is in use: another nmt-train" in loser_err and "Traceback" not in loser_err, loser_err[-2000:]
    winner_seed = 1 if winners[0][0] is procs[0] else 2
    assert f"seed: {winner_seed}\n" in (tmp_path / "run" / "config.yaml").read_text()  # not mixed
    log = (tmp_path / "run" / "train.log").read_text()
    assert log.count("parameters; run dir") == 1
