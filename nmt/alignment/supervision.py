"""Supervised (guided) alignment: the word links of a Pharaoh file, on the subword pieces the model sees.

Rule (docs/alignment.md, "Supervision: word links on subword pieces"). Words are whitespace tokens, a
word is the run of pieces that starts at a "▁" piece (extract.piece_words, the same grouping that reads
word alignments off attention). Over the decoder's rows, target pieces y_0 .. y_{T-1} and the final eos
(tgt_out = y + eos, nmt.data.batching), and the encoder's columns, the source pieces (the source carries
no bos/eos):

    piece (t, s) is linked  iff  word(t) and word(s) are linked in the file
    A[t, s] = 1 / n_t on the n_t source pieces linked to target piece t, else 0

so every linked row sums to 1 (a distribution over source pieces, as an attention row), and a row with
no link (an unaligned target word, the eos row, padding) is all zero and adds nothing to a loss
(nmt.training.align_loss). Row t is the row that *predicts* y_t (teacher forcing: input y_{t-1}), as in
fairseq's transformer_align and Garg et al. 2019, Sec. 4; no shift (Chen et al. 2020) is applied.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from torch import Tensor

from nmt.alignment.extract import piece_words
from nmt.alignment.links import AlignmentFileError, Link, parse_pharaoh_line
from nmt.data.align_rows import alignment_targets
from nmt.data.corpus import Corpus, stream_pairs
from nmt.data.tokenizer import SubwordTokenizer

REBUILD = ("write one 0-based Pharaoh line per sentence pair of the split, in corpus order, over the whitespace "
           "words of its raw lines (for Multi30k: python3 scripts/silver_alignment.py --split train --src <src> "
           "--tgt <tgt>)")


def read_word_links(path: str | Path, src_lines: list[str], tgt_lines: list[str]) -> list[set[Link]]:
    """A 0-based Pharaoh file (plain or .gz) for the sentence pairs (src_lines, tgt_lines) -> the links
    {(source word i, target word j)} of every pair, Sure and Possible alike.

    Fails before any training with AlignmentFileError naming the file, the line and the fix: a line count
    other than the pairs', text that is not a link, a link beyond the whitespace words of its line.
    """
    if len(src_lines) != len(tgt_lines):
        raise ValueError(f"{len(src_lines)} source lines but {len(tgt_lines)} target lines")
    lines = _read_lines(Path(path))
    if len(lines) != len(src_lines):
        raise AlignmentFileError(f"{path}: {len(lines)} lines for {len(src_lines)} sentence pairs (line "
                                 f"{min(len(lines), len(src_lines)) + 1} is where they part); {REBUILD}")
    out = []
    for n, (line, src, tgt) in enumerate(zip(lines, src_lines, tgt_lines), start=1):
        where = f"{path}, line {n}"
        links = parse_pharaoh_line(line, one_based=False, where=where).possible
        S, T = len(src.split()), len(tgt.split())
        bad = [(i, j) for i, j in sorted(links) if i >= S or j >= T]
        if bad:
            raise AlignmentFileError(f"{where}: link {bad[0][0]}-{bad[0][1]} is beyond the pair's {S} source and "
                                     f"{T} target words (0-based 'source-target'); the file belongs to other "
                                     f"text or another direction; {REBUILD}")
        out.append(links)
    return out


def _read_lines(path: Path) -> list[str]:
    """The file's lines (gzip when it ends in .gz), without the final empty one."""
    if not path.is_file():
        raise AlignmentFileError(f"{path}: alignment file not found; {REBUILD}")
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise AlignmentFileError(f"{path}, line {line}: not UTF-8 text; a Pharaoh file holds digits, '-' and "
                                 f"spaces; {REBUILD}") from e
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def piece_links(src_pieces: list[str], tgt_pieces: list[str], links: set[Link], where: str) -> np.ndarray:
    """Word links -> piece links (L, 2) int64 rows (t, s), target piece t and source piece s whose words are
    linked, sorted by t then s. `where` names the pair in the error for a link beyond the pieces' words."""
    src_w, tgt_w = piece_words(src_pieces), piece_words(tgt_pieces)
    n_src, n_tgt = max(src_w, default=-1) + 1, max(tgt_w, default=-1) + 1
    word = np.zeros((n_tgt, n_src), dtype=bool)  # (Tw, Sw) word[j, i]: target word j ~ source word i
    for i, j in links:
        if i >= n_src or j >= n_tgt:
            raise AlignmentFileError(f"{where}: link {i}-{j} is beyond the {n_src} source and {n_tgt} target words "
                                     "the subword pieces spell; the tokenizer must keep whitespace words intact")
        word[j, i] = True
    piece = word[np.ix_(tgt_w, src_w)]  # (T, S) piece[t, s] = word[word(t), word(s)]
    return np.argwhere(piece).astype(np.int64)  # (L, 2) rows (t, s)


def load_piece_links(path: str | Path, src_lines: list[str], tgt_lines: list[str], src_pieces: list[list[str]],
                     tgt_pieces: list[list[str]]) -> list[np.ndarray]:
    """Read and check a Pharaoh file for a split, then map every pair's links onto its pieces.

    src_lines, tgt_lines: the raw lines (words = whitespace tokens); src_pieces, tgt_pieces: their
    sentencepiece pieces without bos/eos (SubwordTokenizer.pieces). -> one (L, 2) array of (t, s) per pair.
    A line whose pieces spell another number of words than its whitespace tokens raises naming the line.
    """
    word_links = read_word_links(path, src_lines, tgt_lines)
    out = []
    for n, (links, src, tgt, sp, tp) in enumerate(zip(word_links, src_lines, tgt_lines, src_pieces, tgt_pieces),
                                                  start=1):
        for side, line, pieces in (("source", src, sp), ("target", tgt, tp)):
            spelled = max(piece_words(pieces), default=-1) + 1
            if spelled != len(line.split()):
                raise ValueError(f"{side} line {n}: {len(line.split())} whitespace words but the tokenizer's pieces "
                                 f"spell {spelled}; remove control or zero-width characters so both agree")
        out.append(piece_links(sp, tp, links, f"{path}, line {n}"))
    return out


def piece_alignment(src_pieces: list[str], tgt_pieces: list[str], links: set[Link]) -> Tensor:
    """One pair's A (T + 1, S): rows the target pieces and eos (a zero row), columns the source pieces."""
    pairs = piece_links(src_pieces, tgt_pieces, links, "pair")
    return alignment_targets([pairs], len(tgt_pieces) + 1, len(src_pieces))[0]  # (T + 1, S)


def split_lines(corpus: Corpus, split: str) -> tuple[list[str], list[str]]:
    """The raw (src, tgt) lines of a corpus split, in corpus order."""
    src, tgt = [], []
    for s, t in stream_pairs(corpus, split, 20_000):
        src.extend(s)
        tgt.extend(t)
    return src, tgt


def check_alignment_file(path: str | Path, corpus: Corpus, split: str) -> None:
    """nmt-train's check before anything is written: line count and word ranges of data.alignment against
    the split's raw lines (read_word_links raises AlignmentFileError naming the line)."""
    read_word_links(path, *split_lines(corpus, split))


def split_piece_links(path: str | Path, corpus: Corpus, split: str, src_tok: SubwordTokenizer,
                      tgt_tok: SubwordTokenizer, rows: np.ndarray | None) -> list[np.ndarray]:
    """The piece links (L, 2) of a split's pairs from its Pharaoh file (load_piece_links), for the rows the
    training keeps (rows: indices into the split, e.g. DataBundle.train_rows; None = all)."""
    src, tgt = split_lines(corpus, split)
    pieces = []
    for tok, lines in ((src_tok, src), (tgt_tok, tgt)):
        table = tok.pieces(range(len(tok)))  # id -> piece: the pieces of the ids the model sees
        pieces.append([[table[i] for i in ids] for ids in tok.encode(lines)])
    links = load_piece_links(path, src, tgt, *pieces)
    return links if rows is None else [links[i] for i in rows]

