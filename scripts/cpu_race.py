#!/usr/bin/env python3
"""nmt beside JoeyNMT 2.3.0 on a CPU: same cores, same data, equal wall budget (docs/benchmark.md).

    python3 scripts/cpu_race.py OUT --budget 240 --before 08efef0

For each model in turn (the RNN matched to nmt's default, then the Transformer 3+3 d256 of
`+experiment=self`): JoeyNMT with the kit's CPU config (`../shared/bench/joeynmt/cpu/`, run by
`.peer/venv/bin/python .peer/run_joey.py`), nmt at --before (extracted with `git archive` into
OUT/src_<rev>) and nmt of this checkout. Each run trains for --budget seconds of wall time
(validation included), then decodes test_2016_flickr with beam 5 from its best checkpoint.
OUT/<run>.json holds each run's figures; OUT/report.md and report.json the table.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench_common import cpu_name, fmt, loadavg, ratio  # scripts/, beside this file
from gpu_race import KIT, PEER, PREPARE, ROOT, default_data_dir, joey_figures, nmt_figures

MODELS = {  # model -> (nmt overrides, the kit's JoeyNMT CPU config)
    "rnn": ((), "rnn_cpu"),
    "transformer": (("+experiment=self",), "transformer_cpu"),
}
# `python -c` puts the working directory (ROOT) first on sys.path; dropping it lets PYTHONPATH pick the tree
# (python -P does the same, from 3.11 on only)
DROP_CWD = "import sys; sys.path.pop(0); "
RUN_TRAIN = DROP_CWD + ("import runpy; sys.argv[0] = 'nmt-train'; "
                        "runpy.run_module('nmt.cli.train', run_name='__main__')")
VENV_SETUP = ("python3 -m venv .peer/venv && .peer/venv/bin/pip install torch==2.13.0 && .peer/venv/bin/pip "
              "install --no-deps .peer/whl/*.whl && .peer/venv/bin/pip install pyyaml sentencepiece sacrebleu "
              "tensorboard subword-nmt sacremoses six wrapt yapf "
              "matplotlib seaborn")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("out", type=Path, help="folder for <run>.json, report.md, report.json and the run dirs")
    p.add_argument("--budget", type=float, default=240.0, help="training wall-clock seconds per run")
    p.add_argument("--before", default=None, help="also race nmt at this git revision (e.g. 08efef0)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--sides", nargs="+", default=["joey", "before", "nmt"], choices=["joey", "before", "nmt"],
                   help="which systems run (before needs --before)")
    p.add_argument("--timeout", type=float, default=2400.0, help="seconds before a run (training + test) is killed")
    p.add_argument("--override", action="append", default=[], help="extra Hydra override for every nmt run")
    args = p.parse_args(argv)
    if "before" in args.sides and not args.before:
        args.sides.remove("before")
    return args


def check_joey() -> Path:
    """The venv's python that runs JoeyNMT; exits naming the set-up commands when the kit is not ready."""
    python = PEER / "venv" / "bin" / "python"
    if not (PEER / "run_joey.py").is_file() or not (PEER / "m30k" / "spm_joint8k.model").is_file():
        raise SystemExit(f"JoeyNMT kit not prepared in {PEER}: from the project root run `{PREPARE}`")
    if not python.is_file():
        raise SystemExit(f"JoeyNMT's venv {python} is missing: from the project root run `{VENV_SETUP}`")
    return python


def before_tree(out: Path, rev: str) -> Path:
    """nmt's source at REV (git archive into OUT/src_REV, once): run with it first on PYTHONPATH."""
    src = out / f"src_{rev}"
    if not (src / "nmt").is_dir():
        src.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    return src


def command(side: str, model: str, args: argparse.Namespace, run_dir: Path) -> tuple[list[str], dict]:
    """The run's command line and extra environment."""
    overrides, joey_config = MODELS[model]
    if side == "joey":
        return [str(check_joey()), str(PEER / "run_joey.py"), str(KIT / "cpu" / f"{joey_config}.yaml"),
                str(args.budget), str(run_dir / "summary.json")], {}
    src = before_tree(args.out, args.before) if side == "before" else ROOT
    env = {"NMT_DATA_DIR": str(default_data_dir()),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))}
    return [sys.executable, "-c", RUN_TRAIN, *overrides, f"trainer.max_time_s={args.budget}",
            "logger.progress_bar=false", *args.override, f"run_dir={run_dir}", f"hydra.run.dir={run_dir}"], env


def run_one(side: str, model: str, args: argparse.Namespace) -> dict:
    """Train and test one run; its record (figures, or the error and the end of its log)."""
    name = f"{side}_{model}"
    run_dir = args.out / "runs" / name
    run_dir.mkdir(parents=True)  # main checked that no run dir exists
    cmd, env = command(side, model, args, run_dir)
    log = args.out / "runs" / f"{name}.log"
    print(f"[cpu_race] {name}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    record = {"run": name, "side": side, "model": model, "budget_s": args.budget, "command": cmd,
              "revision": args.before if side == "before" else head_revision() if side == "nmt" else "joeynmt 2.3.0",
              "load_1m_start": loadavg(),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat("T", "seconds")}
    start = time.perf_counter()
    with log.open("w") as out:
        try:
            rc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1", **env}, stdout=out,
                                stderr=subprocess.STDOUT, timeout=args.timeout, check=False).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    record.update(rc=rc, wall_s=round(time.perf_counter() - start, 1), load_1m_end=loadavg())
    if side != "joey":  # which source tree the run imported (before: OUT/src_<rev>)
        which = DROP_CWD + "import nmt; print(nmt.__file__)"
        record["nmt_source"] = subprocess.run([sys.executable, "-c", which], cwd=ROOT,
                                              env={**os.environ, **env}, capture_output=True, text=True).stdout.strip()
    try:
        record["figures"] = nmt_figures(run_dir) if side != "joey" else \
            joey_figures(json.loads((run_dir / "summary.json").read_text()))
    except (OSError, KeyError, ValueError) as e:
        record["error"] = f"rc {rc}, no figures: {e!r}"
        record["log_tail"] = log.read_text(errors="replace")[-3000:]
    return record


def head_revision() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def markdown(records: list[dict]) -> str:
    """One row per run, with nmt / JoeyNMT of the same model."""
    lines = [f"CPU: {cpu_name()}, {os.cpu_count()} logical cores; budget "
             f"{records[0]['budget_s']:.0f} s of training wall time per run (validation included)", "",
             "| model | system | revision | steps | target tok/s | tok/s ÷ JoeyNMT | test2016 BLEU (beam 5) "
             "| load at start / end |", "|---|---|---|---:|---:|---:|---:|---|"]
    joey = {r["model"]: r.get("figures", {}) for r in records if r["side"] == "joey"}
    for r in records:
        f = r.get("figures", {})
        per = ratio(f.get("tgt_tok_s"), joey.get(r["model"], {}).get("tgt_tok_s")) if r["side"] != "joey" else None
        lines.append(f"| {r['model']} | {r['side']} | {r['revision']} | {fmt(f.get('steps'), ',.0f')} | "
                     f"{fmt(f.get('tgt_tok_s'), ',.0f')} | {fmt(per, '.2f')} | {fmt(f.get('test_bleu'), '.2f')} | "
                     f"{fmt(r['load_1m_start'], '.1f')} / {fmt(r['load_1m_end'], '.1f')} |")
    lines += [f"- {r['run']}: {r['error']}" for r in records if "error" in r]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Every (model, side) in turn, JoeyNMT first; 1 if a run failed."""
    args = parse_args(argv)
    if "joey" in args.sides:
        check_joey()  # before anything is written
    taken = [d for d in (args.out / "runs" / f"{side}_{model}" for model in args.models for side in args.sides)
             if d.exists()]
    if taken:
        raise SystemExit(f"{', '.join(map(str, taken))} exist(s): choose another OUT or delete them (nothing is "
                         "overwritten)")
    if args.before and "before" in args.sides and subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{args.before}^{{commit}}"],
            capture_output=True).returncode:
        raise SystemExit(f"--before {args.before}: no such commit in {ROOT}; give a revision `git log` shows")
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for model in args.models:
        for side in args.sides:
            record = run_one(side, model, args)
            (args.out / f"{record['run']}.json").write_text(json.dumps(record, indent=2) + "\n")
            records.append(record)
    (args.out / "report.json").write_text(json.dumps(records, indent=2) + "\n")
    (args.out / "report.md").write_text(markdown(records))
    print(markdown(records))
    return 1 if any("error" in r for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
