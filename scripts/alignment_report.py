"""AER + counterfactual report for trained runs: one markdown file to paste (docs/alignment.md, README).

    NMT_DATA_DIR=/path/to/data python3 scripts/alignment_report.py RUN_DIR [RUN_DIR ...] \\
        --gold docs/data/multi30k_test2016_de-en.silver.align --out alignment_report.md

AER: forced decoding of each run's test split references (test_2016_flickr for Multi30k), every
cross-attention selection (slot, layer, head, heads averaged, all layers averaged), against --gold
(default: the eflomal SILVER alignment of Multi30k test2016 de-en, docs/data/). The "best" selection is
chosen on the odd-numbered test pairs and its AER reported on the even-numbered ones (no oracle pick,
nmt.alignment.pipeline). Also the AER of the selection trainer.align_loss supervises (slot and head; the
same selection of an unsupervised run), and local-p's centre error against --gold: mean |p_t - c_t| in source
pieces over the linked rows, c_t the mean position of the pieces the gold links to target piece t (the
centre loss's target, docs/alignment.md). Counterfactuals and Jain & Wallace's taus: nmt-explain's table on
the first --sentences pairs of the validation split, greedy re-decoding. Test BLEU from each run's metrics.json.
Rows of runs trained with alignment supervision carry a † on their AER and the report says why: against the
silver gold, whose aligner (eflomal) also made the training split's supervision, that AER is partly circular.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from bench_common import fmt  # scripts/, beside this file
from hydra import compose, initialize_config_dir

from nmt.alignment.explain import TAU_COLUMNS, ExplainSettings, explain, explain_markdown
from nmt.alignment.extract import AlignSettings, is_cross, last_selection
from nmt.alignment.links import read_gold
from nmt.alignment.pipeline import align_texts, best_selection, gold_scores, scores_markdown
from nmt.alignment.supervision import piece_alignment
from nmt.cli.common import config_dir, decode_settings
from nmt.common import atomic_write_text, write_json
from nmt.decoding import DecodeSettings
from nmt.decoding.inspect import output_maps
from nmt.runs.trained import attention_label, load_trained
from nmt.training.align_loss import resolve_slot

REPO = Path(__file__).resolve().parent.parent
COUNTERFACTUALS = ("uniform", "permute", "zero_top")  # the summary's columns (configs/explain.yaml's list)
CIRCULAR = ("†: trained with alignment supervision (trainer.align_loss, data.alignment). When the gold comes from "
            "the aligner that made the supervision, this AER is partly circular: the default silver gold of the test "
            "split and the committed supervision of the training split are both eflomal's, so the run is rewarded "
            "for reproducing eflomal's links, its errors included, and the figure is not comparable with an "
            "unsupervised run's. Score both on a human gold set for that (--gold FILE, or nmt-align: "
            "docs/alignment.md, \"Scoring a run against a human gold set\").")


def split_pairs(trained, split: str, n: int | None) -> tuple[list[str], list[str]]:
    pairs = trained.load_split(split)
    pairs = pairs.select(range(min(n, len(pairs)))) if n else pairs
    return list(pairs["src"]), list(pairs["tgt"])


def aer_scores(trained, gold: Path, device) -> dict[str, dict]:
    """{selection: {aer, precision, recall, aer_pick, aer_held_out}}: forced decoding of the test references."""
    src, ref = split_pairs(trained, "test", None)
    links, _ = align_texts(trained, src, ref, AlignSettings(False, None), None, device, 64)
    return gold_scores(links, src, ref, str(gold), "pharaoh", False)


def supervised_selection(trained, names: list[str]) -> str:
    """The selection trainer.align_loss supervises (or would, at weight 0): its slot's head, "<slot>" for one head."""
    setting = trained.config.group("trainer").get("align_loss", {"slot": "penultimate", "head": 0})
    slots = list(dict.fromkeys(n.partition(":")[0] for n in names if not n.startswith("all:")))  # each slot once
    slot = str(resolve_slot(setting["slot"], slots))
    return slot if slot in names else f"{slot}:h{setting['head']}"


def supervised(trained) -> bool:
    """Trained with alignment supervision: data.alignment set and either loss weighted (trainer.align_loss)."""
    setting = trained.config.group("trainer").get("align_loss", {})
    weighted = setting.get("weight", 0.0) > 0 or setting.get("centre_weight", 0.0) > 0
    return trained.config.data.alignment is not None and weighted


def aligned_centre_error(trained, gold: Path, device) -> float | None:
    """Local-p: mean |p_t - c_t| in source pieces over the test references' linked rows, c_t = the mean position
    of the source pieces the gold links to target piece t (the centre loss's c_t); None without centres."""
    src, ref = split_pairs(trained, "test", None)
    src_ids, tgt_ids = trained.src_tok.encode(src), trained.tgt_tok.encode(ref)
    if not src or not output_maps(trained.model, src_ids[:1], tgt_ids[:1], trained.tgt_tok, device)[0].centres:
        return None  # no local-p slot: skip the pass over the whole split
    golds = read_gold(str(gold), "pharaoh", len(src), False)
    errors = []
    for sm, s_ids, t_ids, g in zip(output_maps(trained.model, src_ids, tgt_ids, trained.tgt_tok, device),
                                   src_ids, tgt_ids, golds):
        A = piece_alignment(trained.src_tok.pieces(s_ids), trained.tgt_tok.pieces(t_ids), g.sure)  # (T + 1, S)
        linked = A.sum(-1) > 0  # (T + 1,)
        c = A @ torch.arange(A.size(1), dtype=A.dtype)  # (T + 1,) mean linked source position
        for p in sm.centres.values():  # (T + 1,) p_t
            errors.append((p - c).abs()[linked])
    return float(torch.cat(errors).mean()) if errors else None


def explain_settings() -> tuple[ExplainSettings, DecodeSettings]:
    """nmt-explain's defaults (configs/explain.yaml and its decode group): the same table as the CLI."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("explain", overrides=["run_dir=unused"])
    return (ExplainSettings(list(cfg.counterfactuals), cfg.seed, cfg.gradient, cfg.leave_one_out, cfg.chunk),
            decode_settings(cfg))


def summary_row(run_dir: Path, trained, scores: dict, result: dict, centre_error: float | None) -> str:
    """One README row: the alignment loss weight, test BLEU, the AER of the supervised selection (the one
    trainer.align_loss names, also at weight 0) and of the last layer (all pairs, held-out half), the best
    selection chosen on the other half with its held-out AER, local-p's centre error against the gold, and
    the counterfactuals and taus of the cross slot(s)."""
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    weight = trained.config.group("trainer").get("align_loss", {}).get("weight", 0.0)
    chosen, last = supervised_selection(trained, list(scores)), scores[last_selection(list(scores))]
    best_name = best_selection(scores)
    cross = [r for slot, r in result["slots"].items() if is_cross(slot)]
    mean = lambda f: sum(f(r) for r in cross) / len(cross)  # noqa: E731 (cross slots averaged)
    mark = " †" if supervised(trained) else ""  # partly circular against a silver gold (CIRCULAR)
    cells = [attention_label(trained.config.model), f"{weight:g}", fmt(metrics.get("test", {}).get("bleu"), ".2f"),
             f"{scores[chosen]['aer']:.3f}{mark} (`{chosen}`)", f"{last['aer']:.3f}{mark}",
             f"{last['aer_held_out']:.3f}{mark}", f"{scores[best_name]['aer_held_out']:.3f}{mark} (`{best_name}`)",
             fmt(centre_error, ".2f"),
             *(f"{mean(lambda r: r[c]['tvd']):.3f}" for c in COUNTERFACTUALS),
             *(f"{mean(lambda r: r[c]['bleu']) - result['baseline_bleu']:+.1f}" for c in COUNTERFACTUALS),
             *(f"{mean(lambda r: r[k]):.2f}" if all(k in r for r in cross) else "–" for k in TAU_COLUMNS)]
    return f"| {run_dir.name} | " + " | ".join(cells) + " |"


SUMMARY_HEAD = ("| run | attention | align weight | test BLEU (beam 5) | AER supervised selection | AER (last layer) | "
                "AER held-out (last layer) | best AER held-out (selection) | centre error vs gold (pieces) | "
                "TVD uniform | TVD permute | TVD zero_top | ΔBLEU uniform | ΔBLEU permute | ΔBLEU zero_top | "
                "τ one-hot grad | τ leave-one-out |\n"
                "|---|---|---:|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


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
        centre_error = aligned_centre_error(trained, args.gold, device)
        write_json(run_dir / "alignment.json", {"gold": str(args.gold), "selections": scores, "explain": result,
                                                "centre_error_vs_gold": centre_error})
        label = attention_label(trained.config.model)
        summary.append(summary_row(run_dir, trained, scores, result, centre_error))
        details += [scores_markdown(scores, f"{run_dir.name} ({label})"),
                    explain_markdown(result, settings.counterfactuals)]
        print(f"{run_dir}: AER {summary[-1]}", file=sys.stderr)
    text = ["## Attention types: alignment and counterfactuals", "",
            f"AER against `{args.gold.name}` (forced decoding of each run's test references); counterfactuals on "
            f"the first {args.sentences} validation pairs, greedy re-decoding (ΔBLEU: change from the run's own "
            "greedy BLEU on them; TVD, ΔBLEU and τ averaged over the cross-attention slots). Held-out: the "
            "even-numbered test pairs; the best selection is chosen by its AER on the odd-numbered pairs (not an "
            "oracle). τ: Kendall τ-b between cross-attention and Jain & Wallace (2019)'s importance, the gradient at "
            "the one-hot input with attention detached, or leave-one-out.", "",
            *summary, "", *([CIRCULAR, ""] if any(" †" in row for row in summary) else []), "## Per run", "",
            *details]
    atomic_write_text(args.out, "\n".join(text) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main(sys.argv[1:])
