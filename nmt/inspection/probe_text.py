"""Probe texts: a probe's source, reference, output and word alignment as Markdown (TensorBoard's
probes/probe<i> text, read beside its map)."""
from __future__ import annotations

from nmt.alignment.extract import argmax_alignments, last_selection, piece_text_words
from nmt.decoding.inspect import Probe


def probe_markdown(probe: Probe, reference: str) -> str:
    """Markdown of one probe: source and output (words of its pieces), the reference, and the alignment as
    Pharaoh links and word pairs."""
    src_words, out_words = piece_text_words(probe.src_pieces), piece_text_words(probe.out_pieces[:-1])
    lines = [f"**source:** {' '.join(src_words)}", f"**reference:** {reference}",
             f"**output:** {' '.join(out_words)}"]
    alignments = argmax_alignments(probe.maps, probe.src_pieces, probe.out_pieces[:-1])
    if alignments:
        name = last_selection(list(alignments))
        pairs = sorted(alignments[name], key=lambda link: (link[1], link[0]))
        lines.append(f"**alignment** ({name}, argmax): `{' '.join(f'{i}-{j}' for i, j in pairs)}`")
        lines.append(" · ".join(f"{out_words[j]} ← {src_words[i]}" for i, j in pairs))
    return "  \n".join(lines)
