"""collate (bos/eos/pad placement) and TokenBatchSampler (coverage, budget, determinism, resume)."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from nmt.data.batching import Batch, BatchIterator, TokenBatchSampler, collate, collate_rows, pack
from nmt.data.idstore import RaggedIds

PAD, BOS, EOS = 0, 2, 3


def random_lengths(n: int, seed: int = 0, hi: int = 40) -> tuple[list[int], list[int]]:
    rng = random.Random(seed)
    return [rng.randint(1, hi) for _ in range(n)], [rng.randint(1, hi) for _ in range(n)]


def epoch_batches(sampler: TokenBatchSampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return [b.tolist() for b in sampler]


# --------------------------------------------------------------------------- collate

def test_collate_places_bos_eos_and_padding():
    b = collate([[5, 6, 7], [8]], [[9], [10, 11, 12]], [4, 0], PAD, BOS, EOS)
    assert torch.equal(b.src, torch.tensor([[5, 6, 7], [8, 0, 0]]))                    # (B, S)
    assert torch.equal(b.src_lengths, torch.tensor([3, 1]))
    assert torch.equal(b.tgt_in, torch.tensor([[2, 9, 0, 0], [2, 10, 11, 12]]))        # (B, T)
    assert torch.equal(b.tgt_out, torch.tensor([[9, 3, 0, 0], [10, 11, 12, 3]]))      # (B, T)
    assert torch.equal(b.indices, torch.tensor([4, 0])) and b.n_tgt_tokens == 6
    assert all(t.dtype == torch.long for t in (b.src, b.src_lengths, b.tgt_in, b.tgt_out, b.indices))
    assert b.n_tgt_tokens == int((b.tgt_out != PAD).sum()) and len(b) == 2


def test_collate_with_empty_targets_gives_bos_and_eos_only():
    b = collate([[5], [6, 7]], [[], []], [0, 1], PAD, BOS, EOS)
    assert b.tgt_in.tolist() == [[2], [2]] and b.tgt_out.tolist() == [[3], [3]]


def test_batch_to_moves_every_tensor():
    b = collate([[5, 6]], [[7]], [0], PAD, BOS, EOS)
    moved = b.to("cpu", non_blocking=True)
    assert isinstance(moved, Batch) and moved.n_tgt_tokens == b.n_tgt_tokens
    assert torch.equal(moved.tgt_out, b.tgt_out) and moved.src.device.type == "cpu"


# --------------------------------------------------------------------------- sampler

@pytest.mark.parametrize("shuffle", [True, False])
def test_every_index_exactly_once_per_epoch(shuffle):
    src, tgt = random_lengths(3000)
    sampler = TokenBatchSampler(src, tgt, max_tokens=400, shuffle=shuffle, seed=1)
    for epoch in range(3):
        batches = epoch_batches(sampler, epoch)
        assert sorted(i for b in batches for i in b) == list(range(3000))
        fresh = TokenBatchSampler(src, tgt, max_tokens=400, shuffle=shuffle, seed=1)
        fresh.set_epoch(epoch)
        assert len(fresh) == len(batches)  # __len__ counts what the epoch yields


def test_max_tokens_counts_padding_bos_and_eos():
    src, tgt = random_lengths(2000, seed=3)
    for batch in epoch_batches(TokenBatchSampler(src, tgt, max_tokens=300, shuffle=True, seed=0), 0):
        width = max(max(src[i], tgt[i] + 1) for i in batch)
        assert width * len(batch) <= 300
        b = collate([[5] * src[i] for i in batch], [[5] * tgt[i] for i in batch], batch, PAD, BOS, EOS)
        assert b.src.numel() <= 300 and b.tgt_in.numel() <= 300


def test_buckets_have_similar_lengths():
    src, tgt = random_lengths(5000, seed=4)
    padded = real = 0
    for batch in epoch_batches(TokenBatchSampler(src, tgt, max_tokens=1000, shuffle=True, seed=0), 0):
        padded += max(tgt[i] + 1 for i in batch) * len(batch)
        real += sum(tgt[i] + 1 for i in batch)
    assert padded / real < 1.5  # random batches of uniform lengths would be ~1.9


def test_a_pair_longer_than_max_tokens_gets_its_own_batch(caplog):
    sampler = TokenBatchSampler([3, 50, 4, 5], [3, 2, 4, 5], max_tokens=20, shuffle=False, seed=0)
    batches = [b.tolist() for b in sampler]
    assert [1] in batches and sorted(i for b in batches for i in b) == [0, 1, 2, 3]
    assert "longer than max_tokens=20" in caplog.text


def test_same_seed_and_epoch_give_the_same_batches():
    src, tgt = random_lengths(1000, seed=5)
    a = TokenBatchSampler(src, tgt, 300, shuffle=True, seed=7)
    b = TokenBatchSampler(src, tgt, 300, shuffle=True, seed=7)
    assert epoch_batches(a, 2) == epoch_batches(b, 2)
    assert epoch_batches(a, 0) != epoch_batches(a, 1)
    assert epoch_batches(TokenBatchSampler(src, tgt, 300, True, 8), 0) != epoch_batches(b, 0)


def test_without_shuffle_batches_are_sorted_and_fixed():
    src, tgt = random_lengths(500, seed=6)
    sampler = TokenBatchSampler(src, tgt, 300, shuffle=False, seed=0)
    first, second = epoch_batches(sampler, 0), epoch_batches(sampler, 1)
    widths = [max(max(src[i], tgt[i] + 1) for i in b) for b in first]
    assert first == second and widths == sorted(widths)


def test_resume_mid_epoch_yields_exactly_the_remaining_batches():
    src, tgt = random_lengths(1500, seed=8)
    sampler = TokenBatchSampler(src, tgt, 400, shuffle=True, seed=3)
    sampler.set_epoch(2)
    full = sampler.batches(2).tolist()
    seen = []
    for batch in sampler:
        seen.append(batch.tolist())
        if len(seen) == 7:
            break
    state = sampler.state_dict()
    assert state == {"epoch": 2, "position": 7}
    resumed = TokenBatchSampler(src, tgt, 400, shuffle=True, seed=3)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # what a trainer does after restoring: keeps the position
    assert seen + [b.tolist() for b in resumed] == full
    assert resumed.state_dict() == {"epoch": 3, "position": 0}  # a finished epoch moves on
    assert [b.tolist() for b in resumed] == sampler.batches(3).tolist()


def test_load_state_dict_rejects_positions_past_the_epoch():
    sampler = TokenBatchSampler([3] * 10, [3] * 10, 8, shuffle=True, seed=0)
    with pytest.raises(ValueError, match="outside epoch 0"):
        sampler.load_state_dict({"epoch": 0, "position": len(sampler) + 1})


def test_batch_iterator_collates_rows_and_exposes_the_sampler_state():
    rng = random.Random(0)
    src = [[rng.randint(4, 20) for _ in range(rng.randint(1, 9))] for _ in range(200)]
    tgt = [[rng.randint(4, 20) for _ in range(rng.randint(1, 9))] for _ in range(200)]
    it = BatchIterator(RaggedIds.from_lists(src), RaggedIds.from_lists(tgt),
                       TokenBatchSampler([len(s) for s in src], [len(t) for t in tgt], 60, True, 0), PAD, BOS, EOS)
    n = len(it)
    rows = []
    for batch in it:
        for j, i in enumerate(batch.indices.tolist()):
            assert batch.src[j, :len(src[i])].tolist() == src[i]
            assert batch.tgt_out[j, :len(tgt[i]) + 1].tolist() == tgt[i] + [EOS]
            rows.append(i)
    assert sorted(rows) == list(range(200)) and n > 1
    assert it.state_dict() == {"epoch": 1, "position": 0} and it.epoch == 1


def test_collate_rows_gathers_from_flat_arrays_through_a_row_view():
    ids = RaggedIds.from_lists([[5, 6, 7], [8], [], [9, 10]]).select(np.array([3, 0, 1, 2]))
    b = collate_rows(ids, ids, np.array([1, 0, 3]), PAD, BOS, EOS)     # rows [5,6,7], [9,10], []
    assert b.src.tolist() == [[5, 6, 7], [9, 10, 0], [0, 0, 0]] and b.src_lengths.tolist() == [3, 2, 0]
    assert b.tgt_in.tolist() == [[2, 5, 6, 7], [2, 9, 10, 0], [2, 0, 0, 0]]
    assert b.tgt_out.tolist() == [[5, 6, 7, 3], [9, 10, 3, 0], [3, 0, 0, 0]]
    assert b.indices.tolist() == [1, 0, 3] and b.n_tgt_tokens == 8


def test_pack_is_greedy_over_a_running_max():
    sizes = np.array([2, 2, 9, 1, 1, 1, 30, 3])
    # [2, 2] (a third pair of 9 gives 3 * 9 > 20); [9, 1] (the running max stays 9); [1, 1]; [30] alone; [3]
    assert pack(sizes, 20).tolist() == [0, 2, 4, 6, 7, 8]
    assert pack(np.array([], dtype=np.int64), 5).tolist() == [0]
