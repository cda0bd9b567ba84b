"""prepare_data / make_batches on small real slices and the toy corpus; the data configs load."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import datasets
import numpy as np
import pytest
from data_helpers import write_lines
from helpers import compose_cfg
from hydra.utils import instantiate
from omegaconf import OmegaConf

from nmt.data import tokenizer as tok_mod
from nmt.data import pipeline as pipeline_mod
from nmt.data.corpus import (Corpus, CorpusError, Fingerprinted, HubCorpus, Streaming, TextDirCorpus,
                             ToyCorpus)
from nmt.data.pipeline import DataBundle, make_batches, prepare_data
from nmt.data.tokenizer import SubwordTokenizer
from nmt.runs.config import RunConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "data"
SPLITS = {"train": "train", "valid": "valid", "test": "test"}
TOKENIZER = {"model_type": "unigram", "vocab_size": 1000, "joint": True, "character_coverage": 1.0,
             "input_sentence_size": 2_000_000, "shuffle_input_sentence": True, "num_threads": 1}
TOY_TOKENIZER = {**TOKENIZER, "vocab_size": 64}  # an upper bound: ~16 pieces for 10 toy words


def prepare_small(corpus_dir: Path, cache: Path, max_len: int = 12) -> DataBundle:
    return prepare_data(TextDirCorpus(str(corpus_dir), "de", "en"), SPLITS, TOKENIZER, max_len, str(cache))


def test_prepare_data_adds_ids_and_filters_only_train(small_text_dir, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="nmt.data.pipeline"):
        data = prepare_small(small_text_dir, tmp_path / "cache")
    n_dropped = data.dropped["train"]
    assert 0 < n_dropped < 300 and data.dropped["valid"] == data.dropped["test"] == 0
    assert f"dropped {n_dropped} of 300 training pairs longer than max_len=12" in caplog.text
    assert len(data.train) == 300 - n_dropped and len(data.valid) == 50 and len(data.test) == 50
    assert data.train.column_names == ["src_ids", "tgt_ids"]  # no training text kept in memory
    for ds in (data.valid, data.test):
        assert ds.column_names == ["src_ids", "tgt_ids", "src", "tgt"]  # references for sacreBLEU
    assert max(len(s) for s in data.train["src_ids"]) <= 12 and max(len(t) for t in data.train["tgt_ids"]) <= 12
    assert max(len(s) for s in data.valid["src_ids"]) > 12  # valid keeps its long sentences
    row = data.valid[7]
    assert row["src_ids"] == data.src_tok.encode([row["src"]])[0]
    assert row["tgt_ids"] == data.tgt_tok.encode([row["tgt"]])[0]
    assert isinstance(data.src_tok, SubwordTokenizer) and data.src_tok is data.tgt_tok


def test_train_max_tgt_len_drops_long_targets_from_train_only_on_the_same_cache(small_text_dir, tmp_path, caplog,
                                                                                 monkeypatch):
    """data.train_max_tgt_len: train pairs whose target has more pieces are dropped, counted against the train
    file's own lines encoded here; valid/test keep their long targets; the filter indexes the cached ids, so a
    second value reuses the same caches (no stale cache can hold the other filter's rows)."""
    cache = tmp_path / "cache"
    whole = prepare_small(small_text_dir, cache, max_len=1000)
    lines = (small_text_dir / "train.en").read_text(encoding="utf-8").splitlines()
    lengths = np.array([len(ids) for ids in whole.tgt_tok.encode(lines)])  # (300,) target pieces, by hand
    limit = int(np.median(lengths))
    caches = sorted(p.name for p in (cache / "ids").iterdir())
    monkeypatch.setattr(SubwordTokenizer, "encode", lambda *a, **k: pytest.fail("encoded again: a new cache key"))
    with caplog.at_level(logging.INFO, logger="nmt.data.pipeline"):
        short = prepare_data(TextDirCorpus(str(small_text_dir), "de", "en"), SPLITS, TOKENIZER, 1000, str(cache),
                             train_max_tgt_len=limit)
    kept = int((lengths <= limit).sum())
    assert whole.dropped["train"] == 0 and 0 < kept < 300
    assert len(short.train) == kept and short.dropped == {"train": 300 - kept, "valid": 0, "test": 0}
    assert short.train_rows.tolist() == np.flatnonzero(lengths <= limit).tolist()
    assert max(len(t) for t in short.train["tgt_ids"]) <= limit
    assert len(short.valid) == len(short.test) == 50 and max(len(t) for t in short.valid["tgt_ids"]) > limit
    assert f"dropped {300 - kept} of 300 training pairs longer than max_len=1000 or with targets longer than " \
           f"train_max_tgt_len={limit}" in caplog.text
    assert sorted(p.name for p in (cache / "ids").iterdir()) == caches


@pytest.mark.parametrize("bad", [0, -3, 2.5, "ten", True])
def test_a_bad_train_max_tgt_len_is_refused_before_any_file(bad, tmp_path):
    with pytest.raises(ValueError, match=r"train_max_tgt_len must be null \(keep every target\) or an integer >= 1"):
        prepare_data(ToyCorpus("copy", 10, 5, 1, 3, 0), SPLITS, TOY_TOKENIZER, 50, str(tmp_path / "cache"),
                     train_max_tgt_len=bad)
    assert not (tmp_path / "cache").exists()
    cfg = compose_cfg(["data=toy", "trainer=cpu", f"data.train_max_tgt_len={bad}"])
    with pytest.raises(ValueError, match="data.train_max_tgt_len must be null"):
        RunConfig(OmegaConf.to_container(cfg, resolve=True)).data  # what nmt-train reads first


def test_the_training_session_applies_train_max_tgt_len(tmp_path):
    """nmt-train's data loading (nmt.training.session.load_data) passes data.train_max_tgt_len on: toy words are
    two pieces each, 3..12 words, so a 7-piece limit keeps exactly the 3-word targets."""
    from nmt.training.session import load_data
    cfg = compose_cfg(["data=toy", "trainer=cpu", "data.corpus.size=200", "data.corpus.eval_size=20",
                       f"data.cache_dir={tmp_path}", "data.train_max_tgt_len=7"])
    data = load_data(RunConfig(OmegaConf.to_container(cfg, resolve=True)).data, supervised=False)
    words = [len(t.split()) for t in instantiate(cfg.data.corpus).load("train")["tgt"]]
    assert data.dropped["train"] == sum(n > 3 for n in words) and len(data.train) == words.count(3) > 0
    assert len(data.valid) == 20


def test_second_run_reuses_tokenizers_and_arrow_cache(small_text_dir, tmp_path, monkeypatch):
    first = prepare_small(small_text_dir, tmp_path / "cache")
    caches = sorted(p.name for p in (tmp_path / "cache" / "ids").iterdir())
    assert [name.split("-")[0] for name in caches] == ["test", "train", "valid"]  # no temporary left

    def fail(*args, **kwargs):
        raise AssertionError("recomputed instead of using the cache")

    monkeypatch.setattr(tok_mod, "train_sentencepiece", fail)
    monkeypatch.setattr(tok_mod, "sample_pairs", fail)
    monkeypatch.setattr(SubwordTokenizer, "encode", fail)
    monkeypatch.setattr(TextDirCorpus, "stream", fail)  # a warm cache only hashes the files
    second = prepare_small(small_text_dir, tmp_path / "cache")
    assert second.train["src_ids"][:] == first.train["src_ids"][:] and second.dropped == first.dropped
    assert isinstance(second.train["src_ids"].values, np.memmap) and second.train["src_ids"].values.dtype == np.uint16
    assert sorted(p.name for p in (tmp_path / "cache" / "ids").iterdir()) == caches


def test_changed_text_is_encoded_again(small_text_dir, tmp_path):
    prepare_small(small_text_dir, tmp_path / "cache")
    (small_text_dir / "test.en.gz").unlink()
    (small_text_dir / "test.en").write_text("".join(f"A dog number {i}.\n" for i in range(50)), encoding="utf-8")
    data = prepare_small(small_text_dir, tmp_path / "cache")
    assert data.test[3]["tgt"] == "A dog number 3."
    assert len(list((tmp_path / "cache" / "ids").glob("test-*"))) == 2


def test_make_batches_covers_the_split_with_matching_rows(small_text_dir, tmp_path):
    data = prepare_small(small_text_dir, tmp_path / "cache", max_len=100)
    tok = data.tgt_tok
    batches = make_batches(data.train, 250, True, 0, tok.pad_id, tok.bos_id, tok.eos_id)
    rows = []
    for batch in batches:
        assert batch.src.numel() <= 250 and batch.tgt_out.numel() <= 250
        for j, i in enumerate(batch.indices.tolist()):
            assert batch.tgt_out[j, : batch.tgt_out.size(1)].tolist()[: len(data.train[i]["tgt_ids"]) + 1] == \
                data.train[i]["tgt_ids"] + [tok.eos_id]
            rows.append(i)
    assert sorted(rows) == list(range(len(data.train)))


def test_make_batches_indices_refer_to_the_filtered_split(small_text_dir, tmp_path):
    data = prepare_small(small_text_dir, tmp_path / "cache", max_len=10)
    tok = data.src_tok
    for batch in make_batches(data.train, 200, False, 0, tok.pad_id, tok.bos_id, tok.eos_id):
        for j, i in enumerate(batch.indices.tolist()):
            n = int(batch.src_lengths[j])
            assert batch.src[j, :n].tolist() == data.train[i]["src_ids"]


def test_splits_must_name_train_valid_and_test(tmp_path):
    with pytest.raises(ValueError, match="data.splits lacks \\['test'\\]"):
        prepare_data(ToyCorpus("copy", 10, 5, 1, 3, 0), {"train": "train", "valid": "valid"}, TOKENIZER, 50,
                     str(tmp_path))


def test_toy_config_prepares_end_to_end(tmp_path, monkeypatch):
    cfg = compose_cfg(["data=toy", f"data.cache_dir={tmp_path / 'cache'}"]).data  # composed: data/base too
    data = prepare_data(instantiate(cfg.corpus), dict(cfg.splits), OmegaConf.to_container(cfg.tokenizer),
                        cfg.max_len, cfg.cache_dir)
    assert len(data.train) == cfg.corpus.size and len(data.valid) == cfg.corpus.eval_size
    assert data.src_tok.decode(data.valid["tgt_ids"][:5]) == data.valid["tgt"][:5]
    assert (tmp_path / "cache" / "tokenizers").is_dir()


class LoadOnly:
    """A user's own corpus class with only ``load`` (the Corpus protocol); it records its calls."""

    def __init__(self):
        self.toy, self.calls = ToyCorpus("copy", 60, 10, 1, 5, seed=0), []

    def load(self, split: str) -> datasets.Dataset:
        self.calls.append(("load", split))
        return self.toy.load(split)


class StreamedAndHashed(LoadOnly):
    """The same pairs, also with ``stream`` and ``fingerprint``."""

    def stream(self, split: str, chunk_size: int):
        self.calls.append(("stream", split))
        pairs = self.toy.load(split)
        src, tgt = pairs["src"][:], pairs["tgt"][:]
        for start in range(0, len(src), chunk_size):
            yield src[start:start + chunk_size], tgt[start:start + chunk_size]

    def fingerprint(self, split: str) -> str:
        self.calls.append(("fingerprint", split))
        return hashlib.sha256(f"user corpus {split}".encode()).hexdigest()


def test_a_users_load_only_corpus_is_hashed_and_encoded_from_load(tmp_path):
    corpus = LoadOnly()
    assert isinstance(corpus, Corpus) and not isinstance(corpus, (Streaming, Fingerprinted))
    data = prepare_data(corpus, SPLITS, TOY_TOKENIZER, 64, str(tmp_path))
    assert len(data.train) == 60 and list(data.valid["tgt"]) == corpus.toy.load("valid")["tgt"][:]
    assert {kind for kind, _ in corpus.calls} == {"load"}


def test_a_users_streaming_fingerprinted_corpus_is_never_loaded(tmp_path):
    corpus = StreamedAndHashed()
    data = prepare_data(corpus, SPLITS, TOY_TOKENIZER, 64, str(tmp_path))
    assert len(data.train) == 60 and list(data.valid["tgt"]) == corpus.toy.load("valid")["tgt"][:]
    assert {kind for kind, _ in corpus.calls} == {"stream", "fingerprint"}
    corpus.calls.clear()
    prepare_data(corpus, SPLITS, TOY_TOKENIZER, 64, str(tmp_path))  # a warm cache: only the user's hashes
    assert sorted(corpus.calls) == [("fingerprint", split) for split in ("test", "train", "valid")]


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("multi30k_*.yaml")))
def test_multi30k_configs_load_real_validation_data(name, multi30k_root):
    cfg = compose_cfg([f"data={name}", f"data.root={multi30k_root}"]).data
    corpus = instantiate(cfg.corpus)
    assert (corpus.src_lang, corpus.tgt_lang) == tuple(name.split("_")[1:])
    assert len(corpus.load(cfg.splits.valid)) == 1014 and len(corpus.load(cfg.splits.test)) == 1000


@pytest.mark.parametrize("bad, message", [
    ("unequal", r"train\.de has 301 lines but .*train\.en has 300 \(first unmatched: line 301"),
    ("utf8", r"train\.en, line 250: .*not valid UTF-8"),
])
def test_a_bad_line_fails_with_file_and_line_and_leaves_no_cache(small_text_dir, tmp_path, bad, message):
    lines = (small_text_dir / "train.en").read_bytes().split(b"\n")
    if bad == "unequal":
        with open(small_text_dir / "train.de", "ab") as f:
            f.write("Ein Satz zu viel.\n".encode())
    else:
        lines[249] = b"A caf\xe9 sign."
        (small_text_dir / "train.en").write_bytes(b"\n".join(lines))
    with pytest.raises(CorpusError, match=message):
        prepare_small(small_text_dir, tmp_path / "cache")
    ids = tmp_path / "cache" / "ids"
    assert not ids.exists() or list(ids.iterdir()) == []


def test_an_empty_side_is_dropped_with_its_line_number(small_text_dir, tmp_path, caplog):
    lines = (small_text_dir / "train.en").read_text(encoding="utf-8").split("\n")
    lines[41] = "   "
    (small_text_dir / "train.en").write_text("\n".join(lines), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="nmt.data.corpus"):
        data = prepare_small(small_text_dir, tmp_path / "cache", max_len=1000)
    assert "train.en: dropped 1 of 300 pairs with an empty side (lines 42)" in caplog.text
    assert len(data.train) == 299


def test_an_interrupted_build_is_rebuilt_never_read(small_text_dir, tmp_path, monkeypatch):
    calls = []
    real_encode = SubwordTokenizer.encode

    def crash_on_second_chunk(self, texts):
        calls.append(len(texts))
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed mid-build, after the first chunk was written
        return real_encode(self, texts)

    monkeypatch.setattr(pipeline_mod, "ENCODE_CHUNK", 100)
    monkeypatch.setattr(SubwordTokenizer, "encode", crash_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        prepare_small(small_text_dir, tmp_path / "cache")
    assert list((tmp_path / "cache" / "ids").iterdir()) == []  # the temporary directory is gone
    monkeypatch.setattr(SubwordTokenizer, "encode", real_encode)
    data = prepare_small(small_text_dir, tmp_path / "cache", max_len=1000)
    assert len(data.train) == 300
    assert data.train["tgt_ids"][299] == data.tgt_tok.encode([data_lines(small_text_dir)[299]])[0]


def data_lines(directory: Path) -> list[str]:
    return (directory / "train.en").read_text(encoding="utf-8").split("\n")[:-1]


def test_hub_path_streams_a_local_datasets_dataset(tmp_path, multi30k_root):
    """HubCorpus through datasets.load_dataset on a local folder (no network): same ids as the text files."""
    from data_helpers import read_real
    hub_dir = tmp_path / "hub"
    for split, name, n in (("train", "train", 300), ("val", "validation", 40), ("test_2016_flickr", "test", 40)):
        de, en = read_real(multi30k_root, split, "de", n), read_real(multi30k_root, split, "en", n)
        write_lines(hub_dir / f"{name}.jsonl",
                    [json.dumps({"translation": {"de": d, "en": e}}) for d, e in zip(de, en)])
        for lang, lines in (("de", de), ("en", en)):
            write_lines(tmp_path / "text" / f"{name}.{lang}", lines)
    splits = {"train": "train", "valid": "validation", "test": "test"}
    hub = HubCorpus(str(hub_dir), None, "translation", "translation", "de", "en")
    from_hub = prepare_data(hub, splits, TOKENIZER, 1000, str(tmp_path / "cache_hub"))
    from_text = prepare_data(TextDirCorpus(str(tmp_path / "text"), "de", "en"), splits, TOKENIZER, 1000,
                             str(tmp_path / "cache_text"))
    assert from_hub.train["src_ids"][:] == from_text.train["src_ids"][:]
    assert from_hub.test["tgt"] == from_text.test["tgt"] and len(from_hub.valid) == 40
    assert hub.fingerprint("train") == hub.fingerprint("train") != hub.fingerprint("test")
    assert isinstance(datasets.load_dataset(str(hub_dir), split="train"), datasets.Dataset)
