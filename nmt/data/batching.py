"""Batches: padding (collate), token-budget bucketing (TokenBatchSampler) and a resumable iterator.

Shapes: B sentences, S source length, T target length (+1 for bos/eos).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch.utils.data import Sampler

log = logging.getLogger(__name__)

# Bucketing: indices are shuffled, cut into chunks worth about this many batches, and sorted by
# length inside each chunk. Large chunks give batches of similar lengths (little padding);
# chunks < whole epoch keep some randomness in which sentences meet in a batch.
CHUNK_BATCHES = 100


@dataclass
class Batch:
    """A padded batch of sentence pairs (padding = pad_id).

    src          (B, S) long  source ids, no bos/eos
    src_lengths  (B,)   long  real source lengths
    tgt_in       (B, T) long  bos + target ids       (decoder input, teacher forcing)
    tgt_out      (B, T) long  target ids + eos       (labels)
    indices      (B,)   long  row index of each pair in its split
    n_tgt_tokens int          non-pad label tokens = sum(tgt lengths + 1)
    """

    src: torch.Tensor
    src_lengths: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor
    indices: torch.Tensor
    n_tgt_tokens: int

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        """A copy with every tensor moved to device (through pinned memory for a non-blocking CUDA copy)."""
        pin = non_blocking and torch.device(device).type == "cuda"
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in moved.items():
            if isinstance(value, torch.Tensor):
                moved[name] = (value.pin_memory() if pin else value).to(device, non_blocking=non_blocking)
        return Batch(**moved)

    def __len__(self) -> int:
        return self.src.size(0)


def _pad(rows: list[list[int]], pad_id: int) -> torch.Tensor:
    """Right-pad rows to a (B, max len) long tensor."""
    width = max((len(r) for r in rows), default=0)
    return torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], dtype=torch.long).view(len(rows), width)


def collate(src: list[list[int]], tgt: list[list[int]], indices: list[int],
            pad_id: int, bos_id: int, eos_id: int) -> Batch:
    """Pad id lists (without bos/eos) into a Batch: tgt_in = bos + tgt, tgt_out = tgt + eos.

    Source rows are used as given (an empty source row gives length 0; callers that
    may have one, like translation of empty lines, substitute [eos_id]).
    """
    if not (len(src) == len(tgt) == len(indices)):
        raise ValueError(f"collate: {len(src)} sources, {len(tgt)} targets, {len(indices)} indices")
    src = [list(s) for s in src]
    tgt = [list(t) for t in tgt]
    return Batch(
        src=_pad(src, pad_id),                                   # (B, S)
        src_lengths=torch.tensor([len(s) for s in src], dtype=torch.long),  # (B,)
        tgt_in=_pad([[bos_id] + t for t in tgt], pad_id),        # (B, T)
        tgt_out=_pad([t + [eos_id] for t in tgt], pad_id),       # (B, T)
        indices=torch.tensor(list(indices), dtype=torch.long),   # (B,)
        n_tgt_tokens=sum(len(t) + 1 for t in tgt),
    )


def pack(order: Sequence[int], sizes: np.ndarray, max_tokens: int) -> list[list[int]]:
    """Greedily cut order into consecutive batches with max(size) * n <= max_tokens.

    A single pair larger than max_tokens becomes a batch of its own.
    """
    batches: list[list[int]] = []
    current: list[int] = []
    widest = 0
    for i in order:
        size = int(sizes[i])
        if current and max(widest, size) * (len(current) + 1) > max_tokens:
            batches.append(current)
            current, widest = [], 0
        current.append(int(i))
        widest = max(widest, size)
    if current:
        batches.append(current)
    return batches


class TokenBatchSampler(Sampler):
    """Yields lists of row indices whose padded size max(len) * n stays within max_tokens.

    len of a pair = max(src_len, tgt_len + 1) (the target gains bos/eos). With shuffle, each
    epoch shuffles the indices, sorts them by length within chunks of about CHUNK_BATCHES
    batches (bucketing), packs batches and shuffles the batch order; everything is a
    function of (seed, epoch) only. Without shuffle, batches are packed over the
    length-sorted data and come in that order (same every epoch). A pair longer than
    max_tokens (data.max_tokens / trainer.max_tokens) gets a batch of its own.

    Resuming: ``state_dict()`` = {"epoch", "position"}: position counts batches already yielded
    in this epoch; a sampler given it by ``load_state_dict`` yields exactly the remaining
    batches. Finishing an epoch advances to the next one (position 0); ``set_epoch(e)`` with
    the current epoch keeps the position, so calling it after a resume is safe.
    """

    def __init__(self, src_lengths: list[int], tgt_lengths: list[int], max_tokens: int, shuffle: bool, seed: int):
        if len(src_lengths) != len(tgt_lengths):
            raise ValueError(f"{len(src_lengths)} source lengths but {len(tgt_lengths)} target lengths")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        self.sizes = np.maximum(np.asarray(src_lengths, dtype=np.int64),
                                np.asarray(tgt_lengths, dtype=np.int64) + 1)  # (N,)
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.position = 0
        self._cache: tuple[int, list[list[int]]] | None = None
        n_big = int((self.sizes > max_tokens).sum())
        if n_big:
            log.warning("%d pair(s) are longer than max_tokens=%d and get a batch each; "
                        "raise max_tokens or lower data.max_len", n_big, max_tokens)

    def _order(self, rng: np.random.Generator) -> np.ndarray:
        """Row order before packing: shuffled, then sorted by length inside chunks."""
        n = len(self.sizes)
        if not self.shuffle:
            return np.argsort(self.sizes, kind="stable")
        per_batch = max(1, self.max_tokens // max(1, int(self.sizes.mean()) if n else 1))
        chunk = max(1, per_batch * CHUNK_BATCHES)
        perm = rng.permutation(n)
        parts = [perm[s:s + chunk] for s in range(0, n, chunk)]
        return np.concatenate([p[np.argsort(self.sizes[p], kind="stable")] for p in parts]) if parts else perm

    def batches(self, epoch: int) -> list[list[int]]:
        """All batches of an epoch, in yield order (deterministic in seed and epoch)."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed % 2**63, epoch])
        batches = pack(self._order(rng), self.sizes, self.max_tokens)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        self._cache = (epoch, batches)
        return batches

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; a different epoch restarts at position 0."""
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches(self.epoch)
        while self.position < len(batches):
            self.position += 1  # counted before yielding: a checkpoint taken now skips this batch
            yield batches[self.position - 1]
        self.epoch, self.position = self.epoch + 1, 0

    def __len__(self) -> int:
        return len(self.batches(self.epoch))

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore epoch and position (from ``state_dict`` of a sampler over the same data)."""
        epoch, position = int(state["epoch"]), int(state["position"])
        if not 0 <= position <= len(self.batches(epoch)):
            raise ValueError(f"sampler position {position} is outside epoch {epoch} "
                             f"({len(self.batches(epoch))} batches); was the data or max_tokens changed?")
        self.epoch, self.position = epoch, position


class BatchIterator:
    """Iterates padded Batches of (src_ids, tgt_ids) rows in the order a TokenBatchSampler gives."""

    def __init__(self, src_ids: list[list[int]], tgt_ids: list[list[int]], sampler: TokenBatchSampler,
                 pad_id: int, bos_id: int, eos_id: int):
        if len(src_ids) != len(tgt_ids):
            raise ValueError(f"{len(src_ids)} source rows but {len(tgt_ids)} target rows")
        self.src_ids, self.tgt_ids = src_ids, tgt_ids
        self.sampler = sampler
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id

    def __iter__(self) -> Iterator[Batch]:
        for idx in self.sampler:
            yield collate([self.src_ids[i] for i in idx], [self.tgt_ids[i] for i in idx], idx,
                          self.pad_id, self.bos_id, self.eos_id)

    def __len__(self) -> int:
        return len(self.sampler)

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def state_dict(self) -> dict[str, int]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.load_state_dict(state)
