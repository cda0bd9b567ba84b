"""The next batches, built ahead by a background thread (trainer.prefetch = how many).

The thread draws from a resumable batch iterator (sampling and collate) and, on CUDA, pins each batch
and copies it to the device with ``non_blocking`` on a side stream, so the step that needs a batch
finds it ready. On CPU it only builds the batches ahead.

Exact resume: the thread runs ahead of the training loop, so the sampler's own state is that of the
batches *built*. Each batch travels with the source's state right after it was drawn, and
``Prefetcher.state_dict()`` is the state after the last batch the loop *consumed*: the same dict a
non-prefetching iterator gives at that point. Ending an iteration early (a stop, an exception)
rewinds the source to that state, so the batches built but not consumed are drawn again next time.
Nothing here draws random numbers (the sampler has its own seeded generator), so the thread leaves
the RNG states a checkpoint saves untouched.
"""
from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Protocol

import torch

from nmt.data.batching import Batch

log = logging.getLogger(__name__)

POLL_S = 0.1  # how often a waiting thread looks whether the other side stopped
JOIN_S = 30.0  # close() waits this long for a thread stuck inside the source, then warns and leaves it


class Resumable(Protocol):
    """What the prefetcher wraps (nmt.data.batching.BatchIterator): one epoch per iteration, resumable."""

    def __iter__(self) -> Iterator[Batch]: ...
    def __len__(self) -> int: ...
    def set_epoch(self, epoch: int) -> None: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class Built:
    """One batch from the thread (None: the epoch ended), the source's state after it, and on CUDA the
    event that marks its copy to the device as done."""
    batch: Batch | None
    state: dict
    ready: torch.cuda.Event | None = None


@dataclass
class Failed:
    """An exception raised in the thread, handed to the loop that consumes the batches."""
    error: BaseException


class Worker:
    """One epoch of batches built by a daemon thread into a queue of at most `depth` batches."""

    def __init__(self, source: Resumable, depth: int, device: torch.device):
        self.source, self.device = source, device
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.thread = threading.Thread(target=self.run, name="nmt-prefetch", daemon=True)
        self.thread.start()

    def run(self) -> None:
        batches = None
        try:
            batches = iter(self.source)
            for batch in batches:
                state = self.source.state_dict()  # right after this batch was drawn
                batch, ready = self.to_device(batch)
                if not self.put(Built(batch, state, ready)):
                    return
            self.put(Built(None, self.source.state_dict()))
        except BaseException as e:  # noqa: BLE001 (everything reaches the consumer, which re-raises it)
            if hasattr(e, "add_note"):  # Python >= 3.11
                e.add_note("(raised in the batch prefetch thread; trainer.prefetch=0 builds batches in the loop)")
            self.put(Failed(e))
        finally:
            if hasattr(batches, "close"):
                batches.close()

    def to_device(self, batch: Batch) -> tuple[Batch, torch.cuda.Event | None]:
        """On CUDA: pinned memory and a non-blocking copy on the side stream, and the event that ends it."""
        if self.stream is None:
            return batch, None
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            batch = batch.to(self.device, non_blocking=True)  # Batch.to pins the host tensors first
            ready = torch.cuda.Event()
            ready.record(self.stream)
        return batch, ready

    def put(self, item: Built | Failed) -> bool:
        """Wait for room in the queue; False once close() asked the thread to stop."""
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def get(self) -> Built:
        """The next item; re-raises an exception of the thread (its traceback included) here."""
        while True:
            try:
                item = self.queue.get(timeout=POLL_S)
                break
            except queue.Empty:
                if not self.thread.is_alive() and self.queue.empty():
                    raise RuntimeError("the batch prefetch thread ended without its last item; "
                                       "set trainer.prefetch=0 to build batches in the training loop") from None
        if isinstance(item, Failed):
            raise item.error
        if item.ready is not None:  # the step's stream waits for the copy, and owns the memory from here
            stream = torch.cuda.current_stream(self.device)
            stream.wait_event(item.ready)
            for f in fields(item.batch):
                value = getattr(item.batch, f.name)
                if isinstance(value, torch.Tensor):
                    value.record_stream(stream)
        return item

    def close(self) -> None:
        self.stop.set()
        self.thread.join(JOIN_S)
        if self.thread.is_alive():
            log.warning("the batch prefetch thread did not stop within %.0f s (stuck reading data?); "
                        "leaving it (a daemon thread: it does not keep the process alive)", JOIN_S)


class Prefetcher:
    """A Resumable whose batches are built `depth` ahead by a thread; its state is that of the consumed batches.

    One iteration (one epoch) runs at a time; its thread starts with the first ``next`` and stops when
    the epoch ends, when the generator is closed (``contextlib.closing``) or garbage-collected, and when
    the loop leaves by an exception (KeyboardInterrupt included). An exception raised in the thread is
    raised again in the consuming loop, with the thread's traceback.
    """

    def __init__(self, source: Resumable, depth: int, device: torch.device):
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth} (trainer.prefetch=0 means no Prefetcher)")
        self.source, self.depth, self.device = source, depth, torch.device(device)
        self.consumed: dict | None = None  # the source's state after the last consumed batch, while iterating
        self.worker: Worker | None = None

    def __iter__(self) -> Iterator[Batch]:
        if self.worker is not None:
            raise RuntimeError("a Prefetcher runs one iteration at a time: close the previous one first")
        self.consumed = self.source.state_dict()
        self.worker = Worker(self.source, self.depth, self.device)
        try:
            while True:
                item = self.worker.get()
                self.consumed = item.state
                if item.batch is None:
                    return
                yield item.batch
        finally:
            self.worker.close()
            self.worker = None
            self.source.load_state_dict(self.consumed)  # forget the batches built ahead but not consumed
            self.consumed = None

    def __len__(self) -> int:
        return len(self.source)

    @property
    def epoch(self) -> int:
        return int(self.state_dict()["epoch"])

    def state_dict(self) -> dict:
        """The state after the batches consumed so far (the source runs ahead while an iteration is on)."""
        return dict(self.consumed) if self.consumed is not None else self.source.state_dict()

    def set_epoch(self, epoch: int) -> None:
        self.check_idle("set_epoch")
        self.source.set_epoch(epoch)

    def load_state_dict(self, state: dict) -> None:
        self.check_idle("load_state_dict")
        self.source.load_state_dict(state)

    def check_idle(self, what: str) -> None:
        if self.worker is not None:
            raise RuntimeError(f"Prefetcher.{what} during an iteration: close the iteration first")
