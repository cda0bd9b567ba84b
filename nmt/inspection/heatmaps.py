"""Labelled attention heatmaps (matplotlib, Agg canvas: no display, no pyplot state).

Axes: keys on x (source subwords for cross- and encoder self-attention, decoder inputs for decoder
self-attention), queries on y (the output subword produced at that step, the last one "</s>").
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from nmt.attention.slot import Slot
from nmt.decoding.inspect import Probe, output_maps, to_probe

DPI = 80
CELL_IN = 0.18      # inches per token on either axis
MAX_SIDE_IN = 9.0   # one map is at most 9 x 9 inches (720 x 720 px at 80 dpi)
MIN_W_IN, MIN_H_IN = 3.0, 2.5
# fixed margins (inches) of a single map: a layout engine would cost ~40% more time per image
LEFT_IN, RIGHT_IN, BOTTOM_IN, TOP_IN = 0.95, 0.1, 0.9, 0.3
MAX_LABEL = 12      # longer tick labels are shortened with "…" to fit the margins


def slot_labels(slot: str, src_pieces: list[str], out_pieces: list[str]) -> tuple[list[str], list[str]]:
    """-> (x labels = keys, y labels = queries) for a slot."""
    slot = Slot(slot)
    keys = src_pieces if slot.keys_are_source else ["<s>", *out_pieces[:-1]]  # decoder self: its inputs
    return keys, (src_pieces if slot.queries_are_source else out_pieces)


def map_size(n_keys: int, n_queries: int) -> tuple[float, float]:
    """Figure size in inches of one map of n_queries x n_keys; pixels = inches * DPI."""
    w = min(max(LEFT_IN + RIGHT_IN + CELL_IN * n_keys, MIN_W_IN), MAX_SIDE_IN)
    h = min(max(BOTTOM_IN + TOP_IN + CELL_IN * n_queries, MIN_H_IN), MAX_SIDE_IN)
    return w, h


def image_shape(n_keys: int, n_queries: int) -> tuple[int, int]:
    """(height, width) in pixels of `map_figure` for a map of n_queries x n_keys."""
    w, h = map_size(n_keys, n_queries)
    return int(h * DPI), int(w * DPI)  # matplotlib's canvas truncates inches * dpi the same way


def _escape(labels: list[str]) -> list[str]:
    """Shorten long pieces; escape "$", which would start matplotlib mathtext."""
    short = [s if len(s) <= MAX_LABEL else s[: MAX_LABEL - 1] + "…" for s in labels]
    return [s.replace("$", r"\$") for s in short]


def draw_map(ax, weights: Tensor | np.ndarray, x_labels: list[str], y_labels: list[str], title: str,
             centres: Tensor | None = None) -> None:
    """weights (Tq, Tk) on ax; local-p centres p_t (Tq,) as red dots."""
    w = np.asarray(weights, dtype=np.float32)
    # a fixed 0..1 scale: a diffuse map looks dark instead of noise stretched to full contrast
    ax.imshow(w, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(w.shape[1]), _escape(x_labels[: w.shape[1]]), rotation=90, fontsize=7)
    ax.set_yticks(range(w.shape[0]), _escape(y_labels[: w.shape[0]]), fontsize=7)
    if centres is not None:
        ax.plot(np.asarray(centres, dtype=np.float32), range(len(centres)), "r.", markersize=4)
        ax.set_xlim(-0.5, w.shape[1] - 0.5)
    ax.set_title(title, fontsize=8)


def new_figure(width_in: float, height_in: float, constrained: bool = True) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(fig)
    if constrained:
        fig.set_layout_engine("constrained")
    return fig


def map_figure(weights: Tensor, x_labels: list[str], y_labels: list[str], title: str,
               centres: Tensor | None = None) -> Figure:
    """One labelled map (Tq, Tk) of size `map_size`, fixed margins (the TensorBoard images)."""
    w, h = map_size(weights.shape[1], weights.shape[0])
    fig = new_figure(w, h, constrained=False)
    fig.subplots_adjust(left=LEFT_IN / w, right=1 - RIGHT_IN / w, bottom=BOTTOM_IN / h, top=1 - TOP_IN / h)
    draw_map(fig.add_subplot(), weights, x_labels, y_labels, title, centres)
    return fig


def figure_rgb(fig: Figure) -> np.ndarray:
    """Render -> (H, W, 3) uint8."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def grid_figure(probe: Probe, slots: list[str], title: str = "") -> Figure:
    """Rows = slots, columns = heads; every cell a labelled map."""
    heads = max(probe.maps[s].shape[0] for s in slots)
    side = max(len(probe.src_pieces), len(probe.out_pieces))
    cell_w, cell_h = map_size(side, side)
    fig = new_figure(cell_w * heads, cell_h * len(slots))
    axes = fig.subplots(len(slots), heads, squeeze=False)
    for r, slot in enumerate(slots):
        x, y = slot_labels(slot, probe.src_pieces, probe.out_pieces)
        for h in range(heads):
            if h >= probe.maps[slot].shape[0]:
                axes[r][h].set_axis_off()
                continue
            draw_map(axes[r][h], probe.maps[slot][h], x, y, f"{slot} head {h}", probe.centres.get(slot))
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def save_sentence_maps(path: Path, probe: Probe, title: str = "") -> Path:
    """Every slot and head of one sentence as one PNG grid (nmt-translate attention_png=DIR)."""
    return save_figure(grid_figure(probe, list(probe.maps), title), path)


def save_slot_pngs(directory: Path, prefix: str, probe: Probe) -> list[Path]:
    """One PNG per slot (heads side by side): <directory>/<prefix>_<slot>.png."""
    return [save_figure(grid_figure(probe, [slot]), Path(directory) / f"{prefix}_{slot}.png")
            for slot in probe.maps]


def side_by_side_figure(panels: list[tuple[str, Probe, str]]) -> Figure:
    """[(title, probe, slot)] -> one row of maps (heads averaged), e.g. one per run of a sweep."""
    sizes = [map_size(p.maps[s].shape[-1], p.maps[s].shape[-2]) for _, p, s in panels]
    fig = new_figure(sum(w for w, _ in sizes), max(h for _, h in sizes))
    axes = fig.subplots(1, len(panels), squeeze=False, width_ratios=[w for w, _ in sizes])[0]
    for ax, (title, probe, slot) in zip(axes, panels):
        x, y = slot_labels(slot, probe.src_pieces, probe.out_pieces)
        weights = probe.maps[slot].float().mean(0)  # (Tq, Tk) mean over heads
        draw_map(ax, weights, x, y, title, probe.centres.get(slot))
    return fig


def save_translation_pngs(directory: Path, trained, result, device) -> list[Path]:
    """One PNG per translated sentence of nmt-translate (a TrainedRun's model and tokenizers, its
    Translations), every slot (rows) and head (columns) of the model's own output:
    <directory>/sent<NNNN>.png, NNNN the 0-based input line."""
    maps = output_maps(trained.model, result.src_ids, result.hyp.tokens, trained.tgt_tok, device)
    return [save_sentence_maps(Path(directory) / f"sent{line:04d}.png",
                               to_probe(sentence, trained.src_tok, trained.tgt_tok), title=f"line {line}")
            for line, sentence in zip(result.decoded, maps)]
