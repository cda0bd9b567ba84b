"""nmt-compare on two tiny finished runs: table, CSV, plots and significance match each run's metrics.json."""
import csv
import json

import pytest
from helpers import toy_cfg
from hydra import compose, initialize_config_dir
from PIL import Image

import nmt.cli.compare as compare_cli
from helpers import train
from nmt.cli.common import config_dir
from nmt.evaluation.tables import P_NOTE
from nmt.scoring import paired_bootstrap


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    cache = tmp_path_factory.mktemp("cache")
    for name, attention in (("0_luong_general", "luong_general"), ("1_local_m", "local_m")):
        train(toy_cfg(root / name, cache, [f"model/attention={attention}", "trainer.max_steps=10",
                                                   "trainer.valid_every=5", "trainer.num_threads=1",
                                                   "logger.probe_sentences=1", "logger.stats_sentences=5"]))
    compare_cli.main([str(root), "baseline=luong_general", "--samples", "200"])
    return root


def test_writes_table_csv_and_images(sweep):
    for name in ("comparison.md", "comparison.csv", "val_bleu.png", "attention_side_by_side.png"):
        assert (sweep / name).is_file(), name
    for name in ("val_bleu.png", "attention_side_by_side.png"):
        assert Image.open(sweep / name).format == "PNG"
    md = (sweep / "comparison.md").read_text()
    assert "| 0_luong_general | global-general/luong |" in md and "| 1_local_m | local_m-general/luong |" in md
    assert "Baseline: `0_luong_general`" in md


def test_numbers_match_each_runs_metrics(sweep):
    rows = list(csv.DictReader((sweep / "comparison.csv").open()))
    assert [r["run"] for r in rows] == ["0_luong_general", "1_local_m"]
    assert list(rows[0])[:11] == ["run", "attention", "BLEU", "chrF", "TER", "valid BLEU", "parameters",
                                  "train tokens/s", "decode sentences/s", "peak memory MB", "minutes to best"]
    for row in rows:
        m = json.loads((sweep / row["run"] / "metrics.json").read_text())
        assert float(row["BLEU"]) == m["test"]["bleu"] and float(row["chrF"]) == m["test"]["chrf"]
        assert float(row["TER"]) == m["test"]["ter"] and float(row["valid BLEU"]) == m["valid"]["bleu"]
        assert int(row["parameters"]) == m["parameters"]
        assert float(row["train tokens/s"]) == m["train_tokens_per_s"]
        assert float(row["decode sentences/s"]) == m["decode_sentences_per_s"]
        assert float(row["peak memory MB"]) == m["peak_memory_mb"]
        assert float(row["minutes to best"]) == m["minutes_to_best"]
        assert float(row["align weight"]) == 0.0  # trainer.align_loss.weight: these runs are unsupervised
    assert rows[0]["p (BLEU vs baseline)"] == ""  # the baseline itself
    hyps = [(r["run"], (sweep / r["run"] / "test.beam.hyp.txt").read_text().splitlines()) for r in rows]
    refs = (sweep / "0_luong_general" / "test.ref.txt").read_text().splitlines()
    assert float(rows[1]["p (BLEU vs baseline)"]) == paired_bootstrap(hyps, refs, 200)["1_local_m"]  # --samples 200


def test_the_table_says_what_p_means(sweep):
    md = (sweep / "comparison.md").read_text()
    assert P_NOTE.format(200) in md and "two-sided paired bootstrap" in P_NOTE
    assert "unlikely to be chance" not in md


def test_baseline_must_name_one_run(sweep):
    with pytest.raises(SystemExit, match="matches 2 runs"):
        compare_cli.main([str(sweep), "--baseline", "general/luong"])
    with pytest.raises(SystemExit, match="no runs"):
        compare_cli.main([str(sweep / "0_luong_general" / "attention")])


def test_compare_attention_experiment_sweeps_the_luong_attention_types():
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=["+experiment=compare_attention", "trainer=cpu"],
                      return_hydra_config=True)
    assert cfg.hydra.sweeper.params["model/attention"] == "luong_general,local_m,local_p,hard"
    assert cfg.hydra.sweeper.params["seed"] == "1,2,3"  # every type with three seeds, one sweep
    assert cfg.trainer.max_steps == 1000 and cfg.model.attention.flow == "luong"


def test_compare_attention_sweep_subdirs_name_type_and_seed():
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf
    names = set()
    for num, (attention, seed) in enumerate([(a, s) for a in ("luong_general", "local_p") for s in (1, 2, 3)]):
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose("train", overrides=["+experiment=compare_attention", "trainer=cpu", f"seed={seed}",
                                              f"model/attention={attention}"], return_hydra_config=True)
        cfg.hydra.job.num = num
        HydraConfig.instance().set_config(cfg)
        names.add(OmegaConf.to_container(cfg.hydra.sweep, resolve=True)["subdir"])
    assert names == {f"{n}_{a}_s{s}" for n, (a, s) in enumerate(
        [(a, s) for a in ("luong_general", "local_p") for s in (1, 2, 3)])}
