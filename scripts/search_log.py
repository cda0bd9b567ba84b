"""The trial log of a hyper-parameter search (nmt-train -m +search=default): one Markdown table, a row per trial.

    python3 scripts/search_log.py multirun/search/<date_time>                       # print it
    python3 scripts/search_log.py multirun/search/<date_time> --out docs/search.md  # fill the page

Reads, per trial directory <sweep>/<n>/: .hydra/overrides.yaml (the settings the sweeper chose, and the
command line's), config.yaml (the composed config) and metrics.json (steps, wall time, the best greedy
validation BLEU during training and the objective: the validation BLEU of the best checkpoint with the final
beam search). A trial without metrics.json (still running, failed, or stopped) gets a row saying so.
A trial whose config decoded the real test split is refused: a search decides on validation only
(configs/search/confirm.yaml points the final evaluation's "test" at the validation split).

The table's columns are the settings that differ between trials; the settings every trial shares are listed
above it. Below it: the confirm command of the --top best trials (full length, still validation only).
--out FILE replaces what lies between `<!-- search:log -->` and `<!-- /search:log -->` in FILE, the prose
around them untouched; a new FILE holds the markers and the log. A FILE without the markers is refused, unchanged.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

SEARCH = Path(__file__).resolve().parent.parent / "configs" / "search" / "default.yaml"
MARKER = re.compile(r"(<!-- search:log -->\n)(.*?)(<!-- /search:log -->)", re.S)
NOT_SETTINGS = ("hydra.", "data.root=", "data.cache_dir=")  # where things are, not what a trial tried


@dataclass
class Trial:
    name: str               # the sweep subdirectory: Hydra's job number
    overrides: list[str]    # .hydra/overrides.yaml, the settings only (NOT_SETTINGS dropped)
    metrics: dict | None    # metrics.json, None while running or after a failure


def trial_dirs(sweep: Path) -> list[Path]:
    """The sweep's trial directories (a .hydra/overrides.yaml inside), by job number."""
    if not sweep.is_dir():
        raise SystemExit(f"search_log: {sweep} is not a directory: give the sweep directory of "
                         "`nmt-train -m +search=default` (multirun/search/<date_time>)")
    dirs = [d for d in sweep.iterdir() if (d / ".hydra" / "overrides.yaml").is_file()]
    if not dirs:
        raise SystemExit(f"search_log: {sweep} holds no trial (no <n>/.hydra/overrides.yaml): give the sweep "
                         "directory itself, not a trial or its parent")
    return sorted(dirs, key=lambda d: (not d.name.isdigit(), int(d.name) if d.name.isdigit() else 0, d.name))


def load_trial(path: Path) -> Trial:
    """One trial; refused (SystemExit naming the fix) if its final evaluation decoded the real test split."""
    config = path / "config.yaml"
    if config.is_file():
        splits = (yaml.safe_load(config.read_text()).get("data") or {}).get("splits") or {}
        if splits.get("test") != splits.get("valid"):
            raise SystemExit(f"search_log: trial {path.name} decoded the test split (data.splits.test="
                             f"{splits.get('test')}): a search decides on validation only; run the search with "
                             "+search=default (or a confirm run with +search=confirm)")
    overrides = yaml.safe_load((path / ".hydra" / "overrides.yaml").read_text()) or []
    settings = [o for o in overrides if not o.lstrip("+~").startswith(NOT_SETTINGS)]
    metrics = path / "metrics.json"
    return Trial(path.name, settings, json.loads(metrics.read_text()) if metrics.is_file() else None)


def split(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key, value


def shown(value: str) -> str:
    """A sampled float to 3 significant digits (0.000777, 0.124); anything else as given."""
    try:
        number = float(value)
    except ValueError:
        return value
    return value if re.fullmatch(r"-?\d+", value) else f"{number:.3g}"


def columns(trials: list[Trial]) -> tuple[list[str], list[str]]:
    """(keys whose value differs between trials, in first-seen order; the overrides every trial shares)."""
    values: dict[str, set] = {}
    for trial in trials:
        for key, value in map(split, trial.overrides):
            values.setdefault(key, set()).add(value)
    everywhere = [k for k in values if all(k in dict(map(split, t.overrides)) for t in trials)]
    varying = [k for k, v in values.items() if len(v) > 1 or k not in everywhere]
    shared = [o for o in trials[0].overrides if split(o)[0] not in varying]
    return varying, shared


def header(key: str, keys: list[str]) -> str:
    """The key's last part (lr, attention), or the whole key where two keys share it."""
    short = re.split(r"[./]", key.lstrip("+~"))[-1]
    return short if sum(re.split(r"[./]", k.lstrip("+~"))[-1] == short for k in keys) == 1 else key


def objective(trial: Trial) -> float | None:
    return None if trial.metrics is None else float(trial.metrics.get("valid", {}).get("bleu", 0.0))


def table(trials: list[Trial], varying: list[str]) -> list[str]:
    """The Markdown table: one row per trial, the best objective in bold."""
    scores = [s for s in map(objective, trials) if s is not None]
    best = max(scores) if scores else None
    lines = ["| trial | " + " | ".join(header(k, varying) for k in varying)
             + " | steps | wall min | best greedy valid BLEU | valid BLEU (beam) |",
             "|---" * (len(varying) + 5) + "|"]
    for trial in trials:
        chosen = dict(map(split, trial.overrides))
        cells = [trial.name, *(shown(chosen[k]) if k in chosen else "" for k in varying)]
        m, score = trial.metrics, objective(trial)
        if m is None:
            cells += ["", "", "", "no metrics.json (running, failed or stopped)"]
        else:
            cells += [str(m.get("steps", "")), f"{m['wall_minutes']:.1f}" if "wall_minutes" in m else "",
                      f"{m['best_valid_bleu_greedy']:.2f}" if "best_valid_bleu_greedy" in m else "",
                      f"**{score:.2f}**" if score == best else f"{score:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def proxy_keys() -> set[str]:
    """The keys configs/search/default.yaml sets for the proxy (its budget): a confirm run drops them."""
    def leaves(node: dict, prefix: str = "") -> list[str]:
        return [k for key, v in node.items() for k in (leaves(v, f"{prefix}{key}.") if isinstance(v, dict)
                                                       else [prefix + key])]
    own = yaml.safe_load(SEARCH.read_text())
    return set(leaves({k: v for k, v in own.items() if k not in ("defaults", "hydra")}))


def confirm_commands(trials: list[Trial], top: int) -> list[str]:
    """`nmt-train +search=confirm <the trial's settings>` for the `top` best finished trials, best first: every
    override of the trial but the search's own (+search=..., the proxy budget)."""
    done = sorted((t for t in trials if t.metrics is not None), key=lambda t: -objective(t))[:top]
    drop = proxy_keys()
    return [" ".join(["nmt-train", "+search=confirm",
                      *(o for o in t.overrides if split(o)[0].lstrip("+~") not in {"search", *drop}),
                      f"run_dir=runs/confirm/{t.name}"]) for t in done]


def log_markdown(sweep: Path, top: int) -> str:
    trials = [load_trial(d) for d in trial_dirs(sweep)]
    varying, shared = columns(trials)
    finished = sum(t.metrics is not None for t in trials)
    lines = [f"Sweep `{sweep.name}`: {len(trials)} trials, {finished} finished. Every trial: "
             + (" ".join(f"`{o}`" for o in shared) or "(no shared override)") + ".", "", *table(trials, varying)]
    commands = confirm_commands(trials, top)
    if commands:
        lines += ["", f"The {len(commands)} best on validation, at full length (then compare them with "
                      "nmt-evaluate split=valid):", "", "```bash", *commands, "```"]
    return "\n".join(lines) + "\n"


def write_out(out: Path, log: str) -> None:
    """Replace the marked block of `out`, or create it; a file without the markers is left unchanged."""
    if not out.exists():
        out.write_text(f"<!-- search:log -->\n{log}<!-- /search:log -->\n")
        return
    text = out.read_text()
    if not MARKER.search(text):
        raise SystemExit(f"search_log: {out} has no `<!-- search:log -->` ... `<!-- /search:log -->` block; add "
                         "the two marker lines where the log belongs (the file is unchanged)")
    out.write_text(MARKER.sub(lambda m: m.group(1) + log + m.group(3), text, count=1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="the sweep directory (multirun/search/<date_time>)")
    parser.add_argument("--out", type=Path, help="write into this Markdown file's search:log block")
    parser.add_argument("--top", type=int, default=3, help="confirm commands for this many best trials")
    args = parser.parse_args(argv)
    if args.top < 0:
        parser.error(f"--top must be >= 0, got {args.top}")
    log = log_markdown(args.sweep, args.top)
    if args.out is None:
        sys.stdout.write(log)
    else:
        write_out(args.out, log)


if __name__ == "__main__":
    main()
