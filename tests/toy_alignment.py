"""The exact gold word alignment of a ToyCorpus split (imported as ``toy_alignment``: tests/ is on sys.path)."""
from __future__ import annotations

from nmt.data.corpus import ToyCorpus


def gold_alignment(corpus: ToyCorpus, split: str) -> list[tuple[set[tuple[int, int]], set[tuple[int, int]]]]:
    """The true word alignment of each pair of `split`: (sure, possible) sets of (source word, target word)
    links, 0-based. Sure: target word j comes from source word order[j]. Possible adds, for sort only,
    every other source word with the same token (equal words may swap without changing the pair)."""
    gold = []
    for words, order in corpus.sample(split):
        sure = {(k, j) for j, k in enumerate(order)}
        possible = set(sure)
        if corpus.task == "sort":
            possible |= {(k, j) for j, src in enumerate(order) for k in range(len(words)) if words[k] == words[src]}
        gold.append((sure, possible))
    return gold
