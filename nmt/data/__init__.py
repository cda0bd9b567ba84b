"""Data: corpora (datasets.Dataset with src, tgt), sentencepiece tokenizers, token-bucketed batches.

    corpus.load(split) -> prepare_data (tokenizers + cached ids) -> make_batches -> Batch
"""
from nmt.data.batching import Batch, BatchIterator, TokenBatchSampler, collate
from nmt.data.corpus import (Corpus, CorpusError, Fingerprinted, HubCorpus, JsonlCorpus, Multi30k, Streaming,
                             StreamingCorpus, TextDirCorpus, ToyCorpus, TsvCorpus)
from nmt.data.pipeline import DataBundle, make_batches, prepare_data
from nmt.data.tokenizer import SubwordTokenizer, train_tokenizers

__all__ = [
    "Batch", "BatchIterator", "TokenBatchSampler", "collate",
    "Corpus", "Fingerprinted", "Streaming", "StreamingCorpus",
    "CorpusError", "HubCorpus", "JsonlCorpus", "Multi30k", "TextDirCorpus", "ToyCorpus", "TsvCorpus",
    "DataBundle", "make_batches", "prepare_data",
    "SubwordTokenizer", "train_tokenizers",
]
