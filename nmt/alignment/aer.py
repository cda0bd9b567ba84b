"""Alignment error rate, precision and recall (Och & Ney 2003, Sec. 5, Eq. 5-6).

With predicted links A, Sure links S and Possible links P (S subset of P), summed over the corpus:

    precision = |A & P| / |A|        recall = |A & S| / |S|
    AER       = 1 - (|A & S| + |A & P|) / (|A| + |S|)

Counts are summed over sentences before dividing (corpus-level, as Och & Ney and Luong et al. 2015,
Table 6 report). An empty prediction has precision nan (0/0) and AER 1 when S is not empty.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from nmt.alignment.links import GoldAlignment, Link


@dataclass
class AerCounts:
    predicted: int = 0      # |A|
    sure: int = 0           # |S|
    hit_sure: int = 0       # |A & S|
    hit_possible: int = 0   # |A & P|

    def add(self, predicted: set[Link], gold: GoldAlignment) -> None:
        possible = gold.possible | gold.sure  # a Sure link is also Possible, whatever the file said
        self.predicted += len(predicted)
        self.sure += len(gold.sure)
        self.hit_sure += len(predicted & gold.sure)
        self.hit_possible += len(predicted & possible)

    def scores(self) -> dict[str, float]:
        """-> {"precision", "recall", "aer"}; a 0/0 ratio is nan."""
        ratio = lambda a, b: a / b if b else math.nan  # noqa: E731
        return {"precision": ratio(self.hit_possible, self.predicted),
                "recall": ratio(self.hit_sure, self.sure),
                "aer": 1.0 - ratio(self.hit_sure + self.hit_possible, self.predicted + self.sure)}


def aer_scores(predicted: list[set[Link]], golds: list[GoldAlignment]) -> dict[str, float]:
    """Corpus precision, recall and AER of predicted links against gold (one entry per sentence pair)."""
    if len(predicted) != len(golds):
        raise ValueError(f"{len(predicted)} predicted alignments for {len(golds)} gold sentence pairs")
    counts = AerCounts()
    for links, gold in zip(predicted, golds):
        counts.add(set(links), gold)
    return counts.scores()
