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

import csv
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from nmt.evaluation.seeds import config_key, seed_markdown, seed_rows, write_seed_csv
from nmt.logging import attention_label

log = logging.getLogger("nmt.compare")

# column -> (how to read it from a run's metrics.json, markdown format)
COLUMNS = {
    "run": (None, "{}"),
    "attention": (None, "{}"),
    "BLEU": (("test", "bleu"), "{:.2f}"),
    "chrF": (("test", "chrf"), "{:.2f}"),
    "TER": (("test", "ter"), "{:.2f}"),
    "valid BLEU": (("valid", "bleu"), "{:.2f}"),
    "parameters": (("parameters",), "{:,}"),
    "train tokens/s": (("train_tokens_per_s",), "{:,.0f}"),
    "decode sentences/s": (("decode_sentences_per_s",), "{:.1f}"),
    "peak memory MB": (("peak_memory_mb",), "{:,.0f}"),
    "minutes to best": (("minutes_to_best",), "{:.2f}"),
    "p (BLEU vs baseline)": (None, "{:.4f}"),
}
GOLD_COLUMNS = {"AER": (None, "{:.3f}"), "AER held-out": (None, "{:.3f}"),  # only with --gold
                "best AER held-out (selection)": (None, "{}")}
GOLD_NOTE = ("AER: last layer's cross-attention (heads averaged), forced decoding of the test references. Held-out: "
             "the even-numbered test pairs (2nd, 4th, ...); the best selection is chosen by its AER on the "
             "odd-numbered pairs and reported on the held-out ones, so it is not an oracle figure.")


@dataclass
class Run:
    name: str           # path below the sweep directory, e.g. "2_local_p"
    path: Path
    metrics: dict
    cfg: dict


def natural_key(name: str) -> list:
    """"10_x" after "9_x": numbers compare as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def find_runs(sweep: Path) -> list[Run]:
    runs = []
    for metrics in sweep.rglob("metrics.json"):
        run_dir = metrics.parent
        if not (run_dir / "config.yaml").is_file():
            log.warning("skipping %s: no config.yaml next to metrics.json", run_dir)
            continue
        cfg = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"))
        runs.append(Run(run_dir.relative_to(sweep).as_posix(), run_dir, json.loads(metrics.read_text()), cfg))
    return sorted(runs, key=lambda r: natural_key(r.name))


def pick_baseline(runs: list[Run], name: str | None) -> Run:
    """The run named exactly, else the one run (or the first of runs differing only in seed) whose name
    or attention label contains `name`; no name: the first run."""
    if name is None:
        return runs[0]
    exact = [r for r in runs if r.name == name]
    found = exact or [r for r in runs if name in r.name or name in attention_label(r.cfg["model"])]
    if len(found) > 1 and len({config_key(r.cfg) for r in found}) == 1:
        return found[0]  # the seeds of one config: its group is the baseline group
    if len(found) != 1:
        raise SystemExit(f"--baseline {name!r} matches {len(found)} runs; runs: {', '.join(r.name for r in runs)}")
    return found[0]


def metric(run: Run, path: tuple) -> float | None:
    value = run.metrics
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def references(run: Run) -> list[str] | None:
    """test.ref.txt (written by nmt-train), else the test split loaded again from the run's data config."""
    ref = run.path / "test.ref.txt"
    if ref.is_file():
        return ref.read_text(encoding="utf-8").splitlines()
    try:
        from hydra.utils import instantiate
        data = OmegaConf.create(run.cfg["data"])
        return list(instantiate(data.corpus).load(data.splits.test)["tgt"])
    except Exception as e:  # noqa: BLE001 - any failure only costs the significance column
        log.warning("%s: no test.ref.txt and the test split could not be loaded (%s)", run.name, e)
        return None


def significance(runs: list[Run], baseline: Run, samples: int) -> dict[str, float]:
    """Paired bootstrap resampling (Koehn 2004) of test BLEU against the baseline, by sacrebleu."""
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import PairedTest
    logging.getLogger("sacrebleu").setLevel(logging.WARNING)  # one INFO line per system and step otherwise
    refs = references(baseline)
    systems = [(r.name, (r.path / "test.beam.hyp.txt").read_text(encoding="utf-8").splitlines())
               for r in [baseline, *[r for r in runs if r is not baseline]]
               if (r.path / "test.beam.hyp.txt").is_file()]
    systems = [(n, h) for n, h in systems if refs is not None and len(h) == len(refs)]
    if not systems or systems[0][0] != baseline.name or len(systems) < 2:
        log.warning("significance test skipped: needs test.beam.hyp.txt of the baseline and another run, "
                    "and the references")
        return {}
    _, scores = PairedTest(systems, {"BLEU": BLEU()}, [refs], test_type="bs", n_samples=samples)()
    return {name: res.p_value for name, res in zip(scores["System"], scores["BLEU"]) if res.p_value is not None}


@dataclass
class GoldSettings:
    path: Path          # gold alignment of each run's test split (Pharaoh or talp)
    fmt: str            # pharaoh | talp
    one_based: bool     # Pharaoh indices count from 1


def test_pairs(run: Run) -> tuple[list[str], list[str]]:
    """The run's test split (source, reference) lines, from its data config."""
    from hydra.utils import instantiate
    data = OmegaConf.create(run.cfg["data"])
    pairs = instantiate(data.corpus).load(data.splits.test)
    return list(pairs["src"]), list(pairs["tgt"])


def gold_aer(run: Run, gold: GoldSettings) -> dict:
    """{"AER": last cross layer (heads averaged) on the test split, "AER held-out": the same on its even-numbered
    pairs, "best AER held-out (selection)": "0.123 (selection)" chosen on the odd-numbered pairs}; forced
    decoding of the references with the run's best checkpoint."""
    import torch
    from nmt.alignment.extract import AlignSettings, last_selection
    from nmt.alignment.pipeline import align_texts, best_selection, gold_scores
    from nmt.training.run_dir import load_trained
    trained = load_trained(run.path, "best", torch.device("cpu"))
    src, ref = test_pairs(run)
    links, _ = align_texts(trained, src, ref, AlignSettings(False, None), None, torch.device("cpu"), 64)
    scores = gold_scores(links, src, ref, str(gold.path), gold.fmt, gold.one_based)
    last, best = scores[last_selection(list(scores))], best_selection(scores)
    return {"AER": last["aer"], "AER held-out": last["aer_held_out"],
            "best AER held-out (selection)": f"{scores[best]['aer_held_out']:.3f} ({best})"}


def table(runs: list[Run], p_values: dict[str, float]) -> list[dict]:
    """One row per run: the COLUMNS, read from each run's metrics.json (None when absent)."""
    rows = []
    for r in runs:
        row = {"run": r.name, "attention": attention_label(r.cfg["model"])}
        for col, (path, _) in COLUMNS.items():
            if path is not None:
                row[col] = metric(r, path)
        row["p (BLEU vs baseline)"] = p_values.get(r.name)
        row["peak memory kind"] = r.metrics.get("peak_memory_kind")
        rows.append(row)
    return rows


def columns(rows: list[dict]) -> dict:
    """COLUMNS, plus GOLD_COLUMNS when the rows carry AER."""
    return {**COLUMNS, **GOLD_COLUMNS} if rows and "AER" in rows[0] else COLUMNS


def write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=[*columns(rows), "peak memory kind"])
        writer.writeheader()
        writer.writerows([{k: ("" if v is None else v) for k, v in row.items()} for row in rows])


def write_markdown(rows: list[dict], path: Path, baseline: Run, samples: int) -> None:
    cols = columns(rows)
    fmt = lambda col, v: "–" if v is None else cols[col][1].format(v)  # noqa: E731
    lines = [f"# Comparison of {len(rows)} runs", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(c, row[c]) for c in cols) + " |" for row in rows]
    peak_kinds = sorted({str(row["peak memory kind"]) for row in rows})
    lines += ["", f"BLEU, chrF, TER: test set, beam search, sacreBLEU. Baseline: `{baseline.name}`. p: paired "
              f"bootstrap resampling of test BLEU against the baseline (sacrebleu, {samples} resamples; "
              "p < 0.05: the difference is unlikely to be chance).",
              f"Peak memory: {', '.join(peak_kinds)} (cuda_max_allocated: GPU allocator peak; cpu_peak_rss: "
              "the job's peak resident set size). Minutes to best: wall time until the best validation.",
              *([GOLD_NOTE] if "AER" in cols else []),
              "", "![validation BLEU](val_bleu.png)", "", "![attention](attention_side_by_side.png)", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def plot_val_bleu(runs: list[Run], path: Path) -> None:
    """Validation BLEU (greedy) against steps and against wall-clock minutes, one line per run."""
    from nmt.logging.heatmaps import new_figure, save_figure
    fig = new_figure(11, 4.2)
    by_step, by_time = fig.subplots(1, 2)
    for r in runs:
        hist = r.metrics.get("history", [])
        label = f"{r.name} ({attention_label(r.cfg['model'])})"
        by_step.plot([h["step"] for h in hist], [h["bleu"] for h in hist], marker=".", label=label)
        by_time.plot([h["elapsed_s"] / 60 for h in hist], [h["bleu"] for h in hist], marker=".", label=label)
    for ax, xlabel in ((by_step, "step"), (by_time, "wall-clock minutes (validation included)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation BLEU (greedy)")
        ax.grid(alpha=0.3)
    by_time.legend(fontsize=7)
    save_figure(fig, path)


def plot_side_by_side(runs: list[Run], probe: int, path: Path) -> bool:
    """Each run's final map of probe sentence `probe` (attention/probes.pt; decoder->encoder slot,
    the last layer's for a Transformer, heads averaged)."""
    import torch
    from nmt.logging import Probe
    from nmt.logging.heatmaps import save_figure, side_by_side_figure
    panels = []
    for r in runs:
        saved = r.path / "attention" / "probes.pt"
        if not saved.is_file():
            log.warning("%s: no attention/probes.pt, left out of the side-by-side image", r.name)
            continue
        probes = torch.load(saved, weights_only=True)
        if probe >= len(probes):
            continue
        p = Probe(**probes[probe])
        cross = sorted((k for k in p.maps if k.endswith("cross")), key=natural_key)  # "cross" or dec.<i>.cross
        slot = cross[-1]
        panels.append((f"{r.name}\n{attention_label(r.cfg['model'])}\n{slot}", p, slot))
    if panels:
        save_figure(side_by_side_figure(panels), path)
    return bool(panels)


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


def compare(sweep: Path, baseline_name: str | None = None, probe: int = 0, samples: int = 1000,
            gold: GoldSettings | None = None) -> list[dict]:
    """Write comparison.md/.csv, val_bleu.png and attention_side_by_side.png into `sweep`; returns the rows.
    With `gold`, every row also has the GOLD_COLUMNS (nmt.alignment) on the test split."""
    runs = find_runs(sweep)
    if not runs:
        raise SystemExit(f"no runs (metrics.json + config.yaml) below {sweep}")
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
