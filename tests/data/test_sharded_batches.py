"""Under DDP each rank collates only its own batches of a global batch (BatchIterator.sharded): the others come
as Counted (their token and linked-row counts, for the loss normaliser), and the sequence every rank sees is the
single-process one: same batches in the same places, same counts, also after a resume."""
from __future__ import annotations

import random

import numpy as np
import pytest

import nmt.data.batching as batching
from nmt.data.batching import BatchIterator, Counted, TokenBatchSampler
from nmt.data.idstore import RaggedIds

PAD, BOS, EOS = 0, 2, 3


def iterator(seed: int = 0, n: int = 300, links: bool = False) -> BatchIterator:
    """Random id rows of 1-20 tokens, batches of at most 120 padded tokens; optional random piece links."""
    rng = random.Random(seed)
    rows = [[rng.randrange(4, 50) for _ in range(rng.randint(1, 20))] for _ in range(2 * n)]
    src, tgt = RaggedIds.from_lists(rows[:n]), RaggedIds.from_lists(rows[n:])
    sampler = TokenBatchSampler(src.lengths(), tgt.lengths(), max_tokens=120, shuffle=True, seed=seed)
    pairs = [np.array([[rng.randrange(len(t)), rng.randrange(len(s))] for _ in range(rng.randint(0, 3))],
                      dtype=np.int64).reshape(-1, 2) for s, t in zip(rows[:n], rows[n:])] if links else None
    return BatchIterator(src, tgt, sampler, PAD, BOS, EOS, pairs)


def key(b) -> tuple:
    if isinstance(b, Counted):
        return ("counted", b.n_tgt_tokens, b.n_align_rows)
    return (b.src.tolist(), b.tgt_out.tolist(), b.n_tgt_tokens, b.n_align_rows)


@pytest.mark.parametrize("world, accum", [(2, 1), (2, 2), (3, 2)])
def test_each_rank_collates_its_share_and_sees_the_single_process_sequence(world, accum, monkeypatch):
    plain = list(iterator(links=True))
    group = world * accum
    collated = []
    collate = batching.collate_rows
    monkeypatch.setattr(batching, "collate_rows", lambda *a: collated.append(1) or collate(*a))
    for rank in range(world):
        collated.clear()
        got = list(iterator(links=True).sharded(rank, world, accum))
        own = [i for i in range(len(plain)) if (i % group) // accum == rank]
        assert len(got) == len(plain) and len(collated) == len(own)  # its own share only
        for i, (b, p) in enumerate(zip(got, plain)):
            if i in own:
                assert key(b) == key(p)
            else:
                assert key(b) == ("counted", p.n_tgt_tokens, p.n_align_rows)


def test_a_resumed_shard_continues_at_the_same_place_in_its_global_batch():
    world, accum = 2, 2
    whole = [key(b) for b in iterator().sharded(1, world, accum)]
    it = iterator().sharded(1, world, accum)
    it.load_state_dict({"epoch": 0, "position": 2 * world * accum})  # a checkpoint after two steps
    assert [key(b) for b in it] == whole[2 * world * accum:]


def test_a_single_process_iterator_collates_everything():
    assert not any(isinstance(b, Counted) for b in iterator().sharded(0, 1, 4))


def test_a_bad_shard_names_the_fix():
    with pytest.raises(ValueError, match="0 <= rank < world"):
        iterator().sharded(2, 2, 1)
