"""Gold files: Pharaoh (0- or 1-based, sure/possible) and talp; bad input fails with the line number."""
import pytest

from nmt.alignment.links import (AlignmentFileError, check_bounds, format_pharaoh, parse_pharaoh_line, read_gold,
                                 write_pharaoh)


def test_pharaoh_sure_and_every_possible_spelling():
    g = parse_pharaoh_line("0-0 1?2 3p4 5 p 6  7-8", one_based=False, where="x")
    assert g.sure == {(0, 0), (7, 8)}
    assert g.possible == {(0, 0), (1, 2), (3, 4), (5, 6), (7, 8)}


def test_one_based_pharaoh(tmp_path):
    path = tmp_path / "gold.align"
    path.write_text("1-1 2?3\n\n3-1\n")
    g = read_gold(path, "pharaoh", 3, one_based=True)
    assert g[0].sure == {(0, 0)} and g[0].possible == {(0, 0), (1, 2)}
    assert g[1].possible == set()
    assert g[2].sure == {(2, 0)}


@pytest.mark.parametrize("text, pairs, one_based, message", [
    ("1-1\n0-2\n", 2, True, r"gold.align, line 2: index 0 in a 1-based file"),
    ("0-0\n1-1\n", 3, False, r"gold.align: 2 lines for 3 sentence pairs \(line 3 is where"),
    ("0-0\n0-1 1:2\n", 2, False, r"gold.align, line 2: cannot read '1:2'"),
])
def test_bad_pharaoh_names_the_line(tmp_path, text, pairs, one_based, message):
    path = tmp_path / "gold.align"
    path.write_text(text)
    with pytest.raises(AlignmentFileError, match=message):
        read_gold(path, "pharaoh", pairs, one_based=one_based)


def test_index_beyond_the_sentence_names_the_line(tmp_path):
    path = tmp_path / "gold.align"
    path.write_text("0-0 1-1\n0-0 3-1\n")
    golds = read_gold(path, "pharaoh", 2, one_based=False)
    check_bounds(golds[:1], [2], [2], path, one_based=False)  # fine
    with pytest.raises(AlignmentFileError, match=r"line 2: link 3-1 is beyond the sentence pair \(3 source, 2 target"):
        check_bounds(golds, [2, 3], [2, 2], path, one_based=False)


def test_talp_links_one_per_line(tmp_path):
    path = tmp_path / "gold.talp"
    path.write_text("1 1 1 S\n1 2 3 P\n2 1 2\n2 0 1 S\n1 3 1 P 0.5\n")
    g = read_gold(path, "talp", 3, one_based=False)  # talp is 1-based whatever the flag
    assert g[0].sure == {(0, 0)} and g[0].possible == {(0, 0), (1, 2), (2, 0)}
    assert g[1].sure == {(0, 1)} and g[1].possible == {(0, 1)}  # the NULL link 0-1 is skipped
    assert g[2].possible == set()


@pytest.mark.parametrize("text, message", [("1 1 1 S\n3 1 1 S\n", r"line 2: sentence 3 is outside 1..2"),
                                           ("1 1 1 S\n1 x 1\n", r"line 2: expected 'sentence i j")])
def test_bad_talp_names_the_line(tmp_path, text, message):
    path = tmp_path / "gold.talp"
    path.write_text(text)
    with pytest.raises(AlignmentFileError, match=message):
        read_gold(path, "talp", 2, one_based=False)


def test_write_and_read_back(tmp_path):
    links = [{(1, 0), (0, 1), (2, 1)}, set()]
    assert format_pharaoh(links[0]) == "1-0 0-1 2-1"
    write_pharaoh(tmp_path / "out.align", links)
    assert (tmp_path / "out.align").read_text() == "1-0 0-1 2-1\n\n"
    back = read_gold(tmp_path / "out.align", "pharaoh", 2, one_based=False)
    assert [b.sure for b in back] == links
