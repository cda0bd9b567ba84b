"""From a corpus to id datasets and batches: load splits, tokenizers, cached id mapping, length filter.

    corpus.load(split) -> (src, tgt) text
      -> train_tokenizers on train (cached by content hash)
      -> src_ids, tgt_ids via datasets.map (Arrow cache keyed by split content + tokenizers)
      -> train pairs longer than max_len dropped (valid/test never filtered)
      -> make_batches: TokenBatchSampler + collate
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import datasets
import numpy as np
import pyarrow.compute as pc

from nmt.common import file_sha256
from nmt.data.batching import BatchIterator, TokenBatchSampler
from nmt.data.corpus import column
from nmt.data.tokenizer import SubwordTokenizer, train_tokenizers

log = logging.getLogger(__name__)

SPLIT_KEYS = ("train", "valid", "test")
CACHE_VERSION = "1"  # bump when the id mapping changes meaning


class Corpus(Protocol):
    def load(self, split: str) -> datasets.Dataset: ...


@dataclass
class DataBundle:
    """Tokenised splits (columns src, tgt, src_ids, tgt_ids), the tokenizers, and filter counts."""

    train: datasets.Dataset
    valid: datasets.Dataset
    test: datasets.Dataset
    src_tok: SubwordTokenizer
    tgt_tok: SubwordTokenizer
    dropped: dict[str, int] = field(default_factory=dict)


def _text_digest(ds: datasets.Dataset) -> str:
    """sha256 of a split's src/tgt text (the cache key of its id mapping)."""
    h = hashlib.sha256()
    for name in ("src", "tgt"):
        h.update(name.encode())
        for line in column(ds, name):
            h.update(line.encode("utf-8"))
            h.update(b"\n")
    return h.hexdigest()


def encode_split(ds: datasets.Dataset, src_tok: SubwordTokenizer, tgt_tok: SubwordTokenizer,
                 cache_dir: Path, name: str) -> datasets.Dataset:
    """Add src_ids, tgt_ids columns with datasets.map, cached as Arrow under cache_dir.

    The cache file is keyed by the split's text and both tokenizer models, so a second
    run (or another run with the same data) reuses it without re-encoding.
    """
    key = hashlib.sha256("|".join([CACHE_VERSION, _text_digest(ds), file_sha256(src_tok.model_path),
                                   file_sha256(tgt_tok.model_path)]).encode()).hexdigest()[:16]
    cache_dir.mkdir(parents=True, exist_ok=True)

    def to_ids(rows: dict) -> dict:
        return {"src_ids": src_tok.encode(rows["src"]), "tgt_ids": tgt_tok.encode(rows["tgt"])}

    features = ds.features.copy()
    features["src_ids"] = datasets.Sequence(datasets.Value("int32"))
    features["tgt_ids"] = datasets.Sequence(datasets.Value("int32"))
    return ds.map(to_ids, batched=True, batch_size=10_000, features=features,
                  cache_file_name=str(cache_dir / f"{name}-{key}.arrow"), load_from_cache_file=True,
                  new_fingerprint=key, desc=f"encoding {name}")


def filter_long(ds: datasets.Dataset, max_len: int) -> tuple[datasets.Dataset, int]:
    """Keep pairs whose src and tgt have at most max_len subword tokens; return (kept, n dropped).

    Lengths come straight from Arrow; the result is a cheap index view (``select``) of ds.
    """
    table = ds.with_format("arrow")
    src_len = pc.list_value_length(table["src_ids"]).to_numpy(zero_copy_only=False)  # (N,)
    tgt_len = pc.list_value_length(table["tgt_ids"]).to_numpy(zero_copy_only=False)  # (N,)
    keep = np.flatnonzero((src_len <= max_len) & (tgt_len <= max_len))
    if len(keep) == len(ds):
        return ds, 0
    return ds.select(keep), len(ds) - len(keep)


def prepare_data(corpus: Corpus, splits: dict[str, str], tokenizer: dict, max_len: int,
                 cache_dir: str) -> DataBundle:
    """Load train/valid/test, train or load tokenizers on train, map to ids, filter long train pairs.

    Args:
        corpus: anything with ``load(split) -> Dataset`` (columns src, tgt).
        splits: {"train": ..., "valid": ..., "test": ...} -> the corpus's split names.
        tokenizer: train_tokenizers settings: model_type, vocab_size, joint, character_coverage
            (optionally num_threads).
        max_len: training pairs with more subword tokens on either side are dropped.
        cache_dir: tokenizers under <cache_dir>/tokenizers, Arrow id caches under <cache_dir>/ids.
    """
    missing = [k for k in SPLIT_KEYS if k not in splits]
    if missing:
        raise ValueError(f"data.splits lacks {missing}; it needs train, valid and test (corpus split names)")
    raw = {key: corpus.load(splits[key]) for key in SPLIT_KEYS}
    src_tok, tgt_tok = train_tokenizers(raw["train"], cache_dir=str(Path(cache_dir) / "tokenizers"), **tokenizer)
    id_cache = Path(cache_dir) / "ids"
    encoded = {key: encode_split(raw[key], src_tok, tgt_tok, id_cache, key) for key in SPLIT_KEYS}
    train, n_dropped = filter_long(encoded["train"], max_len)
    log.info("dropped %d of %d training pairs longer than max_len=%d", n_dropped, len(encoded["train"]), max_len)
    if len(train) == 0:
        raise ValueError(f"every training pair is longer than max_len={max_len} subword tokens; raise data.max_len")
    return DataBundle(train=train, valid=encoded["valid"], test=encoded["test"], src_tok=src_tok,
                      tgt_tok=tgt_tok, dropped={"train": n_dropped, "valid": 0, "test": 0})


def make_batches(ds: datasets.Dataset, max_tokens: int, shuffle: bool, seed: int,
                 pad_id: int, bos_id: int, eos_id: int) -> BatchIterator:
    """Token-bucketed Batch iterator over a tokenised split (id columns read into lists once)."""
    src_ids, tgt_ids = column(ds, "src_ids"), column(ds, "tgt_ids")
    sampler = TokenBatchSampler([len(s) for s in src_ids], [len(t) for t in tgt_ids], max_tokens, shuffle, seed)
    return BatchIterator(src_ids, tgt_ids, sampler, pad_id, bos_id, eos_id)
