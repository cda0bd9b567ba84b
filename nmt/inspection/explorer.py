"""explorer.html: one self-contained page to explore every probe's attention, slot, layer and head.

No network at view time: the data is inlined as JSON, the heatmaps are plain SVG drawn by a little
JavaScript (nmt/inspection/explorer_template.html, shipped as package data), and a Content-Security-Policy
forbids every fetch. Hovering an output token highlights its row (the source weights it attends), a
source token its column; local-m/local-p windows [p_t - D, p_t + D] and centres p_t are drawn; the
word alignment of the selected slot/head (nmt.alignment, argmax per output word) is drawn as links.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from nmt.alignment.extract import argmax_alignments, piece_text_words
from nmt.attention.slot import Slot
from nmt.common import atomic_write_text
from nmt.inspection.heatmaps import slot_labels
from nmt.decoding.inspect import Probe, output_maps, to_probe

PLACEHOLDER = "/*DATA*/"


def slot_data(slot: Slot, probe: Probe) -> dict:
    """One slot of one probe: labels, every head's rows (3 decimals), its local window if it has one (D from
    probe.windows; centres p_t for local-p, else the query position: local-m, sliding windows)."""
    keys, queries = slot_labels(slot, probe.src_pieces, probe.out_pieces)
    maps = probe.maps[slot].float()  # (H, Tq, Tk)
    data = {"keys": keys, "queries": queries, "heads": [[[round(float(v), 3) for v in row] for row in head]
                                                         for head in maps],
            "key_side": "source" if slot.keys_are_source else "decoder inputs",
            "query_side": "source" if slot.queries_are_source else "output"}
    if slot in probe.windows:
        centres = probe.centres.get(slot, torch.arange(maps.size(1)).float())  # (Tq,)
        data["window"] = {"half_width": probe.windows[slot], "centres": [round(float(c), 3) for c in centres]}
    return data


def probe_data(probe: Probe, label: str, reference: str | None) -> dict:
    """Tokens, slots and the word alignment of every cross-attention selection of one probe; `label` names
    its button (an input line or validation sentence number), `reference` is shown when not None; p_gen: the
    probability of generating each output piece (copy attention, See et al. 2017, Eq. 8; 1 - p_gen: copying),
    drawn beside the rows of the output, or None for a model without a pointer."""
    alignments = argmax_alignments(probe.maps, probe.src_pieces, probe.out_pieces[:-1])
    src_words, out_words = piece_text_words(probe.src_pieces), piece_text_words(probe.out_pieces[:-1])
    p_gen = probe.p_gen  # (T_out,) for copy attention, else None
    return {"label": label, "reference": reference, "source": " ".join(src_words), "output": " ".join(out_words),
            "src_words": src_words, "out_words": out_words,
            "alignments": {name: [list(link) for link in sorted(links)] for name, links in alignments.items()},
            "slots": {str(slot): slot_data(slot, probe) for slot in probe.maps},
            "p_gen": None if p_gen is None else [round(float(g), 3) for g in p_gen]}


@dataclass(frozen=True)
class ProbeLabels:
    """How the page names its sentences: the bar's heading ("input line"), each button's label ("3")
    and each sentence's reference (None: none known)."""
    kind: str
    labels: list[str]
    references: list[str | None]


def explorer_html(probes: list[Probe], title: str, names: ProbeLabels) -> str:
    """The page for `probes` (each slot's local window, if any, from probe.windows)."""
    if not probes:  # callers say which of their inputs was empty; this guards the page itself
        raise ValueError("explorer.html needs at least one sentence")
    if not len(probes) == len(names.labels) == len(names.references):
        raise ValueError(f"{len(probes)} probes but {len(names.labels)} labels, {len(names.references)} references")
    template = resources.files("nmt.inspection").joinpath("explorer_template.html").read_text(encoding="utf-8")
    data = json.dumps({"title": title, "kind": names.kind,
                       "probes": [probe_data(p, label, ref)
                                  for p, label, ref in zip(probes, names.labels, names.references)]},
                      ensure_ascii=False)
    return template.replace(PLACEHOLDER, data.replace("</", "<\\/"))  # no "</script>" inside the JSON


def write_explorer(path: str | Path, probes: list[Probe], title: str, names: ProbeLabels) -> Path:
    atomic_write_text(path, explorer_html(probes, title, names))
    return Path(path)


def save_translation_explorer(path: Path, trained, result, device) -> Path:
    """One explorer.html page with every sentence nmt-translate decoded (a TrainedRun, its Translations);
    buttons are labelled by input line (1-based; empty lines have no button)."""
    if not result.decoded:
        raise ValueError(f"explorer={path}: the input has no non-empty line, so there is no translation to "
                         "explore; give at least one sentence (on stdin or with input=<file>), or drop explorer=")
    maps = output_maps(trained.model, result.src_ids, result.hyp.tokens, trained.tgt_tok, device)
    probes = [to_probe(m, trained.src_tok, trained.tgt_tok) for m in maps]
    names = ProbeLabels("input line", [str(i + 1) for i in result.decoded], [None] * len(probes))
    return write_explorer(path, probes, "nmt-translate: attention of the translations", names)


def write_run_explorer(run_dir: str | Path) -> Path:
    """<run_dir>/explorer.html from the final probes the trainer saved (<run_dir>/attention/probes.pt)."""
    run_dir = Path(run_dir)
    saved = run_dir / "attention" / "probes.pt"
    if not saved.is_file():
        raise FileNotFoundError(f"{saved} not found; train with logger.probe_sentences >= 1 to save probe maps")
    probes = [Probe(**p) for p in torch.load(saved, weights_only=True)]
    names = ProbeLabels("validation sentence", [str(i + 1) for i in range(len(probes))],
                        valid_references(run_dir, len(probes)))
    return write_explorer(run_dir / "explorer.html", probes, f"{run_dir.name}: attention of the final model",
                          names)


def valid_references(run_dir: Path, n: int) -> list[str | None]:
    """The first n lines of <run_dir>/valid.ref.txt (the probes are the first validation sentences), split
    on \\n only as the trainer wrote them; None for each when the file is missing."""
    refs = run_dir / "valid.ref.txt"
    lines = refs.read_text(encoding="utf-8").split("\n") if refs.is_file() else []
    return [lines[i] if i < len(lines) else None for i in range(n)]
