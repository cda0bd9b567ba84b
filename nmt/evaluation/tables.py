"""nmt-compare's table: one row per run (comparison.md, comparison.csv)."""
from __future__ import annotations

import csv
from pathlib import Path

from nmt.runs.sweep import Run, metric
from nmt.runs.trained import attention_label

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
    "align weight": (None, "{}"),  # trainer.align_loss.weight (0.0 = no alignment supervision)
    "p (BLEU vs baseline)": (None, "{:.4f}"),
}
GOLD_COLUMNS = {"AER": (None, "{:.3f}"), "AER held-out": (None, "{:.3f}"),  # only with --gold
                "best AER held-out (selection)": (None, "{}")}
GOLD_NOTE = ("AER: last layer's cross-attention (heads averaged), forced decoding of the test references. Held-out: "
             "the even-numbered test pairs (2nd, 4th, ...); the best selection is chosen by its AER on the "
             "odd-numbered pairs and reported on the held-out ones, so it is not an oracle figure.")

P_NOTE = ("p: two-sided paired bootstrap of test BLEU against the baseline (Koehn 2004; {} resamples of the test "
          "sentences, one draw shared by all runs; nmt.scoring.paired_bootstrap): the share of resamples whose "
          "BLEU difference, shifted to mean 0 to stand for two equally good systems, is at least as large in size "
          "as the observed one. p = 1: no evidence of a difference (identical outputs give exactly 1); p < 0.05: "
          "a difference this large would arise from the choice of test sentences alone less than 1 time in 20 if "
          "the systems were equally good. It does not cover the variance between seeds (the seed table does, for "
          "runs that differ only in seed).")


def table(runs: list[Run], p_values: dict[str, float]) -> list[dict]:
    """One row per run: the COLUMNS, read from each run's metrics.json (None when absent)."""
    rows = []
    for r in runs:
        row = {"run": r.name, "attention": attention_label(r.config.model), "align weight": align_weight(r)}
        for col, (path, _) in COLUMNS.items():
            if path is not None:
                row[col] = metric(r, path)
        row["p (BLEU vs baseline)"] = p_values.get(r.name)
        row["peak memory kind"] = r.metrics.get("peak_memory_kind")
        rows.append(row)
    return rows


def align_weight(run: Run) -> float:
    """trainer.align_loss.weight of a run (0.0 for runs trained before supervised alignment existed)."""
    return run.config.values.get("trainer", {}).get("align_loss", {}).get("weight", 0.0)


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
    lines += ["", f"BLEU, chrF, TER: test set, beam search, sacreBLEU. Baseline: `{baseline.name}`. "
              + P_NOTE.format(samples),
              f"Peak memory: {', '.join(peak_kinds)} (cuda_max_allocated: GPU allocator peak; cpu_peak_rss: "
              "the job's peak resident set size). Minutes to best: wall time until the best validation.",
              *([GOLD_NOTE] if "AER" in cols else []),
              "", "![validation BLEU](val_bleu.png)", "", "![attention](attention_side_by_side.png)", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
