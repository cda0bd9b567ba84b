"""Faults a CUDA user would meet on the first day, proven on CPU: the resume window's device, per-rank CUDA RNG
states, device and backend under torchrun, the process-group timeout and data before it, a CUDA out-of-memory
step as a one-line user error (monkeypatched torch.cuda.*, a captured init_process_group, the meta device)."""
import logging
import sys
from datetime import timedelta

import pytest
import torch
import torch.distributed as torch_dist
from helpers import TOY_TRAIN, toy_cfg

from nmt.cli import train as train_cli
from nmt.cli.train import run_settings
from nmt.runs import checkpoint as ckpt
from nmt.training import session
from nmt.training.distributed import DistInfo


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_a_restored_log_window_lives_on_the_trainer_device(tmp_path, cache):
    """A resume cut between two log lines: log_train stacks the restored window with new device results."""
    settings = run_settings(toy_cfg(tmp_path / "run", cache, []))
    data = session.load_data(settings.config.data, supervised=False)
    trainer = session.build_trainer(settings, data, torch.device("cpu"), DistInfo())
    trainer.window = [{"loss": torch.tensor(2.5), "lr": 1e-3, "tokens": 40}]
    state = trainer.state([ckpt.rng_state(torch.device("cpu"))])
    trainer.device = torch.device("meta")  # stands in for cuda: any device that is not the CPU
    trainer.restore(state)
    assert [{k: v.device.type for k, v in w.items()} for w in trainer.window] == [
        {"loss": "meta", "lr": "meta", "tokens": "meta"}]


class FakeCuda:
    """torch.cuda's RNG functions on a machine with `count` GPUs: each generator a 1-byte tensor."""

    def __init__(self, monkeypatch, count: int):
        self.count, self.gens = count, {i: torch.tensor([10 + i], dtype=torch.uint8) for i in range(count)}
        monkeypatch.setattr(torch.cuda, "get_rng_state", self.get)
        monkeypatch.setattr(torch.cuda, "set_rng_state", self.set)
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [self.gens[i] for i in range(count)])
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", self.set_all)

    def index(self, device) -> int:
        index = device if isinstance(device, int) else torch.device(device).index or 0
        if index >= self.count:
            raise IndexError(f"cuda:{index} but {self.count} device(s)")
        return index

    def get(self, device="cuda"):
        return self.gens[self.index(device)].clone()

    def set(self, state, device="cuda"):
        self.gens[self.index(device)] = state.clone()

    def set_all(self, states):
        for i, state in enumerate(states):
            self.set(state, i)


def test_rng_state_holds_this_rank_device_only(monkeypatch):
    FakeCuda(monkeypatch, 4)
    state = ckpt.rng_state(torch.device("cuda", 2))
    assert state["cuda"].tolist() == [12]  # one generator, cuda:2's: not every visible device's


def test_rank_r_restores_its_own_rng_state(monkeypatch):
    cuda = FakeCuda(monkeypatch, 2)
    saved = []
    for rank in range(2):  # two ranks with different CPU and CUDA states, as DistInfo.gather collects them
        torch.manual_seed(rank)
        cuda.gens[rank] = torch.tensor([100 + rank], dtype=torch.uint8)
        saved.append(ckpt.rng_state(torch.device("cuda", rank)))
    cuda.gens = {0: torch.tensor([0], dtype=torch.uint8), 1: torch.tensor([0], dtype=torch.uint8)}
    ckpt.set_rng_state(saved, rank=1, world=2, device=torch.device("cuda", 1))
    assert cuda.gens[1].tolist() == [101] and cuda.gens[0].tolist() == [0]
    assert torch.equal(torch.get_rng_state(), saved[1]["torch"])


def test_fewer_gpus_or_ranks_than_saved_warn_not_crash(monkeypatch, caplog):
    cuda = FakeCuda(monkeypatch, 1)  # saved on 8 GPUs (4 ranks, or the older all-devices format), resumed on 1
    one = ckpt.rng_state(torch.device("cpu"))
    older = {**one, "cuda": [torch.tensor([50 + i], dtype=torch.uint8) for i in range(8)]}
    ckpt.set_rng_state(older, rank=0, world=1, device=torch.device("cuda", 0))
    assert cuda.gens[0].tolist() == [50]
    per_rank = [{**one, "cuda": torch.tensor([70 + r], dtype=torch.uint8)} for r in range(4)]
    with caplog.at_level(logging.WARNING):
        ckpt.set_rng_state(per_rank, rank=0, world=1, device=torch.device("cuda", 0))
    assert cuda.gens[0].tolist() == [70] and "RNG states of 4 rank(s), this run has 1" in caplog.text


class Joined(Exception):
    """Raised by the captured init_process_group: the test has seen what it needs."""


def until_process_group(tmp_path, cache, monkeypatch, env: dict, overrides: list[str]) -> list:
    """session.train under torchrun's environment `env` up to init_process_group: -> the calls it made (data
    loading, set_device, init_process_group with its backend and timeout), in order."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    calls = []
    monkeypatch.setattr(session, "load_data", lambda *a: calls.append("load_data"))
    monkeypatch.setattr(session, "reset_peak_memory", lambda device: None)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", torch.device(device))))

    def init_process_group(backend, timeout):
        calls.append(("init_process_group", backend, timeout))
        raise Joined
    monkeypatch.setattr(torch_dist, "init_process_group", init_process_group)
    settings = run_settings(toy_cfg(tmp_path / "run", cache, ["trainer.max_time_s=5400", *overrides]))
    with pytest.raises(Joined):
        session.train(settings)
    return calls


TORCHRUN_RANK1 = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}


def test_auto_under_torchrun_takes_nccl_and_this_rank_gpu(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    calls = until_process_group(tmp_path, cache, monkeypatch, TORCHRUN_RANK1, ["trainer.device=auto"])
    assert calls == ["load_data", ("set_device", torch.device("cuda", 1)),
                     ("init_process_group", "nccl", timedelta(seconds=5400))]


def test_cpu_ranks_read_the_data_before_joining_a_gloo_group(tmp_path, cache, monkeypatch):
    calls = until_process_group(tmp_path, cache, monkeypatch, TORCHRUN_RANK1, ["trainer.device=cpu"])
    assert calls == ["load_data", ("init_process_group", "gloo", timedelta(seconds=5400))]


@pytest.mark.parametrize("env, override, message", [
    (TORCHRUN_RANK1, "trainer.device=cuda:1", "trainer.device=cuda:1 under torchrun would put all 2 ranks on one GPU"),
    ({**TORCHRUN_RANK1, "WORLD_SIZE": "4"}, "data.cache_dir=.cache/nmt",
     "data.cache_dir=.cache/nmt is relative, so each node of this 4-rank multi-node job"),
])
def test_torchrun_refuses_settings_it_cannot_use(env, override, message, tmp_path, cache, monkeypatch):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match=message):
        run_settings(toy_cfg(tmp_path / "run", cache, [override]))


def test_a_cuda_oom_step_is_a_one_line_user_error_and_saves_nothing(tmp_path, cache, monkeypatch, capsys):
    def out_of_memory(*args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    monkeypatch.setattr("nmt.training.trainer.train_step", out_of_memory)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    run_dir = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["nmt-train", *TOY_TRAIN, f"run_dir={run_dir}", f"data.cache_dir={cache}",
                                      "trainer.accum_steps=2"])
    with pytest.raises(SystemExit) as e:
        train_cli.main()
    err = capsys.readouterr().err
    assert e.value.code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("nmt-train: out of memory on cpu in training step 1 (rank 0), largest of 2 micro-batch")
    assert "src (" in err and "lower trainer.max_tokens (now 400) and raise trainer.accum_steps (now 2)" in err
    assert not list((run_dir / "checkpoints").glob("*.pt"))
