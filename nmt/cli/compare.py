"""nmt-compare: the runs of a sweep in one table, two plots and a significance test.

    nmt-compare SWEEP_DIR [--baseline NAME] [--probe 0] [--samples 1000] [--gold FILE [--gold-format pharaoh|talp]
                [--gold-one-based]]

Writes into SWEEP_DIR: comparison.md, comparison.csv, val_bleu.png, attention_side_by_side.png
(nmt.evaluation.compare does the work).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from omegaconf import OmegaConf

from nmt.cli.common import config_dir
from nmt.common import setup_logging
from nmt.evaluation.compare import CompareError, compare
from nmt.evaluation.gold import GoldSettings


def parse_args(argv: list[str]) -> argparse.Namespace:
    """argparse; Hydra-style `baseline=NAME` / `probe=N` / `samples=N` are accepted too."""
    argv = [f"--{a.split('=', 1)[0]}={a.split('=', 1)[1]}" if re.match(r"^(baseline|probe|samples)=", a) else a
            for a in argv]
    d = OmegaConf.load(Path(config_dir()) / "compare.yaml")  # the defaults live in the YAML
    parser = argparse.ArgumentParser(prog="nmt-compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory (or any folder of finished runs)")
    parser.add_argument("--baseline", default=d.baseline, help="run name (or a unique part of it / of its "
                        "attention label); default: the first run")
    parser.add_argument("--probe", type=int, default=d.probe, help=f"probe sentence drawn side by side ({d.probe})")
    parser.add_argument("--samples", type=int, default=d.samples, help=f"bootstrap resamples ({d.samples})")
    parser.add_argument("--gold", type=Path, default=d.gold,
                        help="gold word alignment of the runs' test split: adds AER columns")
    parser.add_argument("--gold-format", choices=["pharaoh", "talp"], default=d.gold_format, help="format of --gold")
    parser.add_argument("--gold-one-based", action="store_true", default=d.gold_one_based,
                        help="Pharaoh indices in --gold count from 1")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    setup_logging()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not args.sweep_dir.is_dir():
        raise SystemExit(f"{args.sweep_dir} is not a directory")
    gold = None if args.gold is None else GoldSettings(args.gold, args.gold_format, args.gold_one_based)
    try:
        rows = compare(args.sweep_dir, args.baseline, args.probe, args.samples, gold)
    except CompareError as e:
        raise SystemExit(f"nmt-compare: {e}") from None
    cols = ["run", "attention", "BLEU", "chrF", "TER", "p (BLEU vs baseline)", *(["AER"] if gold else [])]
    for row in rows:
        print("  ".join(f"{c}={row[c]}" for c in cols))


if __name__ == "__main__":
    main()
