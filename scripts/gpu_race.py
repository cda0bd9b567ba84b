#!/usr/bin/env python3
"""Race nmt against JoeyNMT 2.3.0 on one GPU: same data, same wall-clock budget, side by side (issue 10).

    python3 scripts/gpu_race.py OUT nmt_transformer joey_transformer   # only these runs
    python3 scripts/gpu_race.py OUT report                             # merge OUT/*.json -> report.md/.json

Every run trains for --budget seconds of wall time (validation included) while nvidia-smi is
sampled, then writes OUT/<run>.json. nmt runs through its CLI (`python3 -m nmt.cli.train`),
JoeyNMT through the kit's run_joey.py (../shared/bench/joeynmt, prepared into .peer by its
prepare.sh). `report` merges every run JSON in OUT; a JoeyNMT run that is missing there is taken
from the kit's h100_reference.json and marked so. docs/gpu_race.md says what every column means.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench_common import TINY, cpu_name, fmt, joey_speeds, peak_flops_for, ratio  # scripts/, beside this file

ROOT = Path(__file__).resolve().parents[1]


def shared(rel: str) -> Path:
    """../shared/<rel> of the checkout, or of the nearest folder above it that has one (worktrees)."""
    return next((d / "shared" / rel for d in ROOT.parents if (d / "shared" / rel).exists()),
                ROOT.parent / "shared" / rel)


KIT = shared("bench/joeynmt")
PEER = ROOT / ".peer"
PREPARE = "echo /.peer/ >> .git/info/exclude; bash ../shared/bench/joeynmt/prepare.sh"


@dataclass(frozen=True)
class Run:
    side: str                       # nmt | joey
    pair: str | None                # which nmt/JoeyNMT pair it belongs to (None: the MFU run)
    family: str = ""                # nmt: model family (for --tiny sizes)
    overrides: tuple[str, ...] = ()  # nmt: Hydra overrides of configs/train.yaml
    joey_config: str = ""           # joey: .peer/configs/<name>.yaml = key of h100_reference.json
    env: dict = field(default_factory=dict)


RUNS = {  # in the order of priority when device time is short (docs/gpu_race.md)
    "nmt_transformer": Run("nmt", "transformer", "transformer", ("+experiment=self",)),
    "nmt_rnn_luong": Run("nmt", "rnn_luong", "rnn", ("model=rnn", "model/attention=luong_general",
                                                     "model.decoder.input_feeding=true")),
    "joey_transformer": Run("joey", "transformer", joey_config="transformer_small"),
    "nmt_transformer_base_mfu": Run("nmt", None, "transformer", ("+experiment=self", "model=transformer_base",
                                                                 "trainer.amp=true")),
    "nmt_rnn_bahdanau": Run("nmt", "rnn_bahdanau", "rnn", ("model=rnn", "model/attention=bahdanau")),
    # JoeyNMT 2.3.0's RNN beam search crashes under fp16: its kit decodes the RNNs in fp32
    "joey_rnn_luong": Run("joey", "rnn_luong", joey_config="rnn_luong", env={"JOEY_TEST_FP32": "1"}),
    "joey_rnn_bahdanau": Run("joey", "rnn_bahdanau", joey_config="rnn_bahdanau", env={"JOEY_TEST_FP32": "1"}),
}
PAIRS = ("transformer", "rnn_luong", "rnn_bahdanau")
MFU_RUN = "nmt_transformer_base_mfu"
# figures of every row: key -> (report.md header, format)
COLUMNS = {
    "tgt_tok_s": ("target tok/s", ",.0f"),
    "steps": ("steps", ",.0f"),
    "epochs": ("epochs", ".1f"),
    "gpu_util_mean": ("GPU util %", ".0f"),
    "peak_mem_mib": ("peak mem MiB", ",.0f"),
    "smi_mem_mib": ("nvidia-smi mem MiB", ",.0f"),
    "test_bleu": ("test2016 BLEU (beam 5)", ".2f"),
    "beam5_sent_s": ("beam-5 sent/s", ",.1f"),
}
RATIOS = ("tgt_tok_s", "test_bleu", "beam5_sent_s", "gpu_util_mean")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("out", type=Path, help="folder for <run>.json, report.md and report.json")
    p.add_argument("runs", nargs="+", help=f"any of {list(RUNS)} and/or report (done last)")
    p.add_argument("--budget", type=float, default=300.0, help="training wall-clock seconds per run")
    p.add_argument("--mfu-steps", type=int, default=200, help="optimiser steps of the MFU run")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="NMT_DATA_DIR for nmt (default: $NMT_DATA_DIR, else ../shared/data, else ./data)")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="run directories, logs and nvidia-smi samples (default OUT/runs)")
    p.add_argument("--reference", type=Path, default=None,
                   help="JoeyNMT H100 figures (default: ../shared/bench/joeynmt/h100_reference.json, "
                        "else .peer/h100_reference.json)")
    p.add_argument("--override", action="append", default=[], help="extra Hydra override for every nmt run")
    p.add_argument("--tiny", action="store_true", help="tiny model sizes (tests, CPU demos)")
    p.add_argument("--peak-flops", type=float, default=None,
                   help="peak FLOP/s for MFU (default: the bf16 datasheet figure of the GPU nvidia-smi names)")
    p.add_argument("--smi-interval-ms", type=int, default=500)
    p.add_argument("--gpu-index", type=int, default=0, help="which GPU nvidia-smi samples")
    args = p.parse_args(argv)
    unknown = [r for r in args.runs if r not in RUNS and r != "report"]
    if unknown:
        p.error(f"unknown run(s) {unknown}; choose from {list(RUNS)} or report")
    args.work_dir = args.work_dir or args.out / "runs"
    args.data_dir = args.data_dir or default_data_dir()
    return args


def default_data_dir() -> Path:
    """$NMT_DATA_DIR, else ../shared/data beside the checkout, else ./data (what a GPU machine gets)."""
    if os.environ.get("NMT_DATA_DIR"):
        return Path(os.environ["NMT_DATA_DIR"])
    data = shared("data")
    return data if data.is_dir() else ROOT / "data"


class GpuSampler:
    """nvidia-smi polled in a background process during a run: mean utilisation and peak memory.

    Utilisation is averaged over the samples taken while the GPU held more memory than before the
    run (the run's CUDA context exists: training, validation and the final beam-5 evaluation), so
    start-up work on the CPU (tokenizer, caches) counts for neither side. Without nvidia-smi every figure is None.
    """

    def __init__(self, log: Path, interval_ms: int, gpu: int):
        self.log, self.interval_ms, self.gpu = log, interval_ms, gpu
        self.smi = shutil.which("nvidia-smi")
        self.proc = None
        self.idle_mib = None

    def _query(self, *extra: str) -> list[str]:
        return [self.smi, "-i", str(self.gpu), "--query-gpu=utilization.gpu,memory.used",
                "--format=csv,noheader,nounits", *extra]

    def __enter__(self) -> "GpuSampler":
        if self.smi:
            first = _smi_rows(subprocess.run(self._query(), capture_output=True, text=True, check=False).stdout)
            self.idle_mib = first[0][1] if first else 0.0
            self.out = self.log.open("w")
            self.proc = subprocess.Popen(self._query("-lms", str(self.interval_ms)), stdout=self.out,
                                         stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.out.close()

    def summary(self) -> dict:
        """{available, samples, util_mean, util_mean_all, mem_peak_mib (above idle), idle_mib, device}."""
        if not self.smi:
            return {"available": False, "samples": 0, "util_mean": None, "util_mean_all": None,
                    "mem_peak_mib": None, "idle_mib": None, "device": None}
        rows = _smi_rows(self.log.read_text())
        busy = [u for u, m in rows if m > self.idle_mib] or [u for u, _ in rows]
        mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
        return {"available": True, "samples": len(rows), "util_mean": mean(busy),
                "util_mean_all": mean([u for u, _ in rows]),
                "mem_peak_mib": max((m for _, m in rows), default=self.idle_mib) - self.idle_mib,
                "idle_mib": self.idle_mib, "device": gpu_name(self.smi, self.gpu)}


def _smi_rows(text: str) -> list[tuple[float, float]]:
    """(utilisation %, memory MiB) of every well-formed nvidia-smi csv line; '[N/A]' lines skipped."""
    rows = []
    for line in text.splitlines():
        try:
            util, mem = (float(x) for x in line.split(","))
        except ValueError:
            continue
        rows.append((util, mem))
    return rows


def gpu_name(smi: str | None, gpu: int) -> str | None:
    """The GPU's name as nvidia-smi reports it (the key of the peak FLOP/s table)."""
    if not smi:
        return None
    out = subprocess.run([smi, "-i", str(gpu), "--query-gpu=name", "--format=csv,noheader"],
                         capture_output=True, text=True, check=False).stdout.strip()
    return out or None


def nmt_command(name: str, args: argparse.Namespace, run_dir: Path) -> list[str]:
    """`python3 -m nmt.cli.train` with the run's overrides, the budget and this run's directory."""
    run = RUNS[name]
    extra = [f"trainer.max_steps={args.mfu_steps}"] if name == MFU_RUN else []
    tiny = list(TINY[run.family]) if args.tiny else []
    return [sys.executable, "-m", "nmt.cli.train", *run.overrides, *tiny, *extra,
            f"trainer.max_time_s={args.budget}", "logger.progress_bar=false", *args.override,
            f"run_dir={run_dir}", f"hydra.run.dir={run_dir}"]


def nmt_figures(run_dir: Path) -> dict:
    """The race's figures from nmt's metrics.json (its interface: keys documented in docs/gpu_race.md)."""
    m = json.loads((run_dir / "metrics.json").read_text())
    return {"tgt_tok_s": m["train_tokens_per_s"], "steps": m["steps"], "epochs": m["epochs"],
            "peak_mem_mib": m.get("peak_memory_mb"), "test_bleu": m["test"]["bleu"],
            "beam5_sent_s": m.get("decode_sentences_per_s"), "parameters": m.get("parameters"),
            "bleu_signature": m["test"].get("bleu_signature"), "peak_mem_kind": m.get("peak_memory_kind")}


def joey_site(work: Path) -> Path:
    """Install the kit's JoeyNMT wheels (.peer/whl, put there by prepare.sh) into WORK/joey_site once."""
    missing = [p for p in ("run_joey.py", "m30k/spm_joint8k.model") if not (PEER / p).is_file()]
    wheels = sorted((PEER / "whl").glob("*.whl"))
    if not any(w.name.startswith("joeynmt-2.3.0") for w in wheels):
        missing.append("whl/joeynmt-2.3.0-*.whl")
    if missing:
        raise SystemExit(f"JoeyNMT kit not prepared: {', '.join(str(PEER / m) for m in missing)} missing. "
                         f"From the project root run `{PREPARE}`, then carry .peer to the GPU machine.")
    site = work / "joey_site"
    if not (site / "joeynmt").is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                        "--target", str(site), *map(str, wheels)], check=True)
    return site


def joey_command(name: str, args: argparse.Namespace, run_dir: Path) -> tuple[list[str], dict]:
    """run_joey.py CONFIG BUDGET SUMMARY (as the kit's dev_run.sh), with the wheels on PYTHONPATH."""
    run = RUNS[name]
    site = joey_site(args.work_dir)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
           "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", **run.env}
    cmd = [sys.executable, str(PEER / "run_joey.py"), str(PEER / "configs" / f"{run.joey_config}.yaml"),
           str(args.budget), str(run_dir / "summary.json")]
    return cmd, env


def joey_figures(summary: dict) -> dict:
    """The race's figures from a run_joey.py summary (a live run or an h100_reference.json entry)."""
    speeds = joey_speeds(summary)
    alloc = summary.get("max_mem_alloc_GiB")
    return {"tgt_tok_s": speeds["tgt_tok_s"], "steps": summary.get("steps"),
            "epochs": summary.get("epochs_done_fractional"), "peak_mem_mib": alloc * 1024 if alloc else None,
            "test_bleu": summary.get("test_beam5_bleu"), "beam5_sent_s": speeds["beam_sent_s"],
            "parameters": summary.get("n_params"), "bleu_signature": summary.get("sacrebleu_signature"),
            "peak_mem_kind": "cuda_max_allocated" if alloc else None}


def run_one(name: str, args: argparse.Namespace) -> dict:
    """Train one run under the nvidia-smi sampler; its record (figures or error) for OUT/<name>.json."""
    run = RUNS[name]
    run_dir = args.work_dir / name
    shutil.rmtree(run_dir, ignore_errors=True)  # a repeated run replaces the earlier one
    run_dir.mkdir(parents=True)
    if run.side == "nmt":
        cmd, env = nmt_command(name, args, run_dir), {"NMT_DATA_DIR": str(args.data_dir)}
    else:
        cmd, env = joey_command(name, args, run_dir)
    log = args.work_dir / f"{name}.log"
    print(f"[gpu_race] {name}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    with GpuSampler(args.work_dir / f"{name}.smi.csv", args.smi_interval_ms, args.gpu_index) as smi, \
            log.open("w") as out:
        rc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                            stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    gpu = smi.summary()
    record = {"run": name, "side": run.side, "pair": run.pair, "source": "measured", "budget_s": args.budget,
              "device": gpu["device"] or f"cpu: {cpu_name()}", "gpu": gpu, "command": cmd, "rc": rc,
              "wall_s": round(time.perf_counter() - start, 1), "log": str(log), "run_dir": str(run_dir),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    try:
        figures = nmt_figures(run_dir) if run.side == "nmt" else \
            joey_figures(json.loads((run_dir / "summary.json").read_text()))
    except (OSError, KeyError, ValueError) as e:  # the run failed: keep why, and the end of its log
        record["error"] = f"rc {rc}, no figures: {e!r}"
        record["log_tail"] = log.read_text(errors="replace")[-3000:]
        return record
    record["figures"] = {**figures, "gpu_util_mean": gpu["util_mean"], "smi_mem_mib": gpu["mem_peak_mib"]}
    if name == MFU_RUN:
        peak = args.peak_flops or peak_flops_for(gpu["device"])
        record["mfu"] = mfu(figures["parameters"], figures["tgt_tok_s"], peak)
    return record


def mfu(params: int, tok_s: float, peak: float | None) -> dict:
    """MFU = 6 * N * target tokens/s / peak FLOP/s (Kaplan et al. 2020's 6N per token)."""
    return {"formula": "6 * N * tokens/s / peak FLOP/s", "n_params": params, "tokens_per_s": tok_s,
            "peak_flops": peak, "model_flops_per_s": 6 * params * tok_s,
            "mfu": 6 * params * tok_s / peak if peak else None}


def load_records(out: Path) -> dict[str, dict]:
    """Every run JSON in OUT (any file with a known "run"), keyed by run name."""
    records = {}
    for path in sorted(out.glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("run") in RUNS:
            records[record["run"]] = record
    return records


def reference_path(explicit: Path | None) -> Path:
    """--reference, else the kit's h100_reference.json, else the copy in .peer (on a GPU machine)."""
    for path in (explicit, KIT / "h100_reference.json", PEER / "h100_reference.json"):
        if path and path.is_file():
            return path
    raise SystemExit(f"JoeyNMT reference figures not found (looked at {KIT}/h100_reference.json and "
                     f"{PEER}/h100_reference.json): pass --reference PATH, or copy the kit's file into .peer")


def row_of(name: str, record: dict | None, reference: dict, ref_path: Path) -> dict:
    """One report row: measured figures, else (JoeyNMT) the H100 reference, else empty and why."""
    run = RUNS[name]
    row = {"run": name, "side": run.side, "pair": run.pair, "source": "not run", "device": None, "note": "",
           **{key: None for key in COLUMNS}}
    if record and "figures" in record:
        return {**row, **record["figures"], "source": "measured", "device": record["device"],
                "budget_s": record["budget_s"], "note": "" if record["gpu"]["available"] else "no nvidia-smi"}
    if record:
        row.update(source="failed", device=record["device"], note=record["error"])
    if run.side == "joey" and run.joey_config in reference:
        ref = reference[run.joey_config]
        why = "not re-run" if record is None else "this run failed"
        return {**row, **joey_figures(ref), "gpu_util_mean": None, "smi_mem_mib": None, "source": "reference",
                "device": ref.get("gpu"), "budget_s": ref.get("train_loop_wall_s"),
                "note": f"JoeyNMT H100 reference ({ref_path.name}, measured earlier with the same kit; "
                        f"{why} here); no GPU utilisation in it"}
    return row


def pair_ratios(rows: dict[str, dict]) -> dict[str, dict]:
    """nmt / JoeyNMT of every ratio figure, per pair, with where JoeyNMT's side came from."""
    ratios = {}
    for pair in PAIRS:
        ours = next(r for r in rows.values() if r["pair"] == pair and r["side"] == "nmt")
        joey = next(r for r in rows.values() if r["pair"] == pair and r["side"] == "joey")
        ratios[pair] = {"nmt_run": ours["run"], "joey_run": joey["run"], "joey_source": joey["source"],
                        "same_device": ours["source"] == joey["source"] == "measured"  # a reference is another machine
                        and ours["device"] == joey["device"],
                        **{key: ratio(ours[key], joey[key]) for key in RATIOS}}
    return ratios


def build_report(out: Path, reference_file: Path | None) -> dict:
    """Merge OUT/*.json (and the JoeyNMT reference where JoeyNMT was not run) into one report."""
    records = load_records(out)
    ref_path = reference_path(reference_file)
    reference = json.loads(ref_path.read_text())
    order = [f"{side}_{pair}" for pair in PAIRS for side in ("nmt", "joey")] + [MFU_RUN]  # pairs side by side
    rows = {name: row_of(name, records.get(name), reference, ref_path) for name in order}
    mfu_record = records.get(MFU_RUN, {}).get("mfu")
    no_smi = [n for n, r in records.items() if not r["gpu"]["available"]]
    notes = [f"nvidia-smi was not found for {', '.join(no_smi)}: GPU utilisation and nvidia-smi memory are "
             "null (n/a) there"] if no_smi else []
    return {"generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "reference": str(ref_path), "columns": {k: h for k, (h, _) in COLUMNS.items()},
            "rows": list(rows.values()), "ratios": pair_ratios(rows), "mfu": mfu_record, "notes": notes}


def markdown(report: dict) -> str:
    """report.md: the runs table, the nmt / JoeyNMT ratios, MFU with its formula, notes."""
    head = ["run", "source", "device", *(h for h, _ in COLUMNS.values()), "note"]
    lines = ["# nmt vs JoeyNMT 2.3.0: same GPU, same data, same budget", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in report["rows"]:
        cells = [r["run"], r["source"], r["device"] or "", *(fmt(r[k], f) for k, (_, f) in COLUMNS.items()), r["note"]]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    lines += ["", "## nmt / JoeyNMT", "", "| pair | nmt run | JoeyNMT from | both measured here, same GPU | "
              + " | ".join(f"{COLUMNS[k][0]} ratio" for k in RATIOS) + " |", "|" + "---|" * (4 + len(RATIOS))]
    for pair, q in report["ratios"].items():
        lines.append(f"| {pair} | {q['nmt_run']} | {q['joey_run']} ({q['joey_source']}) | {q['same_device']} | "
                     + " | ".join(fmt(q[k], ".2f") for k in RATIOS) + " |")
    m = report["mfu"]
    lines += ["", f"## MFU ({MFU_RUN}: transformer_base, bf16)", "",
              "MFU = 6 * N * tokens/s / peak FLOP/s (N = all parameters, tied once; tokens/s = target tokens "
              "per second of training steps; peak = dense bf16 datasheet figure of the GPU, "
              f"{peak_flops_for('H100 SXM') / 1e12:.0f} TFLOP/s on an H100 SXM)", ""]
    lines.append("not run" if not m else
                 f"N = {m['n_params']:,}, tokens/s = {m['tokens_per_s']:,.0f}, peak = {fmt(m['peak_flops'], '.3g')} "
                 f"FLOP/s -> model FLOP/s = {m['model_flops_per_s']:.3g}, MFU = "
                 f"{'n/a (no peak for this device: --peak-flops)' if m['mfu'] is None else format(m['mfu'], '.1%')}")
    lines += ["", "## Notes", "", *(f"- {n}" for n in report["notes"]),
              f"- JoeyNMT reference figures: {report['reference']}",
              "- columns: see docs/gpu_race.md (target tok/s is the mean over training steps, validation "
              "excluded, on both sides)"]
    return "\n".join(lines) + "\n"


def write_report(out: Path, reference_file: Path | None) -> dict:
    report = build_report(out, reference_file)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    print(markdown(report))
    return report


def main(argv: list[str] | None = None) -> int:
    """Each named run in turn (one JSON each in OUT), then the report if asked; 1 if a run failed."""
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in dict.fromkeys(r for r in args.runs if r != "report"):
        record = run_one(name, args)
        (args.out / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
        if "error" in record:
            failed.append(name)
            print(f"[gpu_race] {name} FAILED: {record['error']}\n{record['log_tail']}", file=sys.stderr)
    if "report" in args.runs:
        write_report(args.out, args.reference)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
