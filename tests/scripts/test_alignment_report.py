"""scripts/alignment_report.py's issue-23 columns on a tiny Transformer trained 10 steps on the toy copy task:
which selection the alignment loss supervises, and local-p's centre error against a gold alignment."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers import TINY_RNN, TINY_TRANSFORMER, TOY_TRAIN, compose_cfg, train

from nmt.runs.trained import load_trained


@pytest.fixture(scope="module")
def report(load_script):
    return load_script("alignment_report")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report_run")
    torch.set_num_threads(1)
    cfg = compose_cfg([o for o in TOY_TRAIN if o not in TINY_RNN] + TINY_TRANSFORMER + [
        f"run_dir={tmp / 'run'}", f"data.cache_dir={tmp / 'cache'}", "data.corpus.task=copy",
        "trainer.max_steps=10", "trainer.num_threads=1", "logger.probe_sentences=0",
        "logger.stats_sentences=0"])
    train(cfg)
    return load_trained(tmp / "run", "best", torch.device("cpu"))


@pytest.fixture(scope="module")
def diagonal_gold(trained, tmp_path_factory):
    """Word i of each test source linked to word i of its target (a copy task)."""
    pairs = trained.load_split("test")
    path = tmp_path_factory.mktemp("gold") / "test.align"
    path.write_text("".join(" ".join(f"{i}-{i}" for i in range(len(s.split()))) + "\n" for s in pairs["src"]))
    return path


def test_the_supervised_selection_is_the_penultimate_layers_head(report, trained):
    names = ["dec.0.cross:h0", "dec.0.cross:h1", "dec.0.cross:mean", "dec.1.cross:h0", "dec.1.cross:h1",
             "dec.1.cross:mean", "all:mean"]
    assert report.supervised_selection(trained, names) == "dec.0.cross:h0"  # align_loss.slot=penultimate, head 0
    assert report.supervised_selection(trained, ["cross"]) == "cross"  # an RNN's one head


def test_no_centres_no_centre_error(report, trained, diagonal_gold):
    assert report.aligned_centre_error(trained, diagonal_gold, torch.device("cpu")) is None


def test_centre_error_is_the_distance_to_the_linked_source_piece(report, trained, diagonal_gold, monkeypatch):
    """Every toy word is two pieces ("▁w", "12"), so target piece t of word t // 2 is linked to source pieces
    2 (t // 2) and 2 (t // 2) + 1: c_t = 2 (t // 2) + 0.5. Centres half a piece after c_t on every row (the
    eos row too, which has no link) give exactly 0.5 when only linked rows count and row t is compared with
    target piece t."""
    pairs = trained.load_split("test")
    assert all(len(trained.src_tok.pieces(ids)) == 2 * len(s.split())
               for ids, s in zip(trained.src_tok.encode(list(pairs["src"])), pairs["src"]))
    real = report.output_maps

    def with_centres(*args, **kwargs):
        return [dataclasses.replace(sm, centres={"cross": 2 * (torch.arange(len(sm.out_ids)) // 2) + 1.0})
                for sm in real(*args, **kwargs)]

    monkeypatch.setattr(report, "output_maps", with_centres)
    assert report.aligned_centre_error(trained, diagonal_gold, torch.device("cpu")) == pytest.approx(0.5)


def test_supervised_rows_carry_the_circularity_mark(report, trained):
    """A run trained with supervision (trainer.align_loss.weight > 0, data.alignment set) gets † on each AER
    cell (report.CIRCULAR explains it); the same run unsupervised does not."""
    import copy
    from pathlib import Path
    from types import SimpleNamespace

    from nmt.runs.config import RunConfig
    names = ["dec.0.cross:h0", "dec.0.cross:h1", "dec.0.cross:mean", "dec.1.cross:h0", "dec.1.cross:h1",
             "dec.1.cross:mean", "all:mean"]
    scores = {n: {"aer": 0.3, "precision": 0.7, "recall": 0.7, "aer_pick": 0.3, "aer_held_out": 0.31} for n in names}
    cell = {"tvd": 0.1, "bleu": 5.0}
    result = {"slots": {s: {c: cell for c in report.COUNTERFACTUALS} for s in ("dec.0.cross", "dec.1.cross")},
              "baseline_bleu": 6.0}
    values = copy.deepcopy(trained.config.values)
    values["trainer"]["align_loss"]["weight"] = 1.0
    values["data"]["alignment"] = "/data/train.align"
    rows = {}
    for name, config in (("plain", trained.config), ("supervised", RunConfig(values))):
        rows[name] = report.summary_row(Path("/nowhere") / name, SimpleNamespace(config=config), scores, result, None)
    assert "†" not in rows["plain"]
    assert rows["supervised"].count(" †") == 4  # AER supervised, last layer, its held-out half, the best pick
    assert rows["supervised"].replace(" †", "").replace("supervised", "plain").replace("| 1 |", "| 0 |", 1) \
        == rows["plain"]  # only the mark (and the weight) differ
