"""SentencePiece tokenizers: round trip on real sentences, special ids, caching, joint vs separate."""
from __future__ import annotations

import pickle
import unicodedata

import pytest
import torch

from nmt.data import tokenizer as tok_mod
from nmt.data.corpus import ToyCorpus, to_dataset
from nmt.data.tokenizer import SubwordTokenizer, train_tokenizers

SETTINGS = dict(model_type="unigram", vocab_size=2000, joint=True, character_coverage=1.0)


@pytest.fixture(scope="module")
def val_dataset(real_val):
    return to_dataset(*real_val)


@pytest.fixture(scope="module")
def joint_tok(val_dataset, tmp_path_factory) -> SubwordTokenizer:
    src, tgt = train_tokenizers(val_dataset, str(tmp_path_factory.mktemp("spm")), **SETTINGS)
    assert src is tgt
    return src


def normalised(text: str) -> str:
    """What sentencepiece's nmt_nfkc normalisation keeps: NFKC, single spaces."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def test_roundtrip_on_real_sentences(joint_tok, real_val):
    sentences = real_val[0][:300] + real_val[1][:300]
    ids = joint_tok.encode(sentences)
    assert all(ids) and all(joint_tok.unk_id not in seq for seq in ids)
    assert joint_tok.decode(ids) == [normalised(s) for s in sentences]


def test_special_ids_and_size(joint_tok):
    assert (joint_tok.pad_id, joint_tok.unk_id, joint_tok.bos_id, joint_tok.eos_id) == (0, 1, 2, 3)
    assert joint_tok.pieces([0, 1, 2, 3]) == ["<pad>", "<unk>", "<s>", "</s>"]
    assert 100 < len(joint_tok) <= SETTINGS["vocab_size"]


def test_encode_adds_no_bos_eos_and_decode_stops_at_eos(joint_tok):
    ids = joint_tok.encode(["Ein Hund rennt.", "A dog runs."])
    assert all(t not in seq for seq in ids for t in (0, 2, 3))
    noisy = [[2] + ids[0] + [3] + ids[1] + [0, 0], torch.tensor([2] + ids[1] + [3, 0])]
    assert joint_tok.decode(noisy) == ["Ein Hund rennt.", "A dog runs."]
    assert joint_tok.decode([[], [3, 5, 6]]) == ["", ""]


def test_pieces_are_subword_strings(joint_tok):
    pieces = joint_tok.pieces(joint_tok.encode(["Ein Mann"])[0])
    assert "".join(pieces).replace("\u2581", " ").strip() == "Ein Mann"


def test_load_and_pickle_give_the_same_model(joint_tok):
    again = SubwordTokenizer.load(joint_tok.model_path)
    assert again.encode(["Zwei Hunde"]) == joint_tok.encode(["Zwei Hunde"])
    clone = pickle.loads(pickle.dumps(joint_tok))
    assert clone.model_path == joint_tok.model_path and len(clone) == len(joint_tok)


def test_second_call_loads_from_cache_without_training(val_dataset, tmp_path, monkeypatch):
    first, _ = train_tokenizers(val_dataset, str(tmp_path), **SETTINGS)
    mtime = tmp_path.joinpath(first.model_path).stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("sentencepiece was trained again")

    monkeypatch.setattr(tok_mod, "train_sentencepiece", no_training)
    second, _ = train_tokenizers(val_dataset, str(tmp_path), **SETTINGS)
    assert second.model_path == first.model_path
    assert tmp_path.joinpath(first.model_path).stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left
    with pytest.raises(AssertionError, match="trained again"):  # other settings -> another model
        train_tokenizers(val_dataset, str(tmp_path), **{**SETTINGS, "vocab_size": 1000})
    with pytest.raises(AssertionError, match="trained again"):  # other text -> another model
        train_tokenizers(val_dataset.select(range(100)), str(tmp_path), **SETTINGS)


def test_separate_models_per_language(val_dataset, tmp_path):
    src, tgt = train_tokenizers(val_dataset, str(tmp_path), **{**SETTINGS, "joint": False, "vocab_size": 1000})
    assert src is not tgt and src.model_path != tgt.model_path
    src_pieces = {src.pieces([i])[0] for i in range(len(src))}
    tgt_pieces = {tgt.pieces([i])[0] for i in range(len(tgt))}
    assert "\u2581Mann" in src_pieces and "\u2581Mann" not in tgt_pieces
    assert "\u2581man" in tgt_pieces


def test_bpe_and_tiny_corpora_work(tmp_path):
    toy = ToyCorpus("reverse", 30, 8, 2, 5, seed=0).load("train")
    for model_type in ("bpe", "unigram"):
        src, _ = train_tokenizers(toy, str(tmp_path), model_type, 8000, True, 1.0)
        assert len(src) < 8000  # vocab_size is an upper bound for tiny corpora
        assert src.decode(src.encode(toy["src"][:])) == toy["src"][:]


def test_unknown_model_type_is_rejected(val_dataset, tmp_path):
    with pytest.raises(ValueError, match="model_type must be one of"):
        train_tokenizers(val_dataset, str(tmp_path), "wordpiece", 100, True, 1.0)
