"""No oracle pick: select=best chooses on one half of the gold pairs and reports the other."""
import math

from nmt.alignment.links import GoldAlignment
from nmt.alignment.pipeline import best_selection, halves, pick_selection, split_scores


def test_halves_are_disjoint_interleaved_and_cover_every_pair():
    pick, held = halves(7)
    assert pick == [0, 2, 4, 6] and held == [1, 3, 5]  # odd-numbered lines choose, even-numbered lines report
    assert halves(1) == ([0], [])


def test_best_is_chosen_on_the_pick_half_and_reported_on_the_held_out_half():
    """`a` aligns the pick half (pairs 0, 2) perfectly and the held-out half (1, 3) wrongly; `b` is better over
    all four pairs (an oracle on all pairs, or on the held-out half, would take `b`). The pick must be `a`,
    reported with its held-out AER of 1."""
    golds = [GoldAlignment({(0, 0)}, {(0, 0)}) for _ in range(4)]
    right, wrong = {(0, 0)}, {(1, 0)}
    links = {"b": [wrong, right, right, right], "a": [right, wrong, right, wrong]}
    scores = split_scores(links, golds)
    assert scores["b"]["aer"] < scores["a"]["aer"]  # the oracle pick over all pairs
    assert scores["b"]["aer_held_out"] < scores["a"]["aer_held_out"]  # ... and over the reported pairs
    assert (scores["a"]["aer_pick"], scores["b"]["aer_pick"]) == (0.0, 0.5)
    assert best_selection(scores) == "a" and pick_selection(["b", "a"], "best", scores) == "a"
    assert scores["a"]["aer_held_out"] == 1.0  # what select=best reports: worse than the oracle's 0.0
    assert scores["a"]["aer"] == 0.5


def test_one_pair_has_no_held_out_half():
    gold = [GoldAlignment({(0, 0)}, {(0, 0)})]
    scores = split_scores({"x": [{(0, 0)}]}, gold)
    assert scores["x"]["aer_pick"] == 0.0 and math.isnan(scores["x"]["aer_held_out"])
