"""AER + counterfactual report for trained runs: one markdown file to paste (docs/alignment.md, README).

    NMT_DATA_DIR=/path/to/data python3 scripts/alignment_report.py RUN_DIR [RUN_DIR ...] \\
        --gold docs/data/multi30k_test2016_de-en.silver.align --out alignment_report.md

AER: forced decoding of each run's test split references (test_2016_flickr for Multi30k), every
cross-attention selection (slot, layer, head, heads averaged, all layers averaged), against --gold
(default: the eflomal SILVER alignment of Multi30k test2016 de-en, docs/data/). The "best" selection is
chosen on the odd-numbered test pairs and its AER reported on the even-numbered ones (no oracle pick,
nmt.alignment.pipeline). Counterfactuals and Jain & Wallace's taus: nmt-explain's table on the first
--sentences pairs of the validation split, greedy re-decoding.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from nmt.alignment.explain import TAU_COLUMNS, ExplainSettings, explain, explain_markdown
from nmt.alignment.extract import AlignSettings, is_cross, last_selection
from nmt.alignment.pipeline import align_texts, best_selection, gold_scores, scores_markdown
from nmt.cli.common import config_dir, decode_settings
from nmt.common import atomic_write_text, write_json
from nmt.decoding import DecodeSettings
from nmt.runs.trained import attention_label, load_trained

REPO = Path(__file__).resolve().parent.parent
COUNTERFACTUALS = ("uniform", "permute", "zero_top")  # the summary's columns (configs/explain.yaml's list)


def split_pairs(trained, split: str, n: int | None) -> tuple[list[str], list[str]]:
    pairs = trained.load_split(split)
    pairs = pairs.select(range(min(n, len(pairs)))) if n else pairs
    return list(pairs["src"]), list(pairs["tgt"])


def aer_scores(trained, gold: Path, device) -> dict[str, dict]:
    """{selection: {aer, precision, recall, aer_pick, aer_held_out}}: forced decoding of the test references."""
    src, ref = split_pairs(trained, "test", None)
    links, _ = align_texts(trained, src, ref, AlignSettings(False, None), None, device, 64)
    return gold_scores(links, src, ref, str(gold), "pharaoh", False)


def explain_settings() -> tuple[ExplainSettings, DecodeSettings]:
    """nmt-explain's defaults (configs/explain.yaml and its decode group): the same table as the CLI."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("explain", overrides=["run_dir=unused"])
    return (ExplainSettings(list(cfg.counterfactuals), cfg.seed, cfg.gradient, cfg.leave_one_out, cfg.chunk),
            decode_settings(cfg))


def summary_row(run_dir: Path, label: str, scores: dict, result: dict) -> str:
    """One README row: the last layer's AER (all pairs, held-out half), the best selection chosen on the other
    half with its held-out AER, and the counterfactuals and taus of the cross slot(s)."""
    last = scores[last_selection(list(scores))]
    best_name = best_selection(scores)
    cross = [r for slot, r in result["slots"].items() if is_cross(slot)]
    mean = lambda f: sum(f(r) for r in cross) / len(cross)  # noqa: E731 (cross slots averaged)
    cells = [f"{last['aer']:.3f}", f"{last['aer_held_out']:.3f}",
             f"{scores[best_name]['aer_held_out']:.3f} (`{best_name}`)",
             *(f"{mean(lambda r: r[c]['tvd']):.3f}" for c in COUNTERFACTUALS),
             *(f"{mean(lambda r: r[c]['bleu']) - result['baseline_bleu']:+.1f}" for c in COUNTERFACTUALS),
             *(f"{mean(lambda r: r[k]):.2f}" if all(k in r for r in cross) else "–" for k in TAU_COLUMNS)]
    return f"| {run_dir.name} | {label} | " + " | ".join(cells) + " |"


SUMMARY_HEAD = ("| run | attention | AER (last layer) | AER held-out (last layer) | best AER held-out (selection) | "
                "TVD uniform | TVD permute | TVD zero_top | ΔBLEU uniform | ΔBLEU permute | ΔBLEU zero_top | "
                "τ one-hot grad | τ leave-one-out |\n"
                "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")


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
        label = attention_label(trained.config.model)
        summary.append(summary_row(run_dir, label, scores, result))
        details += [scores_markdown(scores, f"{run_dir.name} ({label})"), explain_markdown(result, settings.counterfactuals)]
        print(f"{run_dir}: AER {summary[-1]}", file=sys.stderr)
    text = ["## Attention types: alignment and counterfactuals", "",
            f"AER against `{args.gold.name}` (forced decoding of each run's test references); counterfactuals on "
            f"the first {args.sentences} validation pairs, greedy re-decoding (ΔBLEU: change from the run's own "
            "greedy BLEU on them; TVD, ΔBLEU and τ averaged over the cross-attention slots). Held-out: the "
            "even-numbered test pairs; the best selection is chosen by its AER on the odd-numbered pairs (not an "
            "oracle). τ: Kendall τ-b between cross-attention and Jain & Wallace (2019)'s importance, the gradient at "
            "the one-hot input with attention detached, or leave-one-out.", "",
            *summary, "", "## Per run", "", *details]
    atomic_write_text(args.out, "\n".join(text) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main(sys.argv[1:])
