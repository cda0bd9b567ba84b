"""Silver word alignments of Multi30k with eflomal (Östling & Tiedemann 2016), cached by content hash.

    pip install -e '.[silver]'     # eflomal
    # test_2016_flickr de-en, the silver standard committed as docs/data/ (written to OUT):
    NMT_DATA_DIR=/path/to/data python3 scripts/silver_alignment.py docs/data/multi30k_test2016_de-en.silver.align
    # the training split, for supervised attention (nmt.alignment.supervision); prints the cached file:
    NMT_DATA_DIR=/path/to/data python3 scripts/silver_alignment.py --split train --src de --tgt en

eflomal aligns in both directions and the two are symmetrised with grow-diag-final-and (Koehn et al.
2003). What it is trained on: for --split train, the training split alone (no test text enters a label
the model trains on); for any other split (test_2016_flickr), train + that split (eflomal needs the
larger corpus), and the split's own lines are kept. This is a SILVER standard (a statistical aligner's
output, Sure links only), not a human gold alignment.

Words: the whitespace tokens of the raw Multi30k lines, exactly what nmt's subword -> word mapping uses
(docs/alignment.md). eflomal sees each token lower-cased with its leading/trailing punctuation stripped
(a token of punctuation only is kept as is), so "Hund." and "Hund" are one type; the token count, and
so every index, is unchanged. Output: one line per sentence pair, 0-based Pharaoh "i-j", i the source
(--src) word, j the target (--tgt) word.

Cache: <cache-dir>/alignments/multi30k-<split>-<src>-<tgt>-<key>.align, key = sha256 of CACHE_VERSION,
the eflomal version, the languages, the split and every input line. Changed text, languages or code
(bump CACHE_VERSION) give a new key, so a stale file is never read; the file is written atomically
(temp file, fsync, rename) and one with the wrong line count is rebuilt. eflomal takes no seed: two
builds differ a little, which is why the first is kept.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import string
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from nmt.common import atomic_write_text

NEIGHBOURS = [(-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)]
CACHE_VERSION = "1"  # bump when normalise, grow_diag_final_and or the corpus choice changes
TRAIN = "train"


def read(root: Path, split: str, lang: str) -> list[str]:
    path = root / "multi30k" / f"{split}.{lang}.gz"
    if not path.is_file():
        raise SystemExit(f"{path}: not found; set NMT_DATA_DIR to the directory holding multi30k/<split>.<lang>.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
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


def format_line(links: set[tuple[int, int]]) -> str:
    return " ".join(f"{i}-{j}" for i, j in sorted(links, key=lambda link: (link[1], link[0])))


def align(src: list[str], tgt: list[str], n_keep: int) -> list[str]:
    """eflomal both ways on (src, tgt), symmetrised -> Pharaoh lines of the last n_keep pairs."""
    from eflomal import Aligner
    with tempfile.TemporaryDirectory() as tmp:
        fwd_path, rev_path = Path(tmp) / "fwd", Path(tmp) / "rev"
        Aligner().align(io.StringIO("".join(normalise(s) + "\n" for s in src)),
                        io.StringIO("".join(normalise(t) + "\n" for t in tgt)),
                        links_filename_fwd=str(fwd_path), links_filename_rev=str(rev_path), quiet=False)
        fwd = fwd_path.read_text().splitlines()[-n_keep:]
        rev = rev_path.read_text().splitlines()[-n_keep:]
    return [format_line(grow_diag_final_and(parse(f), parse(r))) for f, r in zip(fwd, rev)]


def cache_key(corpus: dict[str, list[str]], split: str, src_lang: str, tgt_lang: str) -> str:
    """sha256 of the code version, eflomal's version, the languages, the split and every input line."""
    h = hashlib.sha256(f"{CACHE_VERSION}|{version('eflomal')}|{src_lang}|{tgt_lang}|{split}".encode())
    for name in sorted(corpus):
        h.update(f"\0{name}\0{len(corpus[name])}\0".encode())
        h.update("\n".join(corpus[name]).encode("utf-8"))
    return h.hexdigest()[:16]


def inputs(root: Path, split: str, src_lang: str, tgt_lang: str) -> tuple[list[str], dict[str, list[str]]]:
    """The splits eflomal is trained on, in order (train first, the aligned split last), and their lines
    {"<split>.<lang>": lines}."""
    splits = [TRAIN] if split == TRAIN else [TRAIN, split]
    corpus = {f"{s}.{lang}": read(root, s, lang) for s in splits for lang in (src_lang, tgt_lang)}
    for s in splits:
        if len(corpus[f"{s}.{src_lang}"]) != len(corpus[f"{s}.{tgt_lang}"]):
            raise SystemExit(f"multi30k/{s}: {src_lang} and {tgt_lang} files differ in line count")
    return splits, corpus


def cached_alignment(root: Path, cache_dir: Path, split: str, src_lang: str, tgt_lang: str) -> Path:
    """The cached Pharaoh file of (split, src, tgt), built first when absent or incomplete."""
    splits, corpus = inputs(root, split, src_lang, tgt_lang)
    n_keep = len(corpus[f"{split}.{src_lang}"])
    key = cache_key(corpus, split, src_lang, tgt_lang)
    path = cache_dir / "alignments" / f"multi30k-{split}-{src_lang}-{tgt_lang}-{key}.align"
    if path.is_file() and len(path.read_text(encoding="utf-8").splitlines()) == n_keep:
        print(f"using cached {path}", file=sys.stderr)
        return path
    src = [line for s in splits for line in corpus[f"{s}.{src_lang}"]]
    tgt = [line for s in splits for line in corpus[f"{s}.{tgt_lang}"]]
    start = time.perf_counter()
    lines = align(src, tgt, n_keep)
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    print(f"{path}: {len(lines)} lines, {sum(len(line.split()) for line in lines)} links; eflomal on "
          f"{len(src)} pairs + symmetrisation took {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return path


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", nargs="?", help="also write the alignment here (default: only the cache)")
    p.add_argument("--split", default="test_2016_flickr", help="Multi30k split to align (train, test_2016_flickr, ...)")
    p.add_argument("--src", default="de", help="source language (word i of 'i-j')")
    p.add_argument("--tgt", default="en", help="target language (word j of 'i-j')")
    p.add_argument("--cache-dir", default=os.environ.get("NMT_CACHE_DIR", ".cache/nmt"),
                   help="as data.cache_dir: $NMT_CACHE_DIR, else .cache/nmt")
    args = p.parse_args(argv)
    try:
        import eflomal  # noqa: F401
    except ImportError as e:
        raise SystemExit("eflomal is not installed: pip install -e '.[silver]' (or pip install eflomal)") from e
    if "NMT_DATA_DIR" not in os.environ:
        raise SystemExit("set NMT_DATA_DIR to the directory holding multi30k/*.gz")
    path = cached_alignment(Path(os.environ["NMT_DATA_DIR"]), Path(args.cache_dir), args.split, args.src, args.tgt)
    if args.out:
        atomic_write_text(args.out, path.read_text(encoding="utf-8"))
        print(f"wrote {args.out}", file=sys.stderr)
    print(path)
    return path


if __name__ == "__main__":
    main()
