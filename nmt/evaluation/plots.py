"""nmt-compare's figures: validation BLEU per run against steps and minutes, and each run's attention on one
probe sentence side by side (matplotlib through nmt.inspection.heatmaps)."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from nmt.decoding.inspect import Probe
from nmt.inspection.heatmaps import new_figure, save_figure, side_by_side_figure
from nmt.runs.sweep import Run
from nmt.runs.trained import attention_label

log = logging.getLogger("nmt.compare")


def plot_val_bleu(runs: list[Run], path: Path) -> None:
    """Validation BLEU (greedy) against steps and against wall-clock minutes, one line per run."""
    fig = new_figure(11, 4.2)
    by_step, by_time = fig.subplots(1, 2)
    for r in runs:
        hist = r.metrics.get("history", [])
        label = f"{r.name} ({attention_label(r.config.model)})"
        by_step.plot([h["step"] for h in hist], [h["bleu"] for h in hist], marker=".", label=label)
        by_time.plot([h["elapsed_s"] / 60 for h in hist], [h["bleu"] for h in hist], marker=".", label=label)
    for ax, xlabel in ((by_step, "step"), (by_time, "wall-clock minutes (validation included)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation BLEU (greedy)")
        ax.grid(alpha=0.3)
    by_time.legend(fontsize=7)
    save_figure(fig, path)


def plot_side_by_side(runs: list[Run], probe: int, path: Path) -> bool:
    """Each run's final map of probe sentence `probe` (attention/probes.pt; decoder->encoder slot,
    the last layer's for a Transformer, heads averaged)."""
    panels = []
    for r in runs:
        saved = r.path / "attention" / "probes.pt"
        if not saved.is_file():
            log.warning("%s: no attention/probes.pt, left out of the side-by-side image", r.name)
            continue
        probes = torch.load(saved, weights_only=True)
        if probe >= len(probes):
            continue
        p = Probe(**probes[probe])
        slot = max((s for s in p.maps if s.is_cross), key=lambda s: s.depth)  # "cross", or the last dec.<i>.cross
        panels.append((f"{r.name}\n{attention_label(r.config.model)}\n{slot}", p, slot))
    if panels:
        save_figure(side_by_side_figure(panels), path)
    return bool(panels)
