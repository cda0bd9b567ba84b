"""The runs of a sweep in one table, two plots and a significance test (behind nmt-compare).

Writes into SWEEP_DIR: comparison.md, comparison.csv, val_bleu.png, attention_side_by_side.png; when runs differ
only in `seed`, also mean ± sd per group and a test over seeds and test sentences (comparison.md, comparison_seeds.csv;
nmt.evaluation.seeds).
A run is any directory below SWEEP_DIR holding metrics.json and config.yaml (a finished nmt-train).
With a gold alignment of the test split (`--gold FILE`), three more columns: AER of the last layer's
cross-attention (heads averaged) on all test pairs and on the held-out even-numbered pairs, and the best
slot/layer/head chosen on the odd-numbered pairs with its AER on the held-out ones (no oracle pick:
nmt.alignment.pipeline).
"""
from __future__ import annotations

import logging
from pathlib import Path

from nmt.evaluation.gold import GoldSettings, gold_aer
from nmt.evaluation.plots import plot_side_by_side, plot_val_bleu
from nmt.evaluation.seeds import config_key, seed_markdown, seed_rows, write_seed_csv
from nmt.evaluation.significance import references, significance
from nmt.evaluation.tables import table, write_csv, write_markdown
from nmt.runs.sweep import Run, find_runs
from nmt.runs.trained import attention_label

log = logging.getLogger("nmt.compare")


class CompareError(ValueError):
    """nmt-compare cannot run as asked (no runs, an ambiguous baseline); the message names the fix."""


def pick_baseline(runs: list[Run], name: str | None) -> Run:
    """The run named exactly, else the one run (or the first of runs differing only in seed) whose name
    or attention label contains `name`; no name: the first run."""
    if name is None:
        return runs[0]
    exact = [r for r in runs if r.name == name]
    found = exact or [r for r in runs if name in r.name or name in attention_label(r.config.model)]
    if len(found) > 1 and len({config_key(r.config.values) for r in found}) == 1:
        return found[0]  # the seeds of one config: its group is the baseline group
    if len(found) != 1:
        raise CompareError(f"--baseline {name!r} matches {len(found)} runs; runs: {', '.join(r.name for r in runs)}")
    return found[0]


def write_seed_groups(runs: list[Run], baseline: Run, samples: int, sweep: Path) -> list[dict]:
    """When runs differ only in `seed`: the groups' mean ± sd and p (nmt.evaluation.seeds) appended to
    comparison.md and in comparison_seeds.csv; returns the groups' rows ([] when every group has one run)."""
    groups = seed_rows(runs, baseline, references(baseline), samples)
    if not groups:
        return []
    with (sweep / "comparison.md").open("a", encoding="utf-8") as f:
        f.write("\n".join(["", *seed_markdown(groups, samples)]))
    write_seed_csv(groups, sweep / "comparison_seeds.csv")
    for g in groups:
        log.info("%s: %d seeds, test BLEU %s, p %s", g["group"], g["seeds"], g["BLEU"], g["p (BLEU vs baseline group)"])
    return groups


def compare(sweep: Path, baseline_name: str | None, probe: int, samples: int, gold: GoldSettings | None) -> list[dict]:
    """Write comparison.md/.csv, val_bleu.png and attention_side_by_side.png into `sweep`; returns the rows.
    With `gold`, every row also has the GOLD_COLUMNS (nmt.alignment) on the test split."""
    runs = find_runs(sweep)
    if not runs:
        raise CompareError(f"no runs (metrics.json + config.yaml) below {sweep}")
    baseline = pick_baseline(runs, baseline_name)
    rows = table(runs, significance(runs, baseline, samples))
    if gold is not None:
        for run, row in zip(runs, rows):
            row.update(gold_aer(run, gold))
    write_csv(rows, sweep / "comparison.csv")
    write_markdown(rows, sweep / "comparison.md", baseline, samples)
    write_seed_groups(runs, baseline, samples, sweep)
    plot_val_bleu(runs, sweep / "val_bleu.png")
    plot_side_by_side(runs, probe, sweep / "attention_side_by_side.png")
    log.info("%d runs compared against %s: %s", len(runs), baseline.name, sweep / "comparison.md")
    return rows
