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
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from nmt.alignment.explain import ExplainSettings, explain, explain_markdown
from nmt.alignment.extract import AlignSettings, is_cross, last_selection
from nmt.alignment.pipeline import align_texts, gold_scores
from nmt.cli.common import config_dir
from nmt.common import atomic_write_text, write_json
from nmt.decoding import DecodeSettings
from nmt.logging import attention_label
from nmt.training.run_dir import load_trained

REPO = Path(__file__).resolve().parent.parent
COUNTERFACTUALS = ("uniform", "permute", "zero_top")  # the summary's columns (configs/explain.yaml's list)


def split_pairs(trained, split: str, n: int | None) -> tuple[list[str], list[str]]:
    data = trained.cfg.data
    pairs = instantiate(data.corpus).load(data.splits[split])
    pairs = pairs.select(range(min(n, len(pairs)))) if n else pairs
    return list(pairs["src"]), list(pairs["tgt"])


def aer_scores(trained, gold: Path, device) -> dict[str, dict]:
    """{selection: {aer, precision, recall}}: forced decoding of the test references against `gold`."""
    src, ref = split_pairs(trained, "test", None)
    links, _ = align_texts(trained, src, ref, AlignSettings(False, None), None, device, 64)
    return gold_scores(links, src, ref, str(gold), "pharaoh", False)


def explain_settings() -> tuple[ExplainSettings, DecodeSettings]:
    """nmt-explain's defaults (configs/explain.yaml and its decode group): the same table as the CLI."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("explain", overrides=["run_dir=unused"])
    return (ExplainSettings(list(cfg.counterfactuals), cfg.seed, cfg.gradient, cfg.chunk),
            DecodeSettings(**OmegaConf.to_container(cfg.decode, resolve=True)))


def summary_row(run_dir: Path, label: str, scores: dict, result: dict) -> str:
    """One README row: the last layer's AER, the best selection, and the counterfactuals of the cross slot(s)."""
    last = scores[last_selection(list(scores))]
    best_name, best = min(scores.items(), key=lambda kv: kv[1]["aer"])
    cross = [r for slot, r in result["slots"].items() if is_cross(slot)]
    mean = lambda f: sum(f(r) for r in cross) / len(cross)  # noqa: E731 (cross slots averaged)
    cells = [f"{last['aer']:.3f}", f"{best['aer']:.3f} (`{best_name}`)",
             *(f"{mean(lambda r: r[c]['tvd']):.3f}" for c in COUNTERFACTUALS),
             *(f"{mean(lambda r: r[c]['bleu']) - result['baseline_bleu']:+.1f}" for c in COUNTERFACTUALS),
             f"{mean(lambda r: r['tau']):.2f}" if all("tau" in r for r in cross) else "–"]
    return f"| {run_dir.name} | {label} | " + " | ".join(cells) + " |"


SUMMARY_HEAD = ("| run | attention | AER (last layer) | best AER (selection) | TVD uniform | TVD permute | "
                "TVD zero_top | ΔBLEU uniform | ΔBLEU permute | ΔBLEU zero_top | τ attn-grad |\n"
                "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--gold", type=Path, default=REPO / "docs/data/multi30k_test2016_de-en.silver.align")
    parser.add_argument("--sentences", type=int, default=200, help="validation pairs for the counterfactuals")
    parser.add_argument("--out", type=Path, default=Path("alignment_report.md"))
    args = parser.parse_args(argv)
    device = torch.device("cpu")
    settings, decode = explain_settings()
    summary, details = [SUMMARY_HEAD], []
    for run_dir in sorted(p for p in args.runs if (p / "config.yaml").is_file()):
        trained = load_trained(run_dir, "best", device)
        scores = aer_scores(trained, args.gold, device)
        src, ref = split_pairs(trained, "valid", args.sentences)
        result = explain(trained.model, trained.src_tok.encode(src), ref, trained.tgt_tok, settings, decode, device)
        write_json(run_dir / "alignment.json", {"gold": str(args.gold), "selections": scores, "explain": result})
        label = attention_label(OmegaConf.to_container(trained.cfg.model, resolve=True))
        summary.append(summary_row(run_dir, label, scores, result))
        details += [f"### {run_dir.name} ({label})", "", "| selection | AER | precision | recall |",
                    "|---|---:|---:|---:|", *(f"| `{n}` | {s['aer']:.3f} | {s['precision']:.3f} | {s['recall']:.3f} |"
                                             for n, s in scores.items()), "", explain_markdown(result, settings.counterfactuals)]
        print(f"{run_dir}: AER {summary[-1]}", file=sys.stderr)
    text = ["## Attention types: alignment and counterfactuals", "",
            f"AER against `{args.gold.name}` (forced decoding of each run's test references); counterfactuals on "
            f"the first {args.sentences} validation pairs, greedy re-decoding (ΔBLEU: change from the run's own "
            "greedy BLEU on them; TVD, ΔBLEU and τ averaged over the cross-attention slots).", "",
            *summary, "", "## Per run", "", *details]
    atomic_write_text(args.out, "\n".join(text) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main(sys.argv[1:])
