"""From a corpus to flat id caches and batches: content hash, tokenizers, streamed encoding, length filter.

    corpus.stream(split) -> (src, tgt) text chunks (never the whole corpus as Python strings)
      -> fingerprint: content hash of the split (file bytes, streamed; see docs/data_at_scale.md)
      -> train_tokenizers on a bounded sample of train (cached by fingerprint + settings)
      -> flat id arrays, memory-mapped (idstore; cached by fingerprint + tokenizer models)
      -> train pairs longer than max_len dropped, and with train_max_tgt_len those whose target is longer
         (valid/test never filtered; the filters index the cached ids, so they never enter a cache key)
      -> make_batches: TokenBatchSampler + collate_rows over the arrays
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nmt.common import file_sha256
from nmt.data.batching import BatchIterator, TokenBatchSampler
from nmt.data.corpus import Corpus, fingerprint, stream_pairs
from nmt.data.idstore import IdSplit, SplitWriter, id_dtype, open_split
from nmt.data.tokenizer import SubwordTokenizer, sample_pairs, train_tokenizers

log = logging.getLogger(__name__)

SPLIT_KEYS = ("train", "valid", "test")
CACHE_VERSION = "2"  # bump when the id cache changes meaning or layout
# Pairs per sentencepiece encode call: bounds the Python strings and id lists alive at once,
# and is large enough for sentencepiece's own threads to share the work.
ENCODE_CHUNK = 20_000


@dataclass
class DataBundle:
    """Tokenised splits (IdSplit: src_ids, tgt_ids; valid/test also raw src, tgt), tokenizers, filter counts."""

    train: IdSplit
    valid: IdSplit
    test: IdSplit
    src_tok: SubwordTokenizer
    tgt_tok: SubwordTokenizer
    dropped: dict[str, int] = field(default_factory=dict)
    train_rows: np.ndarray | None = None  # (N_kept,) train rows kept by the length filters; None = all
    train_links: list[np.ndarray] | None = None  # piece links (L, 2) of every kept train row (data.alignment)


def cache_key(text_key: str, src_tok: SubwordTokenizer, tgt_tok: SubwordTokenizer, keep_text: bool) -> str:
    """Key of a split's id cache: its content hash and both tokenizer models."""
    parts = [CACHE_VERSION, text_key, file_sha256(src_tok.model_path), file_sha256(tgt_tok.model_path),
             str(keep_text)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def encode_split(corpus: Corpus, split: str, text_key: str, src_tok: SubwordTokenizer, tgt_tok: SubwordTokenizer,
                 cache_dir: Path, name: str, keep_text: bool) -> IdSplit:
    """Memory-map the split's id cache, building it first (streamed, chunk by chunk) if absent.

    The cache is ``<cache_dir>/<name>-<key>/``, built in a temporary directory and renamed
    into place at the end (idstore.SplitWriter): a bad corpus line or a crash leaves no cache.
    """
    final = cache_dir / f"{name}-{cache_key(text_key, src_tok, tgt_tok, keep_text)}"
    if (final / "meta.json").is_file():
        log.info("using cached ids %s", final)
        return open_split(final)
    log.info("encoding %s into %s", name, final)
    dtype = id_dtype(max(len(src_tok), len(tgt_tok)))
    with SplitWriter(final, dtype, keep_text) as writer:
        for src, tgt in stream_pairs(corpus, split, ENCODE_CHUNK):
            writer.add({"src": src_tok.encode(src), "tgt": tgt_tok.encode(tgt)}, {"src": src, "tgt": tgt})
        writer.finish()
    return open_split(final)


def check_length_filters(max_len: object, train_max_tgt_len: object) -> None:
    """data.max_len must be an int >= 1; data.train_max_tgt_len null (off) or an int >= 1."""
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"data.max_len must be an integer >= 1 (subword tokens), got {max_len!r}")
    if train_max_tgt_len is not None and (isinstance(train_max_tgt_len, bool) or not isinstance(train_max_tgt_len, int)
                                          or train_max_tgt_len < 1):
        raise ValueError(f"data.train_max_tgt_len must be null (keep every target) or an integer >= 1 (the longest "
                         f"training target kept, in subword tokens), got {train_max_tgt_len!r}")


def filter_long(ds: IdSplit, max_len: int, max_tgt_len: int | None = None) -> tuple[IdSplit, int]:
    """Keep pairs whose src and tgt have at most max_len subword tokens, and whose tgt has at most max_tgt_len
    (None: no target limit); return (kept, n dropped).

    Lengths come from the offsets arrays; the result is an index view of ds.
    """
    keep = kept_rows(ds, max_len, max_tgt_len)
    if len(keep) == len(ds):
        return ds, 0
    return ds.select(keep), len(ds) - len(keep)


def kept_rows(ds: IdSplit, max_len: int, max_tgt_len: int | None = None) -> np.ndarray:
    """(N_kept,) int64: the rows of ds whose src and tgt have at most max_len subword tokens and whose tgt has at
    most max_tgt_len (None: max_len alone)."""
    src_len, tgt_len = ds["src_ids"].lengths(), ds["tgt_ids"].lengths()                     # (N,), (N,)
    tgt_limit = max_len if max_tgt_len is None else min(max_len, max_tgt_len)
    return np.flatnonzero((src_len <= max_len) & (tgt_len <= tgt_limit))


def prepare_data(corpus: Corpus, splits: dict[str, str], tokenizer: dict, max_len: int,
                 cache_dir: str, *, train_max_tgt_len: int | None = None) -> DataBundle:
    """Hash the splits, train or load tokenizers on train, build or map the id caches, filter long train pairs.

    Args:
        corpus: a ``Corpus``: ``load(split) -> Dataset`` (columns src, tgt); corpora that are also
            ``Streaming`` and ``Fingerprinted`` (every file and hub corpus) are never held in memory whole.
        splits: {"train": ..., "valid": ..., "test": ...} -> the corpus's split names.
        tokenizer: train_tokenizers settings: model_type, vocab_size, joint, character_coverage,
            input_sentence_size, shuffle_input_sentence, num_threads.
        max_len: training pairs with more subword tokens on either side are dropped.
        cache_dir: tokenizers under <cache_dir>/tokenizers, id caches under <cache_dir>/ids.
        train_max_tgt_len: data.train_max_tgt_len: training pairs whose target has more subword tokens are
            dropped too (length generalisation: train on short targets, test on all); None = off.
    """
    check_length_filters(max_len, train_max_tgt_len)
    missing = [k for k in SPLIT_KEYS if k not in splits]
    if missing:
        raise ValueError(f"data.splits lacks {missing}; it needs train, valid and test (corpus split names)")
    keys = {key: fingerprint(corpus, splits[key]) for key in SPLIT_KEYS}
    seed = int(keys["train"][:15], 16)  # the tokenizer sample is a function of the content

    def sample(n_pairs: int) -> tuple[list[str], list[str]]:
        return sample_pairs(stream_pairs(corpus, splits["train"], ENCODE_CHUNK), n_pairs, seed)

    src_tok, tgt_tok = train_tokenizers(sample, keys["train"], str(Path(cache_dir) / "tokenizers"), **tokenizer)
    id_cache = Path(cache_dir) / "ids"
    encoded = {key: encode_split(corpus, splits[key], keys[key], src_tok, tgt_tok, id_cache, key,
                                 keep_text=key != "train") for key in SPLIT_KEYS}
    train, n_dropped = filter_long(encoded["train"], max_len, train_max_tgt_len)
    tgt_rule = "" if train_max_tgt_len is None else \
        f" or with targets longer than train_max_tgt_len={train_max_tgt_len}"
    log.info("dropped %d of %d training pairs longer than max_len=%d%s", n_dropped, len(encoded["train"]), max_len,
             tgt_rule)
    if len(train) == 0:
        raise ValueError(f"every training pair is longer than max_len={max_len} subword tokens{tgt_rule}; raise "
                         "data.max_len" + ("" if train_max_tgt_len is None else " or data.train_max_tgt_len"))
    return DataBundle(train=train, valid=encoded["valid"], test=encoded["test"], src_tok=src_tok,
                      tgt_tok=tgt_tok, dropped={"train": n_dropped, "valid": 0, "test": 0},
                      train_rows=kept_rows(encoded["train"], max_len, train_max_tgt_len) if n_dropped else None)


def make_batches(ds: IdSplit, max_tokens: int, shuffle: bool, seed: int,
                 pad_id: int, bos_id: int, eos_id: int, links: list[np.ndarray] | None = None) -> BatchIterator:
    """Token-bucketed Batch iterator over a tokenised split (lengths from offsets, rows gathered per batch);
    with links (the piece links (L, 2) of every row of ds) its batches carry Batch.align."""
    src_ids, tgt_ids = ds["src_ids"], ds["tgt_ids"]
    sampler = TokenBatchSampler(src_ids.lengths(), tgt_ids.lengths(), max_tokens, shuffle, seed)
    return BatchIterator(src_ids, tgt_ids, sampler, pad_id, bos_id, eos_id, links)
