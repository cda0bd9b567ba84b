"""Corpora: text dirs (plain/gz), Multi30k (real data, download path, offline message), TSV, JSONL, hub, toy."""
from __future__ import annotations

import gzip
import json
import logging
import urllib.error

import datasets
import pytest
from data_helpers import write_lines
from toy_alignment import gold_alignment

from nmt.data import corpus as corpus_mod
from nmt.data.corpus import (CorpusError, HubCorpus, JsonlCorpus, Multi30k, TextDirCorpus, ToyCorpus, TsvCorpus,
                             fetch_url, to_dataset)

DE = ["Ein Hund rennt.", "Zwei Männer sitzen.", "Eine Frau singt."]
EN = ["A dog runs.", "Two men sit.", "A woman sings."]


# --------------------------------------------------------------------------- text directories

def test_plain_and_gz_files_load_with_src_tgt_columns(tmp_path):
    write_lines(tmp_path / "train.de", DE)
    write_lines(tmp_path / "train.en.gz", EN)
    ds = TextDirCorpus(str(tmp_path), "de", "en").load("train")
    assert isinstance(ds, datasets.Dataset) and ds.column_names == ["src", "tgt"]
    assert ds["src"][:] == DE and ds["tgt"][:] == EN


def test_crlf_and_surrounding_spaces_are_stripped(tmp_path):
    (tmp_path / "train.de").write_bytes(b"Ein Hund.\r\n  Zwei  \r\n")
    (tmp_path / "train.en").write_bytes(b"A dog.\nTwo")  # no final newline
    ds = TextDirCorpus(str(tmp_path), "de", "en").load("train")
    assert ds["src"][:] == ["Ein Hund.", "Zwei"] and ds["tgt"][:] == ["A dog.", "Two"]


def test_missing_file_lists_the_paths_looked_for(tmp_path):
    write_lines(tmp_path / "train.de", DE)
    with pytest.raises(CorpusError) as err:
        TextDirCorpus(str(tmp_path), "de", "en").load("train")
    msg = str(err.value)
    assert str(tmp_path / "train.en") in msg and str(tmp_path / "train.en.gz") in msg
    assert "train.de" not in msg.split("looked for")[1]  # only the missing side is listed


def test_empty_file_is_named(tmp_path):
    write_lines(tmp_path / "train.de", DE)
    (tmp_path / "train.en").write_bytes(b"")
    with pytest.raises(CorpusError, match=r"train\.en: file is empty"):
        TextDirCorpus(str(tmp_path), "de", "en").load("train")


def test_unequal_line_counts_name_both_files_and_counts(tmp_path):
    write_lines(tmp_path / "train.de", DE)
    write_lines(tmp_path / "train.en.gz", EN[:2])
    with pytest.raises(CorpusError) as err:
        TextDirCorpus(str(tmp_path), "de", "en").load("train")
    msg = str(err.value)
    assert "train.de has 3 lines" in msg and "train.en.gz has 2" in msg


@pytest.mark.parametrize("name", ["train.en", "train.en.gz"])
def test_undecodable_bytes_give_file_and_line_number(tmp_path, name):
    write_lines(tmp_path / "train.de", DE)
    data = "A dog runs.\nTwo men sit.\n".encode() + b"A caf\xe9 sign.\n"  # latin-1 on line 3
    (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(CorpusError, match=rf"{name}, line 3: .*not valid UTF-8"):
        TextDirCorpus(str(tmp_path), "de", "en").load("train")


def test_empty_lines_are_dropped_and_counted(tmp_path, caplog):
    write_lines(tmp_path / "train.de", ["Ein Hund.", "", "Eine Katze.", "Ein Vogel.", "   "])
    write_lines(tmp_path / "train.en", ["A dog.", "Two men.", "", "A bird.", "A fish."])
    with caplog.at_level(logging.WARNING, logger="nmt.data.corpus"):
        ds = TextDirCorpus(str(tmp_path), "de", "en").load("train")
    assert ds["src"][:] == ["Ein Hund.", "Ein Vogel."] and ds["tgt"][:] == ["A dog.", "A bird."]
    assert "dropped 3 of 5 pairs" in caplog.text and "lines 2, 3, 5" in caplog.text


def test_a_corpus_left_empty_is_an_error(tmp_path):
    write_lines(tmp_path / "train.de", ["", ""])
    write_lines(tmp_path / "train.en", ["x", ""])
    with pytest.raises(CorpusError, match="no non-empty sentence pairs"):
        TextDirCorpus(str(tmp_path), "de", "en").load("train")


# --------------------------------------------------------------------------- Multi30k

def test_real_multi30k_val_and_test_load(multi30k_root, real_val):
    corpus = Multi30k(str(multi30k_root), "de", "en", download=False)
    val = corpus.load("val")
    assert len(val) == 1014 and val["src"][:] == real_val[0] and val["tgt"][:] == real_val[1]
    assert len(Multi30k(str(multi30k_root), "fr", "cs", download=False).load("test_2016_flickr")) == 1000


def test_real_multi30k_train_reads_fast(multi30k_root, monkeypatch):
    """The fast path (about 0.2 s): with the files present download=True fetches nothing, and the 29,000 pairs
    come back as one in-memory Dataset, no Arrow cache file written (not datasets' per-row generator)."""
    def fetch(url, dest):
        raise AssertionError(f"downloaded {url} although the file is there")
    monkeypatch.setattr(corpus_mod, "fetch_url", fetch)
    ds = Multi30k(str(multi30k_root), "en", "de", download=True).load("train")
    assert len(ds) == 29000 and ds.cache_files == []


def test_multi30k_rejects_unknown_languages(tmp_path):
    with pytest.raises(CorpusError, match="no language 'es'.*en, de, fr, cs"):
        Multi30k(str(tmp_path), "es", "en", download=False)


def test_multi30k_offline_says_what_to_set(tmp_path, monkeypatch):
    def offline(url, dest, timeout=30.0):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(corpus_mod, "fetch_url", offline)
    with pytest.raises(CorpusError) as err:
        Multi30k(str(tmp_path), "de", "en", download=True).load("val")
    msg = str(err.value)
    assert "data.root=" in msg and "NMT_DATA_DIR" in msg and "multi30k/<split>.<lang>.gz" in msg
    assert str(tmp_path / "multi30k") in msg and "raw.githubusercontent.com/multi30k" in msg


def test_multi30k_without_download_says_what_to_set(tmp_path):
    with pytest.raises(CorpusError, match="download is off.*data.root=.*NMT_DATA_DIR"):
        Multi30k(str(tmp_path), "de", "en", download=False).load("val")


def test_multi30k_downloads_missing_files_into_root(tmp_path, monkeypatch):
    fetched = []

    def fake_fetch(url, dest, timeout=30.0):
        fetched.append(url)
        write_lines(dest, DE if url.endswith(".de.gz") else EN)

    monkeypatch.setattr(corpus_mod, "fetch_url", fake_fetch)
    write_lines(tmp_path / "multi30k" / "val.en.gz", EN)  # only the German side is missing
    ds = Multi30k(str(tmp_path), "de", "en", download=True).load("val")
    assert fetched == ["https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/val.de.gz"]
    assert ds["src"][:] == DE and (tmp_path / "multi30k" / "val.de.gz").is_file()


def test_fetch_url_is_atomic(tmp_path):
    source = write_lines(tmp_path / "src.gz", EN)
    dest = tmp_path / "out" / "val.en.gz"
    fetch_url(source.as_uri(), dest)
    assert dest.read_bytes() == source.read_bytes()
    with pytest.raises(OSError):
        fetch_url((tmp_path / "absent.gz").as_uri(), tmp_path / "out" / "bad.gz")
    assert sorted(p.name for p in dest.parent.iterdir()) == ["val.en.gz"]  # no partial files left


# --------------------------------------------------------------------------- TSV / JSONL

def test_tsv_loads_columns_and_skips_header(tmp_path):
    write_lines(tmp_path / "train.tsv.gz", ["id\ten\tde"] + [f"{i}\t{e}\t{d}" for i, (d, e) in enumerate(zip(DE, EN))])
    ds = TsvCorpus(str(tmp_path / "{split}.tsv.gz"), src_column=2, tgt_column=1, skip_header=True).load("train")
    assert ds["src"][:] == DE and ds["tgt"][:] == EN


def test_tsv_empty_sides_are_dropped_with_their_line_numbers(tmp_path, caplog):
    write_lines(tmp_path / "train.tsv", ["de\ten", "Hund\tdog", "\tcat", "Vogel\tbird", "Fisch\t "])
    with caplog.at_level(logging.WARNING, logger="nmt.data.corpus"):
        ds = TsvCorpus(str(tmp_path / "{split}.tsv"), 0, 1, True).load("train")
    assert ds["src"][:] == ["Hund", "Vogel"] and "dropped 2 of 4 pairs" in caplog.text and "lines 3, 5" in caplog.text


def test_tsv_short_line_names_the_line(tmp_path):
    write_lines(tmp_path / "valid.tsv", [f"{d}\t{e}" for d, e in zip(DE, EN)] + ["no tab here"])
    with pytest.raises(CorpusError, match=r"valid\.tsv, line 4: found 1 tab-separated field"):
        TsvCorpus(str(tmp_path / "{split}.tsv"), 0, 1, False).load("valid")


@pytest.mark.parametrize("name", ["train.tsv", "train.tsv.gz"])
def test_tsv_and_jsonl_undecodable_bytes_name_their_line(tmp_path, name):
    lines = [f"{i} Hund\t{i} dog".encode() for i in range(1, 5000)]
    lines[3999] = b"caf\xe9\tcafe"
    data = b"\n".join(lines) + b"\n"
    (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(CorpusError, match=rf"{name}, line 4000: .*not valid UTF-8"):
        TsvCorpus(str(tmp_path / name.replace("train", "{split}")), 0, 1, False).load("train")
    (tmp_path / "train.jsonl").write_bytes(b'{"de": "a", "en": "b"}\n{"de": "caf\xe9", "en": "b"}\n')
    with pytest.raises(CorpusError, match=r"train\.jsonl, line 2: .*not valid UTF-8"):
        JsonlCorpus(str(tmp_path / "{split}.jsonl"), "de", "en").load("train")


def test_tsv_missing_and_empty_files(tmp_path):
    with pytest.raises(CorpusError, match="file not found"):
        TsvCorpus(str(tmp_path / "{split}.tsv"), 0, 1, False).load("test")
    (tmp_path / "test.tsv").write_bytes(b"")
    with pytest.raises(CorpusError, match="file is empty"):
        TsvCorpus(str(tmp_path / "{split}.tsv"), 0, 1, False).load("test")


def test_jsonl_loads_nested_and_flat_fields(tmp_path):
    nested = [json.dumps({"translation": {"de": d, "en": e}}) for d, e in zip(DE, EN)]
    write_lines(tmp_path / "train.jsonl", nested[:2] + [""] + nested[2:])  # blank lines are skipped
    ds = JsonlCorpus(str(tmp_path / "{split}.jsonl"), "translation.de", "translation.en").load("train")
    assert ds["src"][:] == DE and ds["tgt"][:] == EN
    write_lines(tmp_path / "valid.jsonl.gz", [json.dumps({"de": d, "en": e}) for d, e in zip(DE, EN)])
    assert JsonlCorpus(str(tmp_path / "{split}.jsonl.gz"), "en", "de").load("valid")["src"][:] == EN


def test_jsonl_errors_name_the_line(tmp_path):
    write_lines(tmp_path / "train.jsonl", [json.dumps({"de": "a", "en": "b"}), "{not json"])
    with pytest.raises(CorpusError, match=r"train\.jsonl, line 2: invalid JSON"):
        JsonlCorpus(str(tmp_path / "{split}.jsonl"), "de", "en").load("train")
    write_lines(tmp_path / "train.jsonl", [json.dumps({"de": "a", "fr": "b"})])
    with pytest.raises(CorpusError, match=r"line 1: no field 'en'"):
        JsonlCorpus(str(tmp_path / "{split}.jsonl"), "de", "en").load("train")


def test_path_template_needs_split(tmp_path):
    with pytest.raises(CorpusError, match="must contain '{split}'"):
        JsonlCorpus(str(tmp_path / "train.jsonl"), "de", "en")


# --------------------------------------------------------------------------- hub

def test_hub_corpus_reads_translation_dicts(monkeypatch):
    rows = {"translation": [{"de": d, "en": e} for d, e in zip(DE, EN)]}
    calls = []

    def fake_load(name, config, split):
        calls.append((name, config, split))
        return datasets.Dataset.from_dict(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    ds = HubCorpus("wmt/wmt14", "de-en", "translation", "translation", "en", "de").load("validation")
    assert calls == [("wmt/wmt14", "de-en", "validation")]
    assert ds["src"][:] == EN and ds["tgt"][:] == DE


def test_load_gathers_every_chunk_of_the_stream(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_mod, "LOAD_CHUNK", 2)  # three pairs: two chunks
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config, split: to_dataset(DE, EN))
    write_lines(tmp_path / "train.de", DE)
    write_lines(tmp_path / "train.en", EN)
    write_lines(tmp_path / "train.tsv", [f"{d}\t{e}" for d, e in zip(DE, EN)])
    write_lines(tmp_path / "train.jsonl", [json.dumps({"de": d, "en": e}) for d, e in zip(DE, EN)])
    for corpus in (TextDirCorpus(str(tmp_path), "de", "en"), TsvCorpus(str(tmp_path / "{split}.tsv"), 0, 1, False),
                   JsonlCorpus(str(tmp_path / "{split}.jsonl"), "de", "en"), HubCorpus("hub", None, "src", "tgt")):
        ds = corpus.load("train")
        assert ds["src"][:] == DE and ds["tgt"][:] == EN, type(corpus).__name__


def test_hub_corpus_failure_mentions_network_and_offline_mode(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("could not reach huggingface.co")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(CorpusError, match="HF_HUB_OFFLINE.*data.corpus.name"):
        HubCorpus("bentrevett/multi30k", None, "de", "en", None, None).load("train")


# --------------------------------------------------------------------------- toy

def test_toy_reverse_copy_sort_are_correct():
    for task, fn in (("reverse", lambda w: w[::-1]), ("copy", lambda w: w),
                     ("sort", lambda w: sorted(w, key=lambda x: int(x[1:])))):
        ds = ToyCorpus(task, 50, 10, 2, 6, seed=3).load("train")
        assert len(ds) == 50
        for src, tgt in zip(ds["src"], ds["tgt"]):
            words = src.split()
            assert 2 <= len(words) <= 6 and all(0 <= int(w[1:]) < 10 and w[0] == "w" for w in words)
            assert tgt.split() == fn(words)


def test_toy_splits_are_deterministic_and_different():
    corpus = ToyCorpus("reverse", 40, 20, 3, 8, seed=1, eval_size=10)
    train, valid = corpus.load("train"), corpus.load("valid")
    assert len(valid) == 10 and valid["src"][:] == corpus.load("valid")["src"][:]
    assert train["src"][:10] != valid["src"][:] != corpus.load("test")["src"][:]
    assert ToyCorpus("reverse", 40, 20, 3, 8, seed=2).load("train")["src"][:] != train["src"][:]


@pytest.mark.parametrize("task", ["copy", "reverse", "sort", "permute"])
def test_toy_gold_alignment_links_every_target_word_to_its_source_word(task):
    corpus = ToyCorpus(task, 30, 4, 1, 7, seed=5, eval_size=20)
    pairs, gold = corpus.load("valid"), gold_alignment(corpus, "valid")
    assert len(gold) == len(pairs) == 20
    for src, tgt, (sure, possible) in zip(pairs["src"][:], pairs["tgt"][:], gold):
        src, tgt = src.split(), tgt.split()
        assert sorted(j for _, j in sure) == list(range(len(tgt)))  # one sure link per target word
        assert len({i for i, _ in sure}) == len(src)                # from distinct source words
        assert sure <= possible and all(src[i] == tgt[j] for i, j in possible)
        assert possible == sure or task == "sort"


def test_toy_rejects_unknown_task():
    with pytest.raises(CorpusError, match="copy, reverse, sort"):
        ToyCorpus("shuffle", 10, 5, 1, 3, 0)


def test_read_lines_splits_on_newline_only_and_names_the_key_or_line(tmp_path):
    path = tmp_path / "src.txt"
    path.write_bytes("ein\u2028satz\r\n\nzwei\n".encode())  # U+2028 inside a line is not a line break
    assert corpus_mod.read_lines(path, "src") == ["ein\u2028satz", "", "zwei"]
    with pytest.raises(corpus_mod.CorpusError, match=r"src=.*missing.txt not found; pass src=<file>"):
        corpus_mod.read_lines(tmp_path / "missing.txt", "src")
    path.write_bytes(b"gut\n\xff kaputt\n")
    with pytest.raises(corpus_mod.CorpusError, match=r"src.txt, line 2: .* not valid UTF-8"):
        corpus_mod.read_lines(path, "src")
