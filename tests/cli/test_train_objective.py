"""nmt-train's Hydra task returns the validation BLEU: the value a multirun's sweeper (the Optuna search,
configs/search/default.yaml) maximises. Read here as Hydra hands it to the sweeper (a JobReturn, seen by a
Hydra callback), with train() replaced by a stub whose metrics tell valid, test and greedy scores apart."""
from __future__ import annotations

import sys

import pytest
from hydra.experimental.callback import Callback

import nmt.cli.train as cli

RETURNED: list = []
METRICS = {"valid": {"bleu": 37.25}, "test": {"bleu": 12.5}, "best_valid_bleu_greedy": 30.0}


class Recorder(Callback):
    """hydra.callbacks: each job's return value, as the sweeper receives it."""

    def on_job_end(self, config, job_return, **kwargs) -> None:
        RETURNED.append(job_return.return_value)


def test_each_job_returns_its_validation_bleu(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "train", lambda settings, callbacks: METRICS)
    monkeypatch.setattr(sys, "argv", ["nmt-train", "-m", "data=toy", "seed=1,2", f"hydra.sweep.dir={tmp_path}",
                                      f"+hydra.callbacks.recorder._target_={__name__}.Recorder"])
    RETURNED.clear()
    cli.main()
    assert RETURNED == [37.25, 37.25] and all(type(v) is float for v in RETURNED)


@pytest.mark.parametrize("metrics,want", [({}, 0.0),
                                          ({"stopped": "interrupted by SIGTERM", "valid": {"bleu": 21}}, 21.0)])
def test_a_rank_without_metrics_and_a_stopped_run(metrics, want):
    """A torchrun rank > 0 returns {} (rank 0 evaluates); a run a signal stopped, its greedy best."""
    assert cli.objective(metrics) == want and type(cli.objective(metrics)) is float
