"""Comparisons over seeds (behind nmt-compare): runs that differ only in `seed` form one group; each
group gets mean ± standard deviation of its test scores, and a two-level paired bootstrap against the
baseline's group tests the difference of mean BLEU over both sources of chance.

The test (Koehn 2004's paired bootstrap, extended to seeds): every resample draws the test sentences
with replacement (nmt.scoring.bootstrap_draws: sacreBLEU's draw, the same for every run, so the test is
paired on the test set) and, within each group, the seeds with replacement; the statistic is
d = mean_seeds BLEU(group) - mean_seeds BLEU(baseline group), and p is nmt.scoring.bootstrap_p: the
resampled d shifted to mean 0 for the null, two-sided, p = (#{|d_b - mean d_b| >= |d_observed|} + 1) /
(resamples + 1). With one seed per group it is the per-run p of nmt-compare's table
(nmt.scoring.paired_bootstrap), to the last digit. Seed resampling with k seeds underestimates the seed
variance by (k - 1) / k: with 3 seeds, read p near 0.05 with care.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nmt.runs.trained import attention_label
from nmt.scoring import (BootstrapDraws, bleu_of, bootstrap_draws, bootstrap_p, resampled_bleu,
                         sentence_stats)

log = logging.getLogger("nmt.compare")

SEED_KEYS = ("seed", "run_dir")  # what may differ between the runs of one group
SCORES = {"BLEU": ("test", "bleu"), "chrF": ("test", "chrf"), "TER": ("test", "ter"), "valid BLEU": ("valid", "bleu")}
TEST_NAME = ("two-level paired bootstrap of mean test BLEU: test sentences resampled (paired across all runs) and "
             "seeds resampled within each group; two-sided, null by shifting the resampled differences to mean 0")


@dataclass
class SeedGroup:
    key: str                        # the runs' shared config (seed and run_dir removed), as JSON
    runs: list = field(default_factory=list)   # compare.Run objects, in the sweep's order

    @property
    def seeds(self) -> list:
        return [r.config.seed for r in self.runs]


def config_key(cfg: dict) -> str:
    """The resolved config without the keys that may differ between seeds, as canonical JSON."""
    return json.dumps({k: v for k, v in cfg.items() if k not in SEED_KEYS}, sort_keys=True, default=str)


def group_by_seed(runs: list) -> list[SeedGroup]:
    """Runs whose configs are equal but for `seed` (and run_dir), in order of first appearance."""
    groups: dict[str, SeedGroup] = {}
    for r in runs:
        groups.setdefault(config_key(r.config.values), SeedGroup(config_key(r.config.values))).runs.append(r)
    for g in groups.values():
        if len(set(map(str, g.seeds))) < len(g.runs):
            log.warning("runs %s share a config and a seed: repeated runs, counted as separate seeds",
                        ", ".join(r.name for r in g.runs))
    return list(groups.values())


def mean_sd(values: list[float]) -> tuple[float, float] | None:
    """Mean and sample standard deviation (n - 1; nan for one value); None without values."""
    if not values:
        return None
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else math.nan
    return mean, sd


def _score(metrics: dict, path: tuple) -> float | None:
    for key in path:
        if not isinstance(metrics, dict) or key not in metrics:
            return None
        metrics = metrics[key]
    return metrics


def summary(group: SeedGroup) -> dict:
    """{"seeds": n, "seed list": "1,2,3", score: (mean, sd) or None} over the group's runs."""
    row = {"seeds": len(group.runs), "seed list": ",".join(map(str, group.seeds))}
    for name, path in SCORES.items():
        values = [v for v in (_score(r.metrics, path) for r in group.runs) if v is not None]
        row[name] = mean_sd(values) if len(values) == len(group.runs) else None
    return row


def resampled_means(stats: list[np.ndarray], d: BootstrapDraws) -> np.ndarray:
    """stats: one (N, 10) array per seed -> (samples,) mean BLEU over seeds drawn with replacement."""
    per_seed = np.array([resampled_bleu(s, d) for s in stats])  # (k, samples)
    if len(stats) == 1:
        return per_seed[0]
    pick = d.rng.integers(0, len(stats), size=(d.sentences.shape[0], len(stats)))  # (samples, k)
    return per_seed[pick, np.arange(d.sentences.shape[0])[:, None]].mean(1)  # (samples,)


def pooled_p_value(group: list[np.ndarray], baseline: list[np.ndarray], samples: int) -> float:
    """p of the difference of mean BLEU over seeds between two groups (module docstring)."""
    observed = np.mean([bleu_of(s.sum(0)) for s in group]) - np.mean([bleu_of(s.sum(0)) for s in baseline])
    d = bootstrap_draws(len(group[0]), samples)
    return bootstrap_p(observed, resampled_means(group, d) - resampled_means(baseline, d))  # (samples,) signed d_b


def group_stats(group: SeedGroup, refs: list[str]) -> list[np.ndarray] | None:
    """Sufficient statistics of every run's test.beam.hyp.txt, or None if one is missing or mis-sized."""
    out = []
    for r in group.runs:
        hyp = Path(r.path) / "test.beam.hyp.txt"
        lines = hyp.read_text(encoding="utf-8").splitlines() if hyp.is_file() else None
        if lines is None or len(lines) != len(refs):
            log.warning("%s: no test.beam.hyp.txt with %d lines: its group has no p-value", r.name, len(refs))
            return None
        out.append(sentence_stats(lines, refs))
    return out


def seed_significance(groups: list[SeedGroup], baseline: SeedGroup, refs: list[str] | None,
                      samples: int) -> dict[str, float]:
    """{group key: p against the baseline group} for every other group with hypotheses."""
    base = group_stats(baseline, refs) if refs is not None else None
    if base is None:
        log.warning("seed significance skipped: needs the baseline group's test.beam.hyp.txt and the references")
        return {}
    p = {}
    for g in groups:
        if g is not baseline and (stats := group_stats(g, refs)) is not None:
            p[g.key] = pooled_p_value(stats, base, samples)
    return p


def _flat(cfg: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif f"{prefix}{k}" not in SEED_KEYS:
            out[f"{prefix}{k}"] = json.dumps(v, default=str)
    return out


def group_names(groups: list[SeedGroup]) -> list[str]:
    """The attention label of each group, plus the config values that tell apart groups sharing one."""
    labels = [attention_label(g.runs[0].config.model) for g in groups]
    names = []
    for g, label in zip(groups, labels):
        same = [h for h, other in zip(groups, labels) if other == label]
        if len(same) == 1:
            names.append(label)
            continue
        flats = [_flat(h.runs[0].config.values) for h in same]
        differ = sorted(k for k in set().union(*flats) if len({f.get(k) for f in flats}) > 1)
        mine = _flat(g.runs[0].config.values)
        names.append(f"{label} ({', '.join(f'{k}={mine.get(k)}' for k in differ)})")
    return names


def seed_rows(runs: list, baseline_run, refs: list[str] | None, samples: int) -> list[dict]:
    """One row per seed group: name, runs, seeds, mean ± sd of the SCORES, p against the baseline's group;
    [] when no two runs differ only in seed."""
    groups = group_by_seed(runs)
    if all(len(g.runs) == 1 for g in groups):
        return []  # one run per config: the per-run table says it all
    base = next(g for g in groups if baseline_run in g.runs)
    p = seed_significance(groups, base, refs, samples)
    return [{"group": name, "runs": " ".join(r.name for r in g.runs), **summary(g),
             "p (BLEU vs baseline group)": p.get(g.key), "baseline": g is base}
            for g, name in zip(groups, group_names(groups))]


def _pm(value: tuple[float, float] | None) -> str:
    if value is None:
        return "–"
    mean, sd = value
    return f"{mean:.2f} ± {'–' if math.isnan(sd) else f'{sd:.2f}'}"


def seed_markdown(rows: list[dict], samples: int) -> list[str]:
    """The seed table's markdown lines (a section of comparison.md)."""
    cols = ["group", "seeds", *SCORES, "p (BLEU vs baseline group)"]
    lines = ["## Over seeds", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        p = row["p (BLEU vs baseline group)"]
        cells = [row["group"] + (" (baseline)" if row["baseline"] else ""), f"{row['seeds']} ({row['seed list']})",
                 *(_pm(row[c]) for c in SCORES), "–" if p is None else f"{p:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Runs whose resolved configs differ only in `seed` form a group. Scores: mean ± sample standard "
              f"deviation over the group's seeds. p: {TEST_NAME}, {samples} resamples; it accounts for the "
              "variance between seeds and for the choice of test sentences.", ""]
    return lines


def write_seed_csv(rows: list[dict], path: Path) -> None:
    """comparison_seeds.csv: one row per group, mean and sd in separate columns, and the test's name."""
    import csv
    fields = ["group", "runs", "seeds", "seed list", *(f"{c} {s}" for c in SCORES for s in ("mean", "sd")),
              "p (BLEU vs baseline group)", "baseline", "test"]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            out = {k: row[k] for k in ("group", "runs", "seeds", "seed list", "p (BLEU vs baseline group)",
                                         "baseline")}
            for c in SCORES:
                out[f"{c} mean"], out[f"{c} sd"] = row[c] if row[c] is not None else ("", "")
            writer.writerow({**{k: ("" if v is None else v) for k, v in out.items()}, "test": TEST_NAME})
