"""Run directories and run configs: data_root for every corpus kind, absolute stored paths, the run lock."""
import os
import select
import signal
import socket
import subprocess
import sys

import pytest
from helpers import compose_cfg
from hydra.utils import instantiate
from omegaconf import OmegaConf

from nmt.runs.config import RunConfig
from nmt.runs.run_dir import RunLockError, check_unlocked, run_lock


@pytest.mark.parametrize("data", ["multi30k_de_en", "text_dir", "tsv", "jsonl"])
def test_data_root_moves_every_corpus_kind(data, tmp_path):
    config = RunConfig(OmegaConf.to_container(compose_cfg([f"data={data}", "data.root=/old/place"]), resolve=True))
    data = config.data.rebased(str(tmp_path))
    corpus = instantiate(data.corpus)
    where = str(getattr(corpus, "directory", getattr(corpus, "path_template", "")))
    assert where.startswith(str(tmp_path)) and "/old/place" not in config.with_data(data).to_yaml()


def test_stored_paths_are_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = compose_cfg(["data=text_dir", "data.root=rel/data", "data.cache_dir=rel/cache"])
    data = RunConfig(OmegaConf.to_container(cfg, resolve=True)).data.absolute()
    assert data.root == str(tmp_path / "rel" / "data")
    assert data.cache_dir == str(tmp_path / "rel" / "cache")
    assert data.corpus["directory"] == str(tmp_path / "rel" / "data" / "my_corpus")


HOLD = "import sys, time; from pathlib import Path; from nmt.runs.run_dir import run_lock\n" \
       "with run_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(600)"


def holder(run_dir) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert select.select([proc.stdout], [], [], 300)[0] and proc.stdout.readline().strip() == "locked"
    return proc


def test_a_held_run_dir_refuses_a_second_process_naming_the_holder(tmp_path):
    proc = holder(tmp_path / "run")
    try:
        before = (tmp_path / "run" / ".lock").read_bytes()
        for attempt in (lambda: check_unlocked(tmp_path / "run"), lambda: run_lock(tmp_path / "run").__enter__()):
            with pytest.raises(RunLockError, match=f"PID {proc.pid} on host {socket.gethostname()}"):
                attempt()
        assert (tmp_path / "run" / ".lock").read_bytes() == before
    finally:
        proc.kill()
        proc.wait(timeout=60)


def test_a_lock_left_by_kill_9_does_not_block(tmp_path):
    proc = holder(tmp_path / "run")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    check_unlocked(tmp_path / "run")
    with run_lock(tmp_path / "run"):
        with run_lock(tmp_path / "run"):  # the same process may take it again (CLI, then train())
            assert (tmp_path / "run" / ".lock").read_text().split()[0] == str(os.getpid())

def test_a_stored_config_reads_back_as_the_same_plain_data(tmp_path):
    """config.yaml as nmt-train writes it (RunConfig.to_yaml) loads back equal, and the model node written
    by the YAML writer of older runs (OmegaConf) matches it in a checkpoint's meta."""
    from nmt.runs.checkpoint import meta_differs
    from nmt.runs.config import model_yaml
    cfg = compose_cfg(["+experiment=self", "data.root=/data"])
    config = RunConfig(OmegaConf.to_container(cfg, resolve=True))
    (tmp_path / "config.yaml").write_text(config.to_yaml())
    loaded = RunConfig.load(tmp_path / "config.yaml")
    assert loaded == config and loaded.data.split_name("valid") == "val" and loaded.seed == 1234
    old = {"model": "decoder: {num_layers: 3}\nfamily: 'transformer'\n"}  # another writer: order, quotes, flow style
    assert meta_differs(old, {"model": model_yaml({"family": "transformer", "decoder": {"num_layers": 3}})}) == []
    assert meta_differs(old, {"model": model_yaml({"family": "transformer", "decoder": {"num_layers": 2}})}) == ["model"]
