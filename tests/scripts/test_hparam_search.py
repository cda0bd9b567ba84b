"""The hyper-parameter search (configs/search/, docs/search.md): every point of its space is a model nmt-train
accepts, it never decodes the test set, a smoke search on the toy task runs its trials through Hydra's Optuna
sweeper with the validation BLEU as the objective, and scripts/search_log.py turns a sweep into the trial log."""
from __future__ import annotations

import itertools
import json
import os
import sys
from pathlib import Path

import pytest
import yaml
from helpers import TINY_RNN, compose_cfg
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from nmt.cli.common import config_dir, register_resolvers

REPO = Path(__file__).resolve().parents[2]
SEARCH = REPO / "configs" / "search"


def space() -> dict:
    """hydra.sweeper.params of configs/search/default.yaml: {key: [values]} for choices, [low, high] for intervals."""
    params = yaml.safe_load((SEARCH / "default.yaml").read_text())["hydra"]["sweeper"]["params"]
    out = {}
    for override in OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()]):
        value = override.value()
        out[override.get_key_element()] = (list(override.sweep_string_iterator()) if override.is_choice_sweep()
                                           else [str(value.start), str(value.end)])
    return out


def test_every_point_of_the_space_is_a_model_nmt_train_accepts():
    """Every width with every score (luong_dot needs the decoder as wide as the bidirectional encoder: search/size/
    keeps them so), and every value of every other key, compose on top of +search=confirm and pass nmt-train's
    checks (run_settings: the typed settings and the model built)."""
    from nmt.cli.train import run_settings
    params = space()
    assert {"search/size", "model/attention", "model.encoder.num_layers", "data.tokenizer.vocab_size"} <= set(params)
    pairs = [{"search/size": size, "model/attention": score}
             for size, score in itertools.product(params["search/size"], params["model/attention"])]
    others = [k for k in params if k not in ("search/size", "model/attention")]
    width = max(len(params[k]) for k in others)
    points = pairs + [{k: params[k][i % len(params[k])] for k in others} for i in range(width)]
    first = {k: v[0] for k, v in params.items()}
    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        for point in points:
            overrides = [f"{k}={v}" for k, v in {**first, **point}.items()]
            cfg = compose("train", ["+search=confirm", "trainer=cpu", *overrides])
            run_settings(cfg)  # raises naming the key on a bad value
            assert cfg.model.decoder.num_layers == cfg.model.encoder.num_layers, overrides
            assert cfg.model.decoder.hidden_size == 2 * cfg.model.encoder.hidden_size == cfg.model.decoder.emb_size


def test_a_confirm_run_decodes_the_validation_split_where_the_test_split_was():
    cfg = compose_cfg(["+search=confirm", "trainer=cpu"])
    assert cfg.data.splits.test == cfg.data.splits.valid == "val"
    assert compose_cfg(["+search=space", "trainer=cpu"]).data.splits.test == "test_2016_flickr"  # the final run


# --- scripts/search_log.py on a sweep laid out by hand ------------------------------------------------------------

def fake_trial(sweep: Path, name: str, overrides: list[str], bleu: float | None, test_split: str = "val") -> None:
    trial = sweep / name
    (trial / ".hydra").mkdir(parents=True)
    (trial / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (trial / "config.yaml").write_text(yaml.safe_dump({"data": {"splits": {"train": "train", "valid": "val",
                                                                           "test": test_split}}}))
    if bleu is not None:
        (trial / "metrics.json").write_text(json.dumps({"steps": 600, "wall_minutes": 7.25, "best_valid_bleu_greedy":
                                                        bleu - 1, "valid": {"bleu": bleu}, "test": {"bleu": 99.0}}))


@pytest.fixture
def sweep(tmp_path) -> Path:
    root = tmp_path / "2026-01-01_10-00-00"
    shared = ["+search=default", "trainer.max_steps=300", "data.root=/data"]
    fake_trial(root, "0", ["optim.lr=0.0007771224489309301", "model/attention=luong_dot", *shared], 30.5)
    fake_trial(root, "2", ["optim.lr=0.002", "model/attention=luong_general", *shared], 33.25)
    fake_trial(root, "10", ["optim.lr=0.001", "model/attention=luong_concat", *shared], None)
    return root


def rows(log: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in log.splitlines()
            if line.startswith("| ") and not line.startswith("| trial")]


def test_the_log_has_a_row_per_trial_and_the_confirm_commands_of_the_best(load_script, sweep):
    log = load_script("search_log").log_markdown(sweep, top=2)
    head = next(line for line in log.splitlines() if line.startswith("| trial"))
    assert head == ("| trial | lr | attention | steps | wall min | best greedy valid BLEU | valid BLEU (beam) |")
    assert rows(log) == [["0", "0.000777", "luong_dot", "600", "7.2", "29.50", "30.50"],
                         ["2", "0.002", "luong_general", "600", "7.2", "32.25", "**33.25**"],
                         ["10", "0.001", "luong_concat", "", "", "", "no metrics.json (running, failed or stopped)"]]
    assert "3 trials, 2 finished" in log and "`trainer.max_steps=300`" in log and "data.root" not in log
    assert "99.0" not in log  # a trial's test scores are never shown
    commands = [line for line in log.splitlines() if line.startswith("nmt-train")]
    assert commands == ["nmt-train +search=confirm optim.lr=0.002 model/attention=luong_general run_dir=runs/confirm/2",
                        "nmt-train +search=confirm optim.lr=0.0007771224489309301 model/attention=luong_dot "
                        "run_dir=runs/confirm/0"]  # the proxy's budget (trainer.max_steps) and data.root dropped


def test_a_trial_that_decoded_the_test_split_is_refused_and_nothing_written(load_script, sweep, tmp_path):
    fake_trial(sweep, "3", ["optim.lr=0.003"], 40.0, test_split="test_2016_flickr")
    out = tmp_path / "search.md"
    out.write_text("intro\n<!-- search:log -->\nold\n<!-- /search:log -->\n")
    with pytest.raises(SystemExit, match=r"trial 3 decoded the test split .*\+search=default"):
        load_script("search_log").main([str(sweep), "--out", str(out)])
    assert out.read_text() == "intro\n<!-- search:log -->\nold\n<!-- /search:log -->\n"


def test_out_fills_the_marked_block_only_and_refuses_a_file_without_it(load_script, sweep, tmp_path):
    search_log = load_script("search_log")
    page = tmp_path / "search.md"
    page.write_text("# Search\n<!-- search:log -->\nnot yet run\n<!-- /search:log -->\nprose after\n")
    search_log.main([str(sweep), "--out", str(page)])
    text = page.read_text()
    assert text.startswith("# Search\n<!-- search:log -->\nSweep `2026-01-01_10-00-00`: 3 trials")
    assert text.endswith("<!-- /search:log -->\nprose after\n") and "not yet run" not in text
    bare = tmp_path / "bare.md"
    bare.write_text("no markers\n")
    with pytest.raises(SystemExit, match="no `<!-- search:log -->`"):
        search_log.main([str(sweep), "--out", str(bare)])
    assert bare.read_text() == "no markers\n"
    new = tmp_path / "new.md"
    search_log.main([str(sweep), "--out", str(new)])
    assert new.read_text() == f"<!-- search:log -->\n{search_log.log_markdown(sweep, 3)}<!-- /search:log -->\n"


# --- a smoke search: Hydra's Optuna sweeper over the real space, on the toy task ------------------------------------

def optuna_or_skip():
    try:
        import hydra_plugins.hydra_optuna_sweeper  # noqa: F401
        import optuna
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("hydra-optuna-sweeper is not installed and CI=true: install the search extra "
                        "(pip install -e '.[dev]', which includes it)")
        pytest.skip("hydra-optuna-sweeper is not installed: pip install -e '.[search]'")
    return optuna


def test_a_smoke_search_runs_its_trials_on_validation_only(tmp_path, monkeypatch, load_script):
    """3 trials of 4 steps: each trial's directory holds its sampled settings and metrics.json, the value Optuna
    recorded is that metrics.json's validation BLEU, and the final evaluation's "test" is the validation split
    (the toy corpus's real test split differs from it)."""
    optuna = optuna_or_skip()
    import nmt.cli.train as cli
    from nmt.models.build import build_corpus
    studies = []
    create = optuna.create_study
    monkeypatch.setattr(optuna, "create_study", lambda **kw: studies.append(create(**kw)) or studies[-1])
    sweep = tmp_path / "sweep"
    tiny = [o for o in TINY_RNN if "hidden_size" not in o and "tie_embeddings" not in o]
    monkeypatch.setattr(sys, "argv", [
        "nmt-train", "-m", "+search=default", "data=toy", "data.corpus.size=200", "data.corpus.eval_size=12",
        *tiny, "model.encoder.hidden_size=8", "model.decoder.hidden_size=16", "trainer.max_steps=4",
        "trainer.valid_every=4", "trainer.max_tokens=300", "decode.beam_size=2", "optim.warmup_steps=2",
        "logger.tensorboard=false", "logger.stats_sentences=0", "trainer.prefetch=0", "hydra.sweeper.n_trials=3",
        f"data.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}"])
    cli.main()
    (study,) = studies
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    toy = build_corpus(compose_cfg(["data=toy", "data.corpus.eval_size=12", "trainer=cpu"]).data.corpus)
    real_test = [pair["tgt"] for pair in toy.load("test")]
    for trial in study.trials:
        run = sweep / str(trial.number)
        metrics = json.loads((run / "metrics.json").read_text())
        assert trial.value == metrics["valid"]["bleu"] and metrics["steps"] == 4
        overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
        assert {f"{k}={v}" for k, v in trial.params.items()} <= set(overrides) and len(trial.params) >= 8
        assert (run / "test.ref.txt").read_text() == (run / "valid.ref.txt").read_text()
        assert (run / "test.ref.txt").read_text().splitlines() != real_test
    assert yaml.safe_load((sweep / "optimization_results.yaml").read_text())["best_value"] == study.best_value
    log = load_script("search_log").log_markdown(sweep, top=1)
    assert [r[0] for r in rows(log)] == ["0", "1", "2"] and "3 trials, 3 finished" in log
