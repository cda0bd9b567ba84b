"""Flat, memory-mapped token-id storage: one values array plus offsets per side (fairseq/Marian style).

A split's ids live on disk in ``<cache>/ids/<split>-<key>/``:

    src.ids.bin / tgt.ids.bin          (n_tokens,)  uint16 (vocab <= 65536) or int32, raw
    src.offsets.npy / tgt.offsets.npy  (N + 1,)     int64: row i is values[offsets[i]:offsets[i+1]]
    text.json                          raw src/tgt strings (valid/test only: sacreBLEU references)
    meta.json                          dtype, counts; written last

Every process (every DDP rank) maps the same files read-only, so the operating system shares
their pages: ids cost no Python objects and no per-rank copies. A build writes into a temporary
directory beside the final one and renames it at the end: a crash or a bad corpus line leaves
no directory under the final name, and a later run rebuilds instead of reading half a cache.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path

import numpy as np

from nmt.common import write_json

SIDES = ("src", "tgt")


class RaggedIds:
    """Variable-length id rows over flat arrays: values (n_tokens,), offsets (N_all + 1,), rows (N,) or None.

    ``rows`` selects (and orders) the visible rows, e.g. the training pairs left after the length
    filter; ``ids[i]`` is a list of ints, ``ids[a:b]`` a list of such lists (as a list-of-lists
    column would give), ``ids.lengths()`` an int64 array.
    """

    def __init__(self, values: np.ndarray, offsets: np.ndarray, rows: np.ndarray | None = None):
        self.values, self.offsets, self.rows = values, offsets, rows

    @classmethod
    def from_lists(cls, rows: Iterable[Iterable[int]]) -> "RaggedIds":
        """Pack Python id lists (decoding batches, tests) into flat int64 arrays."""
        rows = [list(r) for r in rows]
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))             # (N,)
        values = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
        return cls(values, np.concatenate([[0], np.cumsum(lengths)]))

    def __len__(self) -> int:
        return len(self.offsets) - 1 if self.rows is None else len(self.rows)

    def _row(self, i: int) -> int:
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} out of range for {len(self)} rows")
        i = i % len(self)
        return i if self.rows is None else int(self.rows[i])

    def __getitem__(self, key):
        if isinstance(key, slice):
            return [self[i] for i in range(*key.indices(len(self)))]
        r = self._row(int(key))
        return self.values[self.offsets[r]:self.offsets[r + 1]].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        return (self[i] for i in range(len(self)))

    def starts_lengths(self, idx: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(start offset, length) of the given visible rows (all when idx is None), each (B,) int64."""
        rows = np.arange(len(self)) if idx is None else np.asarray(idx, dtype=np.int64)
        if self.rows is not None:
            rows = self.rows[rows]
        starts = np.asarray(self.offsets[rows], dtype=np.int64)                              # (B,)
        return starts, np.asarray(self.offsets[rows + 1], dtype=np.int64) - starts

    def lengths(self) -> np.ndarray:
        """Length of every visible row, (N,) int64."""
        return self.starts_lengths()[1]

    def select(self, keep: np.ndarray) -> "RaggedIds":
        """A view of the visible rows keep (indices into this view)."""
        keep = np.asarray(keep, dtype=np.int64)
        return RaggedIds(self.values, self.offsets, keep if self.rows is None else self.rows[keep])

    def padded(self, idx: np.ndarray, pad_id: int, prefix: int | None = None, suffix: int | None = None,
               ) -> np.ndarray:
        """Rows idx right-padded into a (B, W) int64 array, optionally with a token before/after each row.

        W = max(length) + (prefix given) + (suffix given); gathers straight from the flat values.
        """
        starts, lens = self.starts_lengths(idx)                                              # (B,), (B,)
        head = int(prefix is not None)
        width = int(lens.max(initial=0)) + head + int(suffix is not None)
        out = np.full((len(lens), width), pad_id, dtype=np.int64)                            # (B, W)
        cols = np.arange(width - head)                                                       # (W',)
        inside = cols[None, :] < lens[:, None]                                               # (B, W')
        body = out[:, head:]                                                                 # (B, W') view
        body[inside] = self.values[(starts[:, None] + cols[None, :])[inside]]
        if prefix is not None:
            out[:, 0] = prefix
        if suffix is not None:
            out[np.arange(len(lens)), lens + head] = suffix
        return out


class IdSplit:
    """A tokenised split on flat arrays: ``split["src_ids"]``, ``split["tgt_ids"]`` (RaggedIds) and,
    when kept, ``split["src"]``, ``split["tgt"]`` (raw strings, for sacreBLEU references)."""

    def __init__(self, src_ids: RaggedIds, tgt_ids: RaggedIds, text: dict[str, list[str]] | None,
                 directory: Path | None = None):
        if len(src_ids) != len(tgt_ids):
            raise ValueError(f"{len(src_ids)} source rows but {len(tgt_ids)} target rows")
        self.columns = {"src_ids": src_ids, "tgt_ids": tgt_ids, **(text or {})}
        self.directory = directory

    @property
    def column_names(self) -> list[str]:
        return list(self.columns)

    def __len__(self) -> int:
        return len(self.columns["src_ids"])

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self.columns:
                raise KeyError(f"column {key!r} not kept for this split (columns: {self.column_names})")
            return self.columns[key]
        return {name: col[key] for name, col in self.columns.items()}

    def select(self, keep: np.ndarray) -> "IdSplit":
        """The rows keep (int indices), as a view over the same arrays."""
        text = {k: [v[i] for i in keep] for k, v in self.columns.items() if k in SIDES}
        return IdSplit(self["src_ids"].select(keep), self["tgt_ids"].select(keep), text or None, self.directory)


# --------------------------------------------------------------------------- on disk


def open_split(directory: Path) -> IdSplit:
    """Memory-map a finished cache directory (read-only)."""
    meta = json.loads((directory / "meta.json").read_text())
    sides = {}
    for side in SIDES:
        offsets = np.load(directory / f"{side}.offsets.npy", mmap_mode="r")                  # (N + 1,)
        n_tokens = int(offsets[-1])
        values = (np.memmap(directory / f"{side}.ids.bin", dtype=meta["dtype"], mode="r", shape=(n_tokens,))
                  if n_tokens else np.zeros(0, dtype=meta["dtype"]))
        sides[side] = RaggedIds(values, offsets)
    text_path = directory / "text.json"
    text = json.loads(text_path.read_text()) if text_path.is_file() else None
    return IdSplit(sides["src"], sides["tgt"], text, directory)


def id_dtype(vocab_size: int) -> np.dtype:
    """The narrowest id type for a vocabulary: uint16 up to 65,536 pieces, else int32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.int32)


class SplitWriter:
    """Streams encoded chunks into a temporary directory; ``finish`` renames it to the final name.

    Use as a context manager: leaving it by an exception deletes the temporary directory.
    """

    def __init__(self, final: Path, dtype: np.dtype, keep_text: bool):
        self.final, self.dtype, self.keep_text = final, np.dtype(dtype), keep_text
        final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = final.parent / f".{final.name}.{secrets.token_hex(4)}.tmp"
        self.tmp.mkdir(mode=0o777)  # the umask decides the mode (mkdtemp would give 0700)
        self.files = {side: open(self.tmp / f"{side}.ids.bin", "wb") for side in SIDES}
        self.lengths: dict[str, list[np.ndarray]] = {side: [] for side in SIDES}
        self.text: dict[str, list[str]] = {side: [] for side in SIDES}

    def __enter__(self) -> "SplitWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for f in self.files.values():
            f.close()
        if self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)

    def add(self, ids: dict[str, list[list[int]]], text: dict[str, list[str]]) -> None:
        """Append one chunk: ids[side] is a list of id lists; text[side] the raw lines (kept if asked)."""
        for side in SIDES:
            rows = ids[side]
            lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))            # (n,)
            flat = np.fromiter(chain.from_iterable(rows), dtype=self.dtype, count=int(lengths.sum()))
            self.files[side].write(flat.tobytes())
            self.lengths[side].append(lengths)
            if self.keep_text:
                self.text[side].extend(text[side])

    def finish(self) -> Path:
        """Write offsets, text and meta, fsync, and rename the directory into place."""
        counts = {}
        for side in SIDES:
            self.files[side].flush()
            os.fsync(self.files[side].fileno())
            self.files[side].close()
            lengths = np.concatenate(self.lengths[side]) if self.lengths[side] else np.zeros(0, np.int64)
            np.save(self.tmp / f"{side}.offsets.npy", np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
            counts[side] = int(lengths.sum())
        if self.keep_text:
            write_json(self.tmp / "text.json", self.text)
        pairs = int(sum(map(len, self.lengths["src"])))
        write_json(self.tmp / "meta.json", {"dtype": self.dtype.name, "pairs": pairs, "tokens": counts})
        try:
            os.rename(self.tmp, self.final)
        except OSError:
            if not (self.final / "meta.json").is_file():  # another process finished the same cache first
                raise
        return self.final
