"""Prefetcher (nmt.data.prefetch): the same batches as without it, the state of the consumed batches,
exceptions of the thread raised in the loop, and no thread left behind however the loop ends."""
from __future__ import annotations

import random
import threading
import traceback
from contextlib import closing

import pytest
import torch

from nmt.data.batching import Batch, BatchIterator, TokenBatchSampler
from nmt.data.idstore import RaggedIds
from nmt.data.prefetch import Prefetcher

PAD, BOS, EOS = 0, 2, 3
CPU = torch.device("cpu")


def iterator(n: int = 600, seed: int = 0) -> BatchIterator:
    """Random id rows of 1-30 tokens, batches of at most 200 padded tokens (a few dozen per epoch)."""
    rng = random.Random(seed)
    rows = [[rng.randrange(4, 50) for _ in range(rng.randint(1, 30))] for _ in range(2 * n)]
    src, tgt = RaggedIds.from_lists(rows[:n]), RaggedIds.from_lists(rows[n:])
    sampler = TokenBatchSampler(src.lengths(), tgt.lengths(), max_tokens=200, shuffle=True, seed=seed)
    return BatchIterator(src, tgt, sampler, PAD, BOS, EOS)


def as_lists(batch: Batch) -> tuple:
    return (batch.src.tolist(), batch.src_lengths.tolist(), batch.tgt_in.tolist(), batch.tgt_out.tolist(),
            batch.indices.tolist(), batch.n_tgt_tokens)


def epochs(batches, n: int) -> list[list[tuple]]:
    out = []
    for epoch in range(n):
        batches.set_epoch(epoch)
        out.append([as_lists(b) for b in batches])
    return out


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "nmt-prefetch"]


@pytest.mark.parametrize("depth", [1, 3])
def test_prefetched_batches_equal_the_plain_sequence(depth):
    plain = epochs(iterator(), 3)
    fetched = epochs(Prefetcher(iterator(), depth, CPU), 3)
    assert len(plain[0]) > 10 and fetched == plain
    assert not prefetch_threads()


@pytest.mark.parametrize("k", [0, 1, 7, "all"])
def test_state_after_k_consumed_batches_equals_the_plain_state_and_resumes_there(k):
    plain, fetched = iterator(), Prefetcher(iterator(), 4, CPU)
    k = len(plain) if k == "all" else k
    states = []
    for batches in (plain, fetched):
        batches.set_epoch(2)
        with closing(iter(batches)) as it:
            for _ in range(k):
                next(it)
            states.append(batches.state_dict())  # while iterating: what a checkpoint saves
        states.append(batches.state_dict())      # after close: the thread's batches built ahead are forgotten
    assert states[0] == states[1] == states[2] == states[3] == {"epoch": 2, "position": k}
    rest = iterator()
    rest.load_state_dict(states[2])
    assert [as_lists(b) for b in fetched] == [as_lists(b) for b in rest]  # continues at batch k


def test_the_state_after_a_whole_epoch_is_the_next_epoch():
    plain, fetched = iterator(), Prefetcher(iterator(), 2, CPU)
    for batches in (plain, fetched):
        batches.set_epoch(1)
        list(batches)
    assert fetched.state_dict() == plain.state_dict() == {"epoch": 2, "position": 0}


class Exploding:
    """A source whose iterator raises after `good` batches."""

    def __init__(self, good: int):
        self.inner, self.good = iterator(), good

    def __iter__(self):
        for i, batch in enumerate(self.inner):
            if i == self.good:
                explode_in_the_source()
            yield batch

    def __len__(self):
        return len(self.inner)

    def set_epoch(self, epoch):
        self.inner.set_epoch(epoch)

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)


def explode_in_the_source():
    raise ValueError("bad row 17")


def test_an_exception_in_the_thread_is_raised_in_the_loop_with_its_traceback():
    fetched, got = Prefetcher(Exploding(good=3), 2, CPU), []
    with pytest.raises(ValueError, match="bad row 17") as e:
        for batch in fetched:
            got.append(batch)
    assert len(got) == 3  # the batches built before the error still arrive, in order
    frames = [f.name for f in traceback.extract_tb(e.value.__traceback__)]
    assert "explode_in_the_source" in frames and "run" in frames  # the thread's own frames
    assert not prefetch_threads()
    assert fetched.state_dict() == {"epoch": 0, "position": 3}  # rewound to the consumed batches


@pytest.mark.parametrize("end", ["exhausted", "closed early", "exception in the loop", "KeyboardInterrupt"])
def test_no_thread_is_left_however_the_loop_ends(end):
    fetched = Prefetcher(iterator(), 2, CPU)
    it = iter(fetched)
    next(it)
    thread = fetched.worker.thread
    assert thread.is_alive()
    if end == "exhausted":
        for _ in it:
            pass
    elif end == "closed early":
        it.close()
    else:
        error = KeyboardInterrupt if end == "KeyboardInterrupt" else RuntimeError
        with pytest.raises(error):
            with closing(it):
                for _ in it:
                    raise error()
    assert not thread.is_alive() and not prefetch_threads() and fetched.worker is None


def test_set_epoch_during_an_iteration_is_refused_and_depth_zero_names_the_setting():
    fetched = Prefetcher(iterator(), 1, CPU)
    with closing(iter(fetched)) as it:
        next(it)
        with pytest.raises(RuntimeError, match="close the iteration first"):
            fetched.set_epoch(3)
    with pytest.raises(ValueError, match="trainer.prefetch=0"):
        Prefetcher(iterator(), 0, CPU)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA: pinned memory and the side-stream copy")
def test_on_cuda_batches_arrive_on_the_device_equal_to_the_plain_ones():
    device = torch.device("cuda")
    plain = [as_lists(b) for b in iterator()]
    fetched = []
    for batch in Prefetcher(iterator(), 3, device):
        assert batch.src.device.type == "cuda"
        assert batch.to(device, non_blocking=True).src is batch.src  # train_step's .to is a no-op then
        fetched.append(as_lists(batch))
    assert fetched == plain
