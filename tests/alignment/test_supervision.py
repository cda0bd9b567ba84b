"""Word links -> subword pieces (nmt.alignment.supervision): hand-made pairs, eos and unlinked rows, bad files."""
import gzip

import numpy as np
import pytest
import torch

from nmt.alignment.links import AlignmentFileError
from nmt.alignment.supervision import alignment_targets, load_piece_links, piece_alignment, piece_links, \
    read_word_links

# "Ein Hunde läuft" -> "dogs run fast": Hunde and dogs are two pieces each; "fast" (word 2) has no link.
SRC = ["▁Ein", "▁Hund", "e", "▁läuft"]   # words 0, 1, 1, 2
TGT = ["▁dog", "s", "▁run", "▁fast"]     # words 0, 0, 1, 2
LINKS = {(1, 0), (0, 0), (2, 1)}         # (source word, target word)


def test_multi_piece_words_eos_and_unlinked_rows():
    A = piece_alignment(SRC, TGT, LINKS)  # (T + 1, S): 4 target pieces + eos, 4 source pieces
    third, full = 1 / 3, 1.0
    expected = torch.tensor([
        [third, third, third, 0.0],   # ▁dog: words Ein + Hunde = pieces 0, 1, 2
        [third, third, third, 0.0],   # s: the same word as ▁dog
        [0.0, 0.0, 0.0, full],        # ▁run: läuft
        [0.0, 0.0, 0.0, 0.0],         # ▁fast: no link, a zero row
        [0.0, 0.0, 0.0, 0.0],         # eos: no word, a zero row
    ])
    torch.testing.assert_close(A, expected)


def test_piece_links_are_target_then_source_pairs():
    assert piece_links(SRC, TGT, {(2, 1)}, "x").tolist() == [[2, 3]]
    assert piece_links([], [], set(), "x").shape == (0, 2)


def test_batch_targets_pad_with_zero_rows_and_columns():
    short = piece_links(["▁a"], ["▁b"], {(0, 0)}, "x")
    A = alignment_targets([piece_links(SRC, TGT, LINKS, "x"), short, np.zeros((0, 2), np.int64)], 6, 5)
    assert A.shape == (3, 6, 5)
    torch.testing.assert_close(A[0, :5, :4], piece_alignment(SRC, TGT, LINKS))
    assert A[0, 5].sum() == 0 and A[0, :, 4].sum() == 0  # padding row and column
    assert A[1, 0, 0] == 1 and A[1].sum() == 1
    assert A[2].sum() == 0  # a pair without links
    with pytest.raises(ValueError, match="beyond the batch's 2 target rows"):
        alignment_targets([piece_links(SRC, TGT, LINKS, "x")], 2, 5)


def test_a_link_beyond_the_pieces_words_names_the_pair():
    with pytest.raises(AlignmentFileError, match=r"f, line 7: link 3-0 is beyond the 3 source and 3 target words"):
        piece_links(SRC, TGT, {(3, 0)}, "f, line 7")


def write(tmp_path, text: str, name: str = "train.align"):
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    return path


SRC_LINES, TGT_LINES = ["Ein Hunde läuft", "a b"], ["dogs run fast", "c"]


@pytest.mark.parametrize("name", ["train.align", "train.align.gz"])
def test_reads_plain_and_gzip_files(tmp_path, name):
    path = write(tmp_path, "0-0 1-0 2-1\n1?0\n", name)
    assert read_word_links(path, SRC_LINES, TGT_LINES) == [{(0, 0), (1, 0), (2, 1)}, {(1, 0)}]


@pytest.mark.parametrize("text, message", [
    ("0-0\n", r"train.align: 1 lines for 2 sentence pairs \(line 2 is where they part\); write one 0-based"),
    ("0-0\n0-0\n0-0\n", r"3 lines for 2 sentence pairs \(line 3 is where"),
    ("0-0\n0-0 x\n", r"train.align, line 2: cannot read 'x'"),
    ("0-0\n0-1\n", r"train.align, line 2: link 0-1 is beyond the pair's 2 source and 1 target words"),
    ("3-0\n0-0\n", r"train.align, line 1: link 3-0 is beyond"),
])
def test_bad_files_name_the_line_and_the_fix(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(AlignmentFileError, match=message) as e:
        read_word_links(path, SRC_LINES, TGT_LINES)
    assert "silver_alignment.py --split train" in str(e.value) or "cannot read" in str(e.value)


def test_bad_utf8_and_missing_file(tmp_path):
    path = tmp_path / "bad.align"
    path.write_bytes(b"0-0\n0-0 \xff\n")
    with pytest.raises(AlignmentFileError, match=r"bad.align, line 2: not UTF-8"):
        read_word_links(path, SRC_LINES, TGT_LINES)
    with pytest.raises(AlignmentFileError, match="alignment file not found"):
        read_word_links(tmp_path / "none.align", SRC_LINES, TGT_LINES)


def test_load_maps_every_pair_and_checks_the_tokenizer_words(tmp_path):
    path = write(tmp_path, "0-0 1-0 2-1\n1-0\n")
    pieces = [SRC, ["▁a", "▁b"]], [TGT, ["▁c"]]
    got = load_piece_links(path, SRC_LINES, TGT_LINES, *pieces)
    assert got[0].tolist() == piece_links(SRC, TGT, LINKS, "x").tolist()
    assert got[1].tolist() == [[0, 1]]
    with pytest.raises(ValueError, match="target line 2: 1 whitespace words but the tokenizer's pieces spell 2"):
        load_piece_links(path, SRC_LINES, TGT_LINES, pieces[0], [TGT, ["▁c", "▁d"]])
