"""Fill the attention pages (docs/attention/*.md) with the tour's measured tables and maps.

    nmt-train -m +experiment=tour                 # the runs: multirun/tour/<date_time>/<n>_<type>/
    python3 scripts/tour_pages.py multirun/tour   # the newest sweep below it -> the pages
    python3 scripts/tour_pages.py multirun/tour/2026-01-01_10-00-00 --dry-run
    python3 scripts/tour_pages.py --reset         # back to the placeholders (and no tour images)

Reads, per run directory: metrics.json (BLEU, chrF, tokens/s, decode speed, attention_stats),
config.yaml (device, threads), .hydra/overrides.yaml (the exact command) and
attention/probe0_<slot>.png (the map of probe 0). Writes the images to docs/attention/images/
as tour_<run>_<slot>.png and replaces everything between `<!-- tour:results -->` and
`<!-- /tour:results -->` on each page; the prose around the markers is never touched.

AER comes from <run>/alignment.json, written by scripts/alignment_report.py (forced decoding of the
test references against a gold or silver alignment); a run without it shows "not scored". Coverage
(shares of under- and over-attended source tokens) comes from metrics.json's attention_stats.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
PAGES = REPO / "docs" / "attention"
IMAGES = PAGES / "images"
MARKER = re.compile(r"(<!-- tour:results -->\n)(.*?)(<!-- /tour:results -->)", re.S)
PLACEHOLDER = ("*Not measured yet: run the tour (see "
               "[README](README.md#the-tour-two-commands-fill-these-pages)).*\n")
PLACEHOLDER_README = "*Not measured yet: run the tour (see [above](#the-tour-two-commands-fill-these-pages)).*\n"
NOT_SCORED = "not scored"
STATS = ("entropy", "eos_mass", "monotonicity", "centre_error", "coverage_under", "coverage_over")


@dataclass(frozen=True)
class Show:
    """One run on one page: its tour name, the slots whose maps and statistics are shown."""

    run: str
    label: str
    slots: tuple[str, ...] = ("cross",)
    maps: bool = True


LAST = "last"  # Transformer slots: "enc.last.self" -> the run's last layer
PAGE_RUNS: dict[str, list[Show]] = {
    "global.md": [Show("global_general", "global, general score, Luong flow"),
                  Show("bahdanau", "global, additive score, Bahdanau flow")],
    "local.md": [Show("local_m", "local-m (D = 10)"), Show("local_p", "local-p (D = 10, sigma = 5)"),
                 Show("hard", "hard (for comparison)", maps=False)],
    "hard.md": [Show("hard", "hard, straight-through Gumbel")],
    "self.md": [Show("transformer", "Transformer 2+2, d 128, 4 heads",
                     ("enc.last.self", "dec.last.self", "dec.last.cross")),
                Show("multihead", "RNN decoder, 4-head cross-attention")],
}
ALL_RUNS = ["global_general", "bahdanau", "local_m", "local_p", "hard", "multihead", "transformer"]


@dataclass
class Run:
    name: str
    path: Path
    metrics: dict | None
    config: dict
    overrides: list[str]


def is_run(path: Path) -> bool:
    return path.is_dir() and ((path / "config.yaml").is_file() or (path / ".hydra").is_dir())


def find_sweep(path: Path) -> Path:
    """`path` itself if it holds run directories, else its newest child that does."""
    if not path.is_dir():
        sys.exit(f"{path} does not exist: run `nmt-train -m +experiment=tour` first (from the repository root)")
    if any(is_run(p) for p in path.iterdir()):
        return path
    sweeps = sorted(p for p in path.iterdir() if p.is_dir() and any(is_run(q) for q in p.iterdir()))
    if not sweeps:
        sys.exit(f"no tour runs below {path}: run `nmt-train -m +experiment=tour` first")
    return sweeps[-1]


def load_run(path: Path) -> Run:
    overrides_file = path / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
    name = next((o.split("=", 1)[1] for o in overrides if o.startswith("+tour=")),
                re.sub(r"^\d+_", "", path.name))
    metrics_file = path / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
    config_file = path / "config.yaml"
    config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}
    return Run(name, path, metrics, config or {}, overrides)


def command(run: Run) -> str:
    """The command that trains this run alone (the sweep's own hydra.* overrides left out)."""
    args = [o for o in run.overrides if not o.startswith(("hydra.", "hydra/"))]
    args.sort(key=lambda o: (not o.startswith("+experiment="), not o.startswith("+tour=")))
    return "nmt-train " + " ".join(args)


def resolve_slot(run: Run, slot: str) -> str:
    """enc.last.self -> enc.<N-1>.self with N the run's layer count (from its statistics or maps)."""
    if LAST not in slot:
        return slot
    pattern = re.compile(re.escape(slot).replace(LAST, r"(\d+)"))
    found = set((run.metrics or {}).get("attention_stats", {}))
    found |= {p.stem.split("_", 1)[1] for p in (run.path / "attention").glob("probe0_*.png")}
    layers = [int(m.group(1)) for s in found if (m := pattern.fullmatch(s))]
    return slot.replace(LAST, str(max(layers))) if layers else slot


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def aer_value(run: Run, slot: str) -> str:
    """AER of a cross slot from <run>/alignment.json: the slot itself (RNN) or its heads averaged."""
    if not slot.endswith("cross"):
        return "–"
    saved = run.path / "alignment.json"
    if not saved.is_file():
        return NOT_SCORED
    selections = json.loads(saved.read_text())["selections"]
    score = selections.get(slot) or selections.get(f"{slot}:mean")
    return fmt(score["aer"]) if score else NOT_SCORED


def stats_rows(run: Run, slots: list[str]) -> list[str]:
    m = run.metrics or {}
    rows = []
    for slot in slots:
        st = m.get("attention_stats", {}).get(slot, {})
        cells = [fmt(st.get(k)) if k in st else "–" for k in STATS] + [aer_value(run, slot)]
        rows.append(f"| {run.name} | `{slot}` | " + " | ".join(cells) + " |")
    return rows


def measured_row(run: Run) -> str:
    m = run.metrics
    if m is None:
        return f"| {run.name} | not finished (no metrics.json) |" + " |" * 8
    test = m.get("test", {})
    cells = [fmt(m.get("parameters")), fmt(m.get("steps")), str(m.get("stopped")),
             fmt(test.get("bleu"), 2), fmt(test.get("chrf"), 2), fmt(m.get("best_valid_bleu_greedy"), 2),
             fmt(m.get("train_tokens_per_s")), fmt(m.get("decode_sentences_per_s"), 1),
             fmt(m.get("wall_minutes"), 2)]
    return f"| {run.name} | " + " | ".join(cells) + " |"


MEASURED_HEAD = ("| run | parameters | steps | stopped by | test BLEU (beam 5) | test chrF | valid BLEU "
                 "(greedy) | train tokens/s | decode sentences/s (test, beam 5) | train minutes |\n"
                 "|---|---|---|---|---|---|---|---|---|---|")
STATS_HEAD = ("| run | slot | entropy (nats) | eos_mass | monotonicity | centre_error | under-attended | "
              "over-attended | AER (silver) |\n|---|---|---|---|---|---|---|---|---|")


def machine(runs: list[Run], given: str | None) -> str:
    cfg = next((r.config for r in runs if r.config), {})
    trainer = cfg.get("trainer", {})
    device = f"trainer.device={trainer.get('device', '?')}, trainer.num_threads={trainer.get('num_threads', '?')}"
    if given:
        return f"{given} ({device})"
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{cpu}, {cores} CPU cores available, {platform.system()} ({device}); the machine "
            f"scripts/tour_pages.py ran on; pass --machine if the tour ran elsewhere")


def block(shows: list[Show], runs: dict[str, Run], sweep: Path, where: str,
          copies: dict[Path, Path]) -> str:
    """The Markdown between the markers of one page; records the images to copy in `copies`."""
    lines = [f"Measured by the tour: sweep `{sweep.name}`, probe 0 = the first validation sentence.",
             f"Machine: {where}.", ""]
    present = [s for s in shows if s.run in runs]
    for show in present:
        run = runs[show.run]
        slots = [resolve_slot(run, s) for s in show.slots]
        lines += [f"**{show.label}**: `{command(run)}`", ""]
        if not show.maps:
            continue
        for slot in slots if run.metrics is not None else []:
            png = run.path / "attention" / f"probe0_{slot}.png"
            if png.is_file():
                target = IMAGES / f"tour_{show.run}_{slot.replace('.', '_')}.png"
                copies[png] = target
                lines += [f"![{show.label}, {slot}, probe 0](images/{target.name})", ""]
            else:
                lines += [f"(no map: {png.relative_to(sweep)} is missing)", ""]
    if not present:
        return "\n".join(lines + [f"Not in this sweep: {', '.join(s.run for s in shows)}."]) + "\n"
    lines += [STATS_HEAD]
    for show in present:
        run = runs[show.run]
        lines += stats_rows(run, [resolve_slot(run, s) for s in show.slots])
    lines += ["", MEASURED_HEAD] + [measured_row(runs[s.run]) for s in present]
    missing = [s.run for s in shows if s.run not in runs]
    if missing:
        lines += ["", f"Not in this sweep: {', '.join(missing)}."]
    lines += ["", "Statistics: the final model's beam output on the first 100 validation sentences "
              "(`logger.stats_sentences`), defined in [attention_stats.md](../attention_stats.md) "
              "(under/over-attended: shares of source tokens with coverage below 0.5 / above 2). "
              "AER: forced decoding of the 1,000 test references against the eflomal *silver* alignment "
              "([alignment.md](../alignment.md)), by `scripts/alignment_report.py`; lower is better. "
              "Train minutes include the validation."]
    return "\n".join(lines) + "\n"


def sweep_minutes(runs: dict[str, Run]) -> float | None:
    """Wall time of the sweep: the first run's start (.hydra/config.yaml) to the last metrics.json."""
    starts = [r.path / ".hydra" / "config.yaml" for r in runs.values()]
    ends = [r.path / "metrics.json" for r in runs.values()]
    starts, ends = [p.stat().st_mtime for p in starts if p.is_file()], [p.stat().st_mtime for p in ends if p.is_file()]
    return (max(ends) - min(starts)) / 60 if starts and ends else None


def summary_block(runs: dict[str, Run], sweep: Path, where: str) -> str:
    """README.md: every run of the sweep, one measured row each, and the sweep's wall time."""
    minutes = sweep_minutes(runs)
    took = f" The whole sweep took {minutes:.0f} minutes (data, training, evaluation)." if minutes is not None else ""
    lines = [f"Sweep `{sweep.name}`; machine: {where}.{took}", "", MEASURED_HEAD]
    lines += [measured_row(runs[n]) for n in ALL_RUNS if n in runs]
    lines += [measured_row(r) for n, r in sorted(runs.items()) if n not in ALL_RUNS]
    lines += ["", "Each run: `" + (command(next(iter(runs.values()))) if runs else "") + "` with its own `+tour=`."]
    return "\n".join(lines) + "\n"


def replace_block(text: str, content: str, page: str) -> str:
    if not MARKER.search(text):
        raise SystemExit(f"{page}: no <!-- tour:results --> ... <!-- /tour:results --> markers")
    return MARKER.sub(lambda m: m.group(1) + content + m.group(3), text, count=1)


def reset(dry_run: bool) -> None:
    for page in [*PAGE_RUNS, "README.md"]:
        path = PAGES / page
        placeholder = PLACEHOLDER_README if page == "README.md" else PLACEHOLDER
        new = replace_block(path.read_text(), placeholder, page)
        if not dry_run:
            path.write_text(new)
    for png in IMAGES.glob("tour_*.png"):
        print(f"remove {png.relative_to(REPO)}")
        if not dry_run:
            png.unlink()


def fill(sweep_arg: Path, given_machine: str | None, dry_run: bool) -> None:
    sweep = find_sweep(sweep_arg)
    runs = {}
    for path in sorted(p for p in sweep.iterdir() if is_run(p)):
        run = load_run(path)
        runs[run.name] = run
    where = machine(list(runs.values()), given_machine)
    print(f"sweep {sweep}: {', '.join(runs)}")
    copies: dict[Path, Path] = {}
    texts = {page: block(shows, runs, sweep, where, copies) for page, shows in PAGE_RUNS.items()}
    texts["README.md"] = summary_block(runs, sweep, where)
    for page, content in texts.items():
        path = PAGES / page
        new = replace_block(path.read_text(), content, page)
        if dry_run:
            print(f"--- {page}\n{content}")
        else:
            path.write_text(new)
    for src, dst in copies.items():
        print(f"{src} -> {dst.relative_to(REPO)}")
        if not dry_run:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", nargs="?", type=Path, default=Path("multirun/tour"),
                        help="a tour sweep directory, or a folder of them (the newest is used)")
    parser.add_argument("--machine", help='what trained the runs, e.g. "2 CPU cores, AMD EPYC"')
    parser.add_argument("--dry-run", action="store_true", help="print, write nothing")
    parser.add_argument("--reset", action="store_true", help="restore the placeholders, remove tour images")
    args = parser.parse_args(argv)
    if args.reset:
        reset(args.dry_run)
    else:
        fill(args.sweep, args.machine, args.dry_run)


if __name__ == "__main__":
    main()
