"""The flat (mmap) batching equals the pre-#13 Python-list implementation, kept here as a reference.

``reference_batches`` and ``reference_collate`` are verbatim in behaviour to nmt/data/batching.py
before issue #13 (per-sentence Python lists); the library must keep yielding the same batches,
in the same order, with the same tensors, for the same seed, epoch and max_tokens.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from nmt.data.batching import TokenBatchSampler
from nmt.data.corpus import Multi30k
from nmt.data.pipeline import make_batches, prepare_data

PAD, BOS, EOS = 0, 2, 3
REF_CHUNK_BATCHES = 100


def reference_batches(src_len: list[int], tgt_len: list[int], max_tokens: int, shuffle: bool, seed: int,
                      epoch: int) -> list[list[int]]:
    """Today's TokenBatchSampler.batches(epoch), on Python lists."""
    sizes = np.maximum(np.asarray(src_len, dtype=np.int64), np.asarray(tgt_len, dtype=np.int64) + 1)
    rng = np.random.default_rng([seed % 2**63, epoch])
    n = len(sizes)
    if not shuffle:
        order = np.argsort(sizes, kind="stable")
    else:
        per_batch = max(1, max_tokens // max(1, int(sizes.mean()) if n else 1))
        chunk = max(1, per_batch * REF_CHUNK_BATCHES)
        perm = rng.permutation(n)
        parts = [perm[s:s + chunk] for s in range(0, n, chunk)]
        order = np.concatenate([p[np.argsort(sizes[p], kind="stable")] for p in parts])
    batches, current, widest = [], [], 0
    for i in order:
        size = int(sizes[i])
        if current and max(widest, size) * (len(current) + 1) > max_tokens:
            batches.append(current)
            current, widest = [], 0
        current.append(int(i))
        widest = max(widest, size)
    if current:
        batches.append(current)
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def reference_collate(src: list[list[int]], tgt: list[list[int]]) -> dict[str, list[list[int]]]:
    """Today's collate: right-padded rows as nested lists."""
    def pad(rows):
        width = max(len(r) for r in rows)
        return [r + [PAD] * (width - len(r)) for r in rows]
    return {"src": pad(src), "tgt_in": pad([[BOS] + t for t in tgt]), "tgt_out": pad([t + [EOS] for t in tgt])}


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("max_tokens", [7, 60, 400, 5000])
def test_sampler_batches_equal_the_reference(shuffle, max_tokens):
    rng = random.Random(max_tokens)
    src = [rng.randint(1, 50) for _ in range(3000)]
    tgt = [rng.randint(0, 50) for _ in range(3000)]
    sampler = TokenBatchSampler(np.asarray(src), np.asarray(tgt), max_tokens, shuffle, seed=11)
    for epoch in (0, 1, 5):
        sampler.set_epoch(epoch)
        got = [b.tolist() for b in sampler]
        assert got == reference_batches(src, tgt, max_tokens, shuffle, 11, epoch), epoch


@pytest.fixture(scope="module")
def multi30k_data(multi30k_root, tmp_path_factory):
    corpus = Multi30k(str(multi30k_root), "de", "en", download=False)
    tokenizer = {"model_type": "unigram", "vocab_size": 8000, "joint": True, "character_coverage": 1.0,
                 "input_sentence_size": 2_000_000, "shuffle_input_sentence": True, "num_threads": 2}
    splits = {"train": "train", "valid": "val", "test": "test_2016_flickr"}
    data = prepare_data(corpus, splits, tokenizer, 100, str(tmp_path_factory.mktemp("cache")))
    return corpus, data


def test_multi30k_ids_from_the_cache_equal_direct_encoding(multi30k_data):
    corpus, data = multi30k_data
    raw = corpus.load("train")
    src_ids, tgt_ids = data.src_tok.encode(raw["src"]), data.tgt_tok.encode(raw["tgt"])
    keep = [i for i in range(len(raw)) if len(src_ids[i]) <= 100 and len(tgt_ids[i]) <= 100]
    assert data.dropped["train"] == len(raw) - len(keep) and len(data.train) == len(keep)
    assert data.train["src_ids"][:] == [src_ids[i] for i in keep]
    assert data.train["tgt_ids"][:] == [tgt_ids[i] for i in keep]
    valid = corpus.load("val")
    assert data.valid["src_ids"][:] == data.src_tok.encode(valid["src"]) and data.valid["tgt"] == valid["tgt"]


def test_multi30k_batches_equal_the_reference(multi30k_data):
    """Every batch of two epochs, tensors included, as today's list-based path built them."""
    _, data = multi30k_data
    src, tgt = data.train["src_ids"][:], data.train["tgt_ids"][:]
    batches = make_batches(data.train, 2000, True, 42, PAD, BOS, EOS)
    for epoch in (0, 1):
        batches.set_epoch(epoch)
        expected = reference_batches([len(s) for s in src], [len(t) for t in tgt], 2000, True, 42, epoch)
        got = list(batches)
        assert len(got) == len(expected)
        for batch, idx in zip(got, expected):
            ref = reference_collate([src[i] for i in idx], [tgt[i] for i in idx])
            assert batch.indices.tolist() == idx
            for name in ("src", "tgt_in", "tgt_out"):
                assert getattr(batch, name).dtype == torch.long and getattr(batch, name).tolist() == ref[name]
            assert batch.src_lengths.tolist() == [len(src[i]) for i in idx]
            assert batch.n_tgt_tokens == sum(len(tgt[i]) + 1 for i in idx)
