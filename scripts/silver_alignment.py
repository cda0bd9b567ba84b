"""Silver word alignment of Multi30k test_2016_flickr de-en with eflomal (Östling & Tiedemann 2016).

    pip install -e '.[silver]'     # eflomal
    NMT_DATA_DIR=/path/to/data python3 scripts/silver_alignment.py docs/data/multi30k_test2016_de-en.silver.align

eflomal is trained on train (29,000 pairs) + test_2016_flickr (1,000 pairs) in both directions and
symmetrised with grow-diag-final-and (Koehn et al. 2003); the last 1,000 lines are kept. This is a
SILVER standard (a statistical aligner's output, Sure links only), not a human gold alignment.

Words: the whitespace tokens of the raw Multi30k lines, exactly what nmt's subword -> word aggregation
uses (docs/alignment.md). eflomal sees each token lower-cased with its leading/trailing punctuation
stripped (a token of punctuation only is kept as is), so "Hund." and "Hund" are one type; the token
count, and so every index, is unchanged. Output: 0-based Pharaoh "i-j", i German (source) word,
j English (target) word.
"""
from __future__ import annotations

import gzip
import io
import os
import string
import sys
import tempfile
from pathlib import Path

NEIGHBOURS = [(-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)]


def read(root: Path, split: str, lang: str) -> list[str]:
    with gzip.open(root / "multi30k" / f"{split}.{lang}.gz", "rt", encoding="utf-8") as f:
        return [line.strip() for line in f]


def normalise(line: str) -> str:
    """Lower-case, strip punctuation around each whitespace token; the number of tokens is unchanged."""
    return " ".join(t.lower().strip(string.punctuation + "„“”‚‘’«»") or t for t in line.split())


def parse(line: str) -> set[tuple[int, int]]:
    return {(int(i), int(j)) for i, j in (link.split("-") for link in line.split())}


def grow_diag_final_and(fwd: set, rev: set) -> set:
    """Koehn et al. 2003 / Moses: start from the intersection, grow into diagonal neighbours of the union
    that cover an unaligned word, then add union links joining two unaligned words ("final-and")."""
    union, links = fwd | rev, fwd & rev
    grown = True
    while grown:
        grown = False
        for i, j in sorted(links):
            for di, dj in NEIGHBOURS:
                cand = (i + di, j + dj)
                src_free = all(a != cand[0] for a, _ in links)
                tgt_free = all(b != cand[1] for _, b in links)
                if cand in union and cand not in links and (src_free or tgt_free):
                    links.add(cand)
                    grown = True
    for direction in (fwd, rev):
        for i, j in sorted(direction):
            if all(a != i for a, _ in links) and all(b != j for _, b in links):
                links.add((i, j))
    return links


def main(out: str) -> None:
    try:
        from eflomal import Aligner
    except ImportError as e:
        raise SystemExit("eflomal is not installed: pip install -e '.[silver]' (or pip install eflomal)") from e
    if "NMT_DATA_DIR" not in os.environ:
        raise SystemExit("set NMT_DATA_DIR to the directory holding multi30k/*.gz")
    root = Path(os.environ["NMT_DATA_DIR"])
    src = read(root, "train", "de") + read(root, "test_2016_flickr", "de")
    tgt = read(root, "train", "en") + read(root, "test_2016_flickr", "en")
    n_test = len(read(root, "test_2016_flickr", "de"))
    with tempfile.TemporaryDirectory() as tmp:
        fwd_path, rev_path = Path(tmp) / "fwd", Path(tmp) / "rev"
        Aligner().align(io.StringIO("".join(normalise(s) + "\n" for s in src)),
                        io.StringIO("".join(normalise(t) + "\n" for t in tgt)),
                        links_filename_fwd=str(fwd_path), links_filename_rev=str(rev_path), quiet=False)
        fwd = fwd_path.read_text().splitlines()[-n_test:]
        rev = rev_path.read_text().splitlines()[-n_test:]
    lines = []
    for f, r in zip(fwd, rev):
        links = grow_diag_final_and(parse(f), parse(r))
        lines.append(" ".join(f"{i}-{j}" for i, j in sorted(links, key=lambda link: (link[1], link[0]))))
    Path(out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{out}: {len(lines)} lines, {sum(len(line.split()) for line in lines)} links", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
