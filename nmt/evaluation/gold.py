"""AER columns of nmt-compare: each run's attention against a gold word alignment of its test split, with the
best selection chosen on one half of the gold sentences and reported on the other (no oracle pick)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from nmt.alignment.extract import AlignSettings, last_selection
from nmt.alignment.pipeline import align_texts, best_selection, gold_scores
from nmt.runs.sweep import Run
from nmt.runs.trained import load_trained


@dataclass
class GoldSettings:
    path: Path          # gold alignment of each run's test split (Pharaoh or talp)
    fmt: str            # pharaoh | talp
    one_based: bool     # Pharaoh indices count from 1




def gold_aer(run: Run, gold: GoldSettings) -> dict:
    """{"AER": last cross layer (heads averaged) on the test split, "AER held-out": the same on its even-numbered
    pairs, "best AER held-out (selection)": "0.123 (selection)" chosen on the odd-numbered pairs}; forced
    decoding of the references with the run's best checkpoint."""
    trained = load_trained(run.path, "best", torch.device("cpu"))
    pairs = trained.load_split("test")
    src, ref = list(pairs["src"]), list(pairs["tgt"])
    links, _ = align_texts(trained, src, ref, AlignSettings(False, None), None, torch.device("cpu"), 64)
    scores = gold_scores(links, src, ref, str(gold.path), gold.fmt, gold.one_based)
    last, best = scores[last_selection(list(scores))], best_selection(scores)
    return {"AER": last["aer"], "AER held-out": last["aer_held_out"],
            "best AER held-out (selection)": f"{scores[best]['aer_held_out']:.3f} ({best})"}
