"""AER, precision and recall on hand-made gold/prediction pairs (Och & Ney 2003, Sec. 5), worked out by hand."""
import math

import pytest

from nmt.alignment.aer import aer_scores
from nmt.alignment.links import GoldAlignment


def gold(sure, possible=()):
    return GoldAlignment(set(sure), set(sure) | set(possible))


def test_one_sentence_by_hand():
    # S = {0-0, 1-1}, P = S + {2-1}; A = {0-0, 2-1, 2-2}
    # |A| = 3, |S| = 2, |A & S| = 1 (0-0), |A & P| = 2 (0-0, 2-1)
    # precision 2/3, recall 1/2, AER = 1 - (1 + 2) / (3 + 2) = 0.4
    s = aer_scores([{(0, 0), (2, 1), (2, 2)}], [gold({(0, 0), (1, 1)}, {(2, 1)})])
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["recall"] == pytest.approx(1 / 2)
    assert s["aer"] == pytest.approx(0.4)


def test_counts_are_summed_over_the_corpus():
    # second pair: S = P = {0-1}, A = {0-1}: totals |A| 4, |S| 3, |A & S| 2, |A & P| 3
    # precision 3/4, recall 2/3, AER = 1 - 5/7 (not the mean of 0.4 and 0)
    s = aer_scores([{(0, 0), (2, 1), (2, 2)}, {(0, 1)}], [gold({(0, 0), (1, 1)}, {(2, 1)}), gold({(0, 1)})])
    assert (s["precision"], s["recall"]) == (pytest.approx(3 / 4), pytest.approx(2 / 3))
    assert s["aer"] == pytest.approx(2 / 7)


def test_predicting_every_possible_link_scores_zero_aer():
    # A = P: |A & S| = |S| = 2, |A & P| = |A| = 3 -> AER = 1 - (2 + 3) / (3 + 2) = 0
    s = aer_scores([{(0, 0), (1, 1), (2, 1)}], [gold({(0, 0), (1, 1)}, {(2, 1)})])
    assert s == {"precision": 1.0, "recall": 1.0, "aer": 0.0}


def test_a_possible_only_prediction_has_full_precision_but_no_recall():
    # A = {2-1} (Possible, not Sure): precision 1/1, recall 0/2, AER = 1 - (0 + 1) / (1 + 2) = 2/3
    s = aer_scores([{(2, 1)}], [gold({(0, 0), (1, 1)}, {(2, 1)})])
    assert s["precision"] == 1.0 and s["recall"] == 0.0
    assert s["aer"] == pytest.approx(2 / 3)


def test_empty_prediction():
    s = aer_scores([set()], [gold({(0, 0)})])
    assert math.isnan(s["precision"]) and s["recall"] == 0.0 and s["aer"] == 1.0


def test_lengths_must_match():
    with pytest.raises(ValueError, match="2 predicted alignments for 1 gold"):
        aer_scores([set(), set()], [gold({(0, 0)})])
