"""Word alignments on disk: Pharaoh ("i-j") and talp (one link per line) files, read and written.

A link (i, j) joins source word i and target word j, both 0-based in memory. Gold alignments carry
Sure and Possible links (Och & Ney 2003, Sec. 5: S is a subset of P; a Sure link is also Possible).

Pharaoh (fast_align, Moses): one line per sentence pair, links separated by spaces;
    "i-j"  a Sure link;   "i?j", "ipj" or "i p j"  a Possible link.
    Indices are 0-based (fast_align, Moses) or 1-based (the RWTH de-en gold): `one_based` says which.
talp (the WPT 2003/2005 "NAACL" format of the TALP and Mihalcea & Pedersen references):
    one link per line, "sentence i j [S|P] [confidence]", sentence numbers and positions 1-based,
    position 0 = NULL (such links are skipped); a missing type means Sure.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from nmt.common import atomic_write_text

Link = tuple[int, int]  # (source word, target word), 0-based
_PHARAOH_LINK = re.compile(r"(\d+)\s*([-?pP])\s*(\d+)")
FORMATS = ("pharaoh", "talp")


class AlignmentFileError(ValueError):
    """A malformed alignment file; the message names the file, the line and the fix."""


@dataclass
class GoldAlignment:
    """Sure and Possible links of one sentence pair; `possible` always includes `sure`."""
    sure: set[Link] = field(default_factory=set)
    possible: set[Link] = field(default_factory=set)

    def add(self, link: Link, sure: bool) -> None:
        self.possible.add(link)
        if sure:
            self.sure.add(link)


def parse_pharaoh_line(line: str, one_based: bool, where: str) -> GoldAlignment:
    """One Pharaoh line -> GoldAlignment; garbage between links raises naming `where`."""
    gold, offset, end = GoldAlignment(), 1 if one_based else 0, 0
    for m in _PHARAOH_LINK.finditer(line):
        if line[end: m.start()].strip():
            raise AlignmentFileError(f"{where}: cannot read {line[end: m.start()].strip()!r}; links are 'i-j' "
                                     "(sure) or 'i?j' / 'ipj' (possible), separated by spaces")
        i, j = int(m.group(1)) - offset, int(m.group(3)) - offset
        if i < 0 or j < 0:
            raise AlignmentFileError(f"{where}: index 0 in a 1-based file; pass one_based=false (gold_one_based) "
                                     "if the file counts words from 0")
        gold.add((i, j), sure=m.group(2) == "-")
        end = m.end()
    if line[end:].strip():
        raise AlignmentFileError(f"{where}: cannot read {line[end:].strip()!r}; links are 'i-j' (sure) or "
                                 "'i?j' / 'ipj' (possible), separated by spaces")
    return gold


def read_pharaoh(path: str | Path, n_sentences: int, one_based: bool) -> list[GoldAlignment]:
    """A Pharaoh file with exactly n_sentences lines -> one GoldAlignment per line."""
    lines = _read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) != n_sentences:
        raise AlignmentFileError(f"{path}: {len(lines)} lines for {n_sentences} sentence pairs (line "
                                 f"{min(len(lines), n_sentences) + 1} is where they part); the gold file needs "
                                 "one line per sentence pair, in the order of the src/tgt files")
    return [parse_pharaoh_line(line, one_based, f"{path}, line {n}") for n, line in enumerate(lines, start=1)]


def read_talp(path: str | Path, n_sentences: int) -> list[GoldAlignment]:
    """A talp/NAACL file (1-based "sentence i j [S|P] [conf]" per line) -> one GoldAlignment per sentence."""
    golds = [GoldAlignment() for _ in range(n_sentences)]
    for n, line in enumerate(_read_text(path).split("\n"), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}, line {n}"
        if len(fields) < 3 or not all(f.isdigit() for f in fields[:3]) or \
                (len(fields) > 3 and fields[3] not in ("S", "P", "s", "p")):
            raise AlignmentFileError(f"{where}: expected 'sentence i j [S|P] [confidence]' (talp format, 1-based), "
                                     f"got {line.strip()!r}")
        sent, i, j = (int(f) for f in fields[:3])
        if not 1 <= sent <= n_sentences:
            raise AlignmentFileError(f"{where}: sentence {sent} is outside 1..{n_sentences}; the talp file must "
                                     "number the sentence pairs of the src/tgt files from 1")
        if i > 0 and j > 0:  # position 0 is NULL
            golds[sent - 1].add((i - 1, j - 1), sure=len(fields) == 3 or fields[3] in ("S", "s"))
    return golds


def read_gold(path: str | Path, fmt: str, n_sentences: int, one_based: bool) -> list[GoldAlignment]:
    """Read a gold file in `fmt` (pharaoh | talp); talp is always 1-based."""
    if fmt not in FORMATS:
        raise ValueError(f"gold_format must be one of {FORMATS}, got {fmt!r}")
    return read_pharaoh(path, n_sentences, one_based) if fmt == "pharaoh" else read_talp(path, n_sentences)


def check_bounds(golds: list[GoldAlignment], src_lengths: list[int], tgt_lengths: list[int], path: str | Path,
                 one_based: bool) -> None:
    """Every link inside its sentence (word counts per line); else the error names the line and the index."""
    shown = 1 if one_based else 0
    for n, (gold, S, T) in enumerate(zip(golds, src_lengths, tgt_lengths), start=1):
        for i, j in sorted(gold.possible):
            if i >= S or j >= T:
                raise AlignmentFileError(
                    f"{path}, line {n}: link {i + shown}-{j + shown} is beyond the sentence pair ({S} source, {T} "
                    f"target words, {'1' if one_based else '0'}-based); check the index base (gold_one_based) and "
                    "that the src/tgt files are tokenised as the gold file (words = whitespace tokens)")


def format_pharaoh(links: set[Link] | list[Link]) -> str:
    """0-based links -> one Pharaoh line "i-j i-j ...", sorted by target then source word."""
    return " ".join(f"{i}-{j}" for i, j in sorted(links, key=lambda link: (link[1], link[0])))


def write_pharaoh(path: str | Path, alignments: list[set[Link]]) -> None:
    """One 0-based Pharaoh line per sentence pair (atomic write)."""
    atomic_write_text(path, "".join(format_pharaoh(a) + "\n" for a in alignments))


def _read_text(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise AlignmentFileError(f"{path}: alignment file not found; pass gold=<file> (Pharaoh or talp format)")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise AlignmentFileError(f"{path}: not UTF-8 text ({e}); an alignment file holds digits, '-', '?', 'p'") from e
