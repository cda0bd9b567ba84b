"""SentencePiece tokenizers: round trip on real sentences, special ids, caching, joint vs separate."""
from __future__ import annotations

import pickle
import unicodedata

import pytest
import torch

from nmt.data import tokenizer as tok_mod
from nmt.data.corpus import ToyCorpus
from nmt.data.tokenizer import SubwordTokenizer, sample_pairs, train_tokenizers

SETTINGS = dict(model_type="unigram", vocab_size=2000, joint=True, character_coverage=1.0,
                input_sentence_size=2_000_000, shuffle_input_sentence=True, num_threads=1)


def train(pairs: tuple[list[str], list[str]], cache, key: str = "k", **settings):
    """train_tokenizers over an in-memory corpus (one chunk), sampled like the pipeline does."""
    return train_tokenizers(lambda n: sample_pairs([pairs], n, 0), key, str(cache), **{**SETTINGS, **settings})


@pytest.fixture(scope="module")
def val_dataset(real_val):
    return real_val


@pytest.fixture(scope="module")
def joint_tok(val_dataset, tmp_path_factory) -> SubwordTokenizer:
    src, tgt = train(val_dataset, tmp_path_factory.mktemp("spm"))
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


def test_second_call_loads_from_cache_without_training_or_sampling(val_dataset, tmp_path, monkeypatch):
    first, _ = train(val_dataset, tmp_path)
    mtime = tmp_path.joinpath(first.model_path).stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("sentencepiece was trained again")

    monkeypatch.setattr(tok_mod, "train_sentencepiece", no_training)
    second, _ = train_tokenizers(no_training, "k", str(tmp_path), **SETTINGS)  # the corpus is not read
    assert second.model_path == first.model_path
    assert tmp_path.joinpath(first.model_path).stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left
    with pytest.raises(AssertionError, match="trained again"):  # other settings -> another model
        train(val_dataset, tmp_path, vocab_size=1000)
    with pytest.raises(AssertionError, match="trained again"):  # another sample size -> another model
        train(val_dataset, tmp_path, input_sentence_size=500)
    with pytest.raises(AssertionError, match="trained again"):  # other text (content key) -> another model
        train(val_dataset, tmp_path, key="other")


def test_separate_models_per_language(val_dataset, tmp_path):
    src, tgt = train(val_dataset, tmp_path, joint=False, vocab_size=1000)
    assert src is not tgt and src.model_path != tgt.model_path
    src_pieces = {src.pieces([i])[0] for i in range(len(src))}
    tgt_pieces = {tgt.pieces([i])[0] for i in range(len(tgt))}
    assert "\u2581Mann" in src_pieces and "\u2581Mann" not in tgt_pieces
    assert "\u2581man" in tgt_pieces


def test_bpe_and_tiny_corpora_work(tmp_path):
    toy = ToyCorpus("reverse", 30, 8, 2, 5, seed=0).load("train")
    for model_type in ("bpe", "unigram"):
        src, _ = train((toy["src"][:], toy["tgt"][:]), tmp_path, model_type=model_type, vocab_size=8000)
        assert len(src) < 8000  # vocab_size is an upper bound for tiny corpora
        assert src.decode(src.encode(toy["src"][:])) == toy["src"][:]


def test_unknown_model_type_is_rejected(val_dataset, tmp_path):
    with pytest.raises(ValueError, match="model_type must be one of"):
        train(val_dataset, tmp_path, model_type="wordpiece")


def test_sample_is_bounded_uniform_deterministic_and_in_corpus_order():
    src = [f"s{i}" for i in range(10_000)]
    chunks = [(src[i:i + 777], src[i:i + 777]) for i in range(0, 10_000, 777)]
    a, b = sample_pairs(chunks, 1000, seed=3)
    assert len(a) == 1000 and a == b and len(set(a)) == 1000
    positions = [int(x[1:]) for x in a]
    assert positions == sorted(positions)
    assert 350 < sum(p < 5000 for p in positions) < 650  # both halves of the corpus are sampled
    assert sample_pairs(chunks, 1000, seed=3) == (a, b) and sample_pairs(chunks, 1000, seed=4) != (a, b)
    assert sample_pairs(chunks, 20_000, seed=3) == (src, src)  # small corpus: all of it, in order


def test_input_sentence_size_bounds_the_training_lines(val_dataset, tmp_path, caplog):
    asked = []

    def sample(n):
        asked.append(n)
        return sample_pairs([val_dataset], n, 0)

    with caplog.at_level("INFO", logger="nmt.data.tokenizer"):
        train_tokenizers(sample, "k", str(tmp_path), **{**SETTINGS, "input_sentence_size": 400, "vocab_size": 500})
    assert asked == [200] and "on 400 lines" in caplog.text  # joint: 200 pairs, both sides
