"""AER + counterfactual report for trained runs: one markdown file to paste (docs/alignment.md, README).

    NMT_DATA_DIR=/path/to/data python3 scripts/alignment_report.py RUN_DIR [RUN_DIR ...] \\
        --gold docs/data/multi30k_test2016_de-en.silver.align --out alignment_report.md

AER: forced decoding of each run's test split references (test_2016_flickr for Multi30k), every
cross-attention selection (slot, layer, head, heads averaged, all layers averaged), against --gold
(default: the eflomal SILVER alignment of Multi30k test2016 de-en, docs/data/). Counterfactuals:
nmt-explain's table on the first --sentences pairs of the validation split, greedy re-decoding.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from nmt.alignment.explain import ExplainSettings, explain, explain_markdown
from nmt.alignment.extract import AlignSettings
from nmt.alignment.pipeline import align_texts, gold_scores
from nmt.common import atomic_write_text
from nmt.evaluation.evaluate import DecodeSettings
from nmt.logging import attention_label
from nmt.training.run import load_trained

REPO = Path(__file__).resolve().parent.parent
COUNTERFACTUALS = ["uniform", "permute", "zero_top"]


def split_pairs(trained, split: str, n: int | None) -> tuple[list[str], list[str]]:
    data = trained.cfg.data
    pairs = instantiate(data.corpus).load(data.splits[split])
    pairs = pairs.select(range(min(n, len(pairs)))) if n else pairs
    return list(pairs["src"]), list(pairs["tgt"])


def aer_rows(run_dir: Path, trained, gold: Path, device) -> list[str]:
    src, ref = split_pairs(trained, "test", None)
    links, _ = align_texts(trained, src, ref, AlignSettings(False, None), None, device, 64)
    scores = gold_scores(links, src, ref, str(gold), "pharaoh", False)
    label = attention_label(OmegaConf.to_container(trained.cfg.model, resolve=True))
    return [f"| {run_dir.name} | {label} | {name} | {s['aer']:.3f} | {s['precision']:.3f} | {s['recall']:.3f} |"
            for name, s in scores.items()]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--gold", type=Path, default=REPO / "docs/data/multi30k_test2016_de-en.silver.align")
    parser.add_argument("--sentences", type=int, default=200, help="validation pairs for the counterfactuals")
    parser.add_argument("--out", type=Path, default=Path("alignment_report.md"))
    args = parser.parse_args(argv)
    device = torch.device("cpu")
    aer = ["| run | attention | selection | AER | precision | recall |", "|---|---|---|---:|---:|---:|"]
    cf = []
    for run_dir in args.runs:
        trained = load_trained(run_dir, "best", device)
        aer += aer_rows(run_dir, trained, args.gold, device)
        src, ref = split_pairs(trained, "valid", args.sentences)
        result = explain(trained.model, trained.src_tok.encode(src), ref, trained.tgt_tok,
                         ExplainSettings(COUNTERFACTUALS, 1, True, 32), DecodeSettings(1, 1.0, 1.5, 10, 64), device)
        cf += [f"### {run_dir.name}", "", explain_markdown(result, COUNTERFACTUALS)]
        print(f"{run_dir}: done", file=sys.stderr)
    text = ["## Alignment error rate", "", f"Against `{args.gold.name}` (forced decoding of the test references).",
            "", *aer, "", "## Counterfactual attention", "", *cf]
    atomic_write_text(args.out, "\n".join(text) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main(sys.argv[1:])
