"""Batches: padding (collate), token-budget bucketing (TokenBatchSampler) and a resumable iterator.

Shapes: B sentences, S source length, T target length (+1 for bos/eos).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch.utils.data import Sampler

from nmt.common import HostLengths
from nmt.data.align_rows import alignment_targets, linked_row_count
from nmt.data.idstore import RaggedIds

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
    align        (B, T, S) float or None  alignment targets of supervised training (data.alignment:
                              nmt.data.align_rows.alignment_targets), None without
    n_align_rows int          target rows of align with a link (0 without): the loss's normaliser
    host         HostLengths or None  src_lengths on the host, built with the batch (the RNN encoder packs with
                              them: no device->host copy); Batch.to and the prefetcher leave them there
    """

    src: torch.Tensor
    src_lengths: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor
    indices: torch.Tensor
    n_tgt_tokens: int
    align: torch.Tensor | None = None
    n_align_rows: int = 0
    host: HostLengths | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        """A copy with every tensor moved to device (through pinned memory for a non-blocking CUDA copy;
        tensors already there, as nmt.data.prefetch puts them, stay as they are); `host` stays on the host."""
        pin = non_blocking and torch.device(device).type == "cuda"
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in moved.items():
            if isinstance(value, torch.Tensor):
                host = pin and value.device.type == "cpu"
                moved[name] = (value.pin_memory() if host else value).to(device, non_blocking=non_blocking)
        return Batch(**moved)

    def __len__(self) -> int:
        return self.src.size(0)


@dataclass
class Counted:
    """Another DDP rank's batch, not collated: the counts a global batch's loss normaliser needs (the training
    loop sums n_tgt_tokens and n_align_rows over all k x world batches of a step and trains on its own k)."""
    n_tgt_tokens: int
    n_align_rows: int = 0

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Counted":
        return self  # nothing to move


def collate_rows(src: RaggedIds, tgt: RaggedIds, idx: np.ndarray, pad_id: int, bos_id: int,
                 eos_id: int) -> Batch:
    """Pad rows idx of flat id arrays into a Batch: tgt_in = bos + tgt, tgt_out = tgt + eos.

    Gathers straight from the (memory-mapped) arrays: no per-sentence Python lists.
    """
    idx = np.asarray(idx, dtype=np.int64)                                                    # (B,)
    src_lengths = src.starts_lengths(idx)[1]                                                 # (B,)
    tgt_lengths = tgt.starts_lengths(idx)[1]                                                 # (B,)
    return Batch(
        src=torch.from_numpy(src.padded(idx, pad_id)),                                       # (B, S)
        src_lengths=torch.from_numpy(src_lengths),                                           # (B,)
        tgt_in=torch.from_numpy(tgt.padded(idx, pad_id, prefix=bos_id)),                     # (B, T)
        tgt_out=torch.from_numpy(tgt.padded(idx, pad_id, suffix=eos_id)),                    # (B, T)
        indices=torch.from_numpy(idx.copy()),                                                # (B,)
        n_tgt_tokens=int(tgt_lengths.sum()) + len(idx),
        host=HostLengths(torch.from_numpy(src_lengths), bool(len(idx)) and src_lengths.min() < src_lengths.max()),
    )


def with_alignment(batch: Batch, links: list[np.ndarray]) -> Batch:
    """The batch with its alignment targets (B, T, S) built from the rows' piece links (L, 2)."""
    align = alignment_targets(links, batch.tgt_out.size(1), batch.src.size(1))  # (B, T, S)
    batch.align, batch.n_align_rows = align, linked_row_count(links)
    return batch


def collate(src: list[list[int]], tgt: list[list[int]], indices: list[int],
            pad_id: int, bos_id: int, eos_id: int) -> Batch:
    """Pad id lists (without bos/eos) into a Batch: tgt_in = bos + tgt, tgt_out = tgt + eos.

    Source rows are used as given (an empty source row gives length 0; callers that
    may have one, like translation of empty lines, substitute [eos_id]).
    """
    if not (len(src) == len(tgt) == len(indices)):
        raise ValueError(f"collate: {len(src)} sources, {len(tgt)} targets, {len(indices)} indices")
    batch = collate_rows(RaggedIds.from_lists(src), RaggedIds.from_lists(tgt), np.arange(len(src)),
                         pad_id, bos_id, eos_id)
    batch.indices = torch.tensor(list(indices), dtype=torch.long)                            # (B,)
    return batch


def pack(sizes: np.ndarray, max_tokens: int) -> np.ndarray:
    """Greedily cut sizes (in batch order) into consecutive batches with max(size) * n <= max_tokens.

    Returns batch boundaries (n_batches + 1,): batch j is positions bounds[j]:bounds[j+1]. A single
    pair larger than max_tokens becomes a batch of its own. Exact same cut as adding pairs one by
    one: the running max of a batch only grows, so "over budget" is monotone in the batch end
    and each batch's end is the first over-budget position in a window of at most
    max_tokens // sizes[start] + 1 pairs (one NumPy pass per batch, not per pair).
    """
    n, bounds, start = len(sizes), [0], 0
    while start < n:
        w = min(n - start, max_tokens // int(sizes[start]) + 1)
        widths = np.maximum.accumulate(sizes[start:start + w]) * np.arange(1, w + 1)          # (w,)
        over = np.flatnonzero(widths[1:] > max_tokens)
        start += int(over[0]) + 1 if len(over) else w
        bounds.append(start)
    return np.asarray(bounds, dtype=np.int64)


class EpochPlan:
    """The batches of one epoch as arrays: order (N,) rows, bounds (n_batches + 1,), batch_order (n_batches,)."""

    def __init__(self, order: np.ndarray, bounds: np.ndarray, batch_order: np.ndarray):
        self.order, self.bounds, self.batch_order = order, bounds, batch_order

    def __len__(self) -> int:
        return len(self.batch_order)

    def __getitem__(self, j: int) -> np.ndarray:
        """Row indices of the j-th batch in yield order, (B,) int64."""
        b = int(self.batch_order[j])
        return self.order[self.bounds[b]:self.bounds[b + 1]]

    def tolist(self) -> list[list[int]]:
        return [self[j].tolist() for j in range(len(self))]


class TokenBatchSampler(Sampler):
    """Yields row-index arrays (B,) int64 whose padded size max(len) * n stays within max_tokens.

    len of a pair = max(src_len, tgt_len + 1) (the target gains bos/eos). With shuffle, each
    epoch shuffles the indices, sorts them by length within chunks of about CHUNK_BATCHES
    batches (bucketing), packs batches and shuffles the batch order; everything is a
    function of (seed, epoch) only. Without shuffle, batches are packed over the
    length-sorted data and come in that order (same every epoch). A pair longer than
    max_tokens (data.max_tokens / trainer.max_tokens) gets a batch of its own. An epoch is
    held as three integer arrays (EpochPlan), never as per-sentence Python lists.

    Resuming: ``state_dict()`` = {"epoch", "position"}: position counts batches already yielded
    in this epoch; a sampler given it by ``load_state_dict`` yields exactly the remaining
    batches. Finishing an epoch advances to the next one (position 0); ``set_epoch(e)`` with
    the current epoch keeps the position, so calling it after a resume is safe.
    """

    def __init__(self, src_lengths: np.ndarray, tgt_lengths: np.ndarray, max_tokens: int, shuffle: bool,
                 seed: int):
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
        self._cache: tuple[int, EpochPlan] | None = None
        n_big = int((self.sizes > max_tokens).sum())
        if n_big:
            log.warning("%d pair(s) are longer than max_tokens=%d and get a batch each; "
                        "raise max_tokens or lower data.max_len", n_big, max_tokens)

    def _order(self, rng: np.random.Generator) -> np.ndarray:
        """Row order before packing (N,): shuffled, then sorted by length inside chunks."""
        n = len(self.sizes)
        if not self.shuffle:
            return np.argsort(self.sizes, kind="stable")
        per_batch = max(1, self.max_tokens // max(1, int(self.sizes.mean()) if n else 1))
        chunk = max(1, per_batch * CHUNK_BATCHES)
        perm = rng.permutation(n)                                                            # (N,)
        parts = [perm[s:s + chunk] for s in range(0, n, chunk)]
        return np.concatenate([p[np.argsort(self.sizes[p], kind="stable")] for p in parts]) if parts else perm

    def batches(self, epoch: int) -> EpochPlan:
        """All batches of an epoch, in yield order (deterministic in seed and epoch)."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed % 2**63, epoch])
        order = self._order(rng)
        bounds = pack(self.sizes[order], self.max_tokens)
        n_batches = len(bounds) - 1
        batch_order = rng.permutation(n_batches) if self.shuffle else np.arange(n_batches)
        self._cache = (epoch, EpochPlan(order, bounds, batch_order))
        return self._cache[1]

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

    def __init__(self, src_ids: RaggedIds, tgt_ids: RaggedIds, sampler: TokenBatchSampler,
                 pad_id: int, bos_id: int, eos_id: int, links: list[np.ndarray] | None = None):
        if len(src_ids) != len(tgt_ids):
            raise ValueError(f"{len(src_ids)} source rows but {len(tgt_ids)} target rows")
        if links is not None and len(links) != len(src_ids):
            raise ValueError(f"{len(links)} alignment rows but {len(src_ids)} sentence pairs")
        self.src_ids, self.tgt_ids = src_ids, tgt_ids
        self.links = links  # piece links (L, 2) of every row (nmt.alignment.supervision), or None
        self.sampler = sampler
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.rank, self.world, self.accum = 0, 1, 1  # sharded(): this rank collates only its own batches

    def sharded(self, rank: int, world: int, accum_steps: int) -> "BatchIterator":
        """This iterator (same sampler) for DDP rank `rank` of `world`: of every global batch (accum_steps x
        world consecutive batches from the epoch's start; rank r trains on the r-th accum_steps of them) it
        collates only its own and yields Counted for the others, so the batch sequence is unchanged."""
        if not 0 <= rank < world or accum_steps < 1:
            raise ValueError(f"rank {rank} of world {world} with accum_steps {accum_steps}: need 0 <= rank < world "
                             "and trainer.accum_steps >= 1")
        shard = BatchIterator(self.src_ids, self.tgt_ids, self.sampler, self.pad_id, self.bos_id, self.eos_id,
                              self.links)
        shard.rank, shard.world, shard.accum = rank, world, accum_steps
        return shard

    def __iter__(self) -> Iterator[Batch | Counted]:
        group = self.accum * self.world
        for idx in self.sampler:
            slot = (self.sampler.position - 1) % group  # this batch's place in its global batch
            links = None if self.links is None else [self.links[i] for i in idx]
            if slot // self.accum != self.rank:  # another rank's: counted, not collated
                tokens = int(self.tgt_ids.starts_lengths(idx)[1].sum()) + len(idx)
                yield Counted(tokens, 0 if links is None else linked_row_count(links))
                continue
            batch = collate_rows(self.src_ids, self.tgt_ids, idx, self.pad_id, self.bos_id, self.eos_id)
            yield batch if links is None else with_alignment(batch, links)

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
