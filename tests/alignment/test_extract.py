"""Subword -> word aggregation on a known sentence, selections per slot/head, and the toy-task AER bound."""
import pytest
import torch
from helpers import BOS, EOS, PAD, overfit, tiny_model
from toy_alignment import gold_alignment

from nmt.alignment.corpus import align_ids, score_all, shift_rows
from nmt.alignment.links import GoldAlignment
from nmt.alignment.extract import (AlignSettings, last_selection, links_from_matrix, piece_words, selections,
                                   sentence_links, word_matrix)
from nmt.data.batching import collate
from nmt.data.corpus import ToyCorpus
from nmt.data.tokenizer import SubwordTokenizer, train_sentencepiece
from nmt.decoding.inspect import output_maps

SRC = ["▁Ein", "▁Hund", "e", "▁läuft", "."]   # words: Ein | Hunde | läuft.
TGT = ["▁A", "▁dog", "s", "▁runs"]             # words: A | dogs | runs
# rows: the four target pieces, then eos; columns: the five source pieces
MAP = torch.tensor([[0.7, 0.1, 0.1, 0.1, 0.0],    # ▁A     -> words (0.7, 0.2, 0.1)
                    [0.0, 0.2, 0.6, 0.2, 0.0],    # ▁dog   -> (0.0, 0.8, 0.2)
                    [0.0, 0.3, 0.1, 0.3, 0.3],    # s      -> (0.0, 0.4, 0.6)
                    [0.1, 0.0, 0.0, 0.3, 0.6],    # ▁runs  -> (0.1, 0.0, 0.9)
                    [0.1, 0.2, 0.2, 0.3, 0.2]])   # </s>   -> (0.1, 0.4, 0.5)


def test_piece_words():
    assert piece_words(SRC) == [0, 1, 1, 2, 2]
    assert piece_words(TGT) == [0, 1, 1, 2]
    assert piece_words(["e", "▁x"]) == [0, 1]  # a first piece without the marker still opens word 0


def test_word_matrix_sums_source_pieces_and_averages_target_pieces():
    W = word_matrix(MAP[:-1], piece_words(SRC), piece_words(TGT))
    # dogs = mean of rows ▁dog (0, .8, .2) and s (0, .4, .6) = (0, .6, .4)
    expected = torch.tensor([[0.7, 0.2, 0.1], [0.0, 0.6, 0.4], [0.1, 0.0, 0.9]])
    assert torch.allclose(W, expected)


def test_argmax_threshold_and_shift():
    src_w, tgt_w = piece_words(SRC), piece_words(TGT)
    assert sentence_links(MAP, src_w, tgt_w, 0, None) == {(0, 0), (1, 1), (2, 2)}
    # threshold 0.35 keeps dogs->läuft. (0.4) too; 0.5 keeps only the argmax links here
    assert sentence_links(MAP, src_w, tgt_w, 0, 0.35) == {(0, 0), (1, 1), (2, 1), (2, 2)}
    assert sentence_links(MAP, src_w, tgt_w, 0, 0.5) == {(0, 0), (1, 1), (2, 2)}
    # shift: piece t reads row t + 1: A <- ▁dog row (0, .8, .2); dogs <- mean(s, ▁runs) = (.05, .2, .75);
    # runs <- eos row (.1, .4, .5)
    assert sentence_links(MAP, src_w, tgt_w, 1, None) == {(1, 0), (2, 1), (2, 2)}
    # offset 2 (Bahdanau flow) needs one more row: A <- s row (0, .4, .6), dogs <- mean(▁runs, eos) =
    # (.1, .2, .7), runs <- the second eos row
    extra = torch.cat([MAP, torch.tensor([[0.0, 0.9, 0.05, 0.05, 0.0]])])  # (T + 2, S)
    assert sentence_links(extra, src_w, tgt_w, 2, None) == {(2, 0), (2, 1), (1, 2)}
    with pytest.raises(ValueError, match="expected 6 rows"):
        sentence_links(MAP, src_w, tgt_w, 2, None)


class PieceTok:
    """Every id is one word piece "▁<id>"; the special ids of helpers."""
    pad_id, bos_id, eos_id = PAD, BOS, EOS

    def pieces(self, ids):
        return [f"▁{i}" for i in ids]


@pytest.mark.parametrize("attention,offset", [("bahdanau", 2), ("luong_general", 1), ("transformer", 1)])
def test_shift_reads_the_first_row_whose_query_has_read_the_piece(attention, offset):
    """Changing target piece t first changes row t + shift_rows: the Bahdanau flow attends with s_{t-1}."""
    from helpers import TINY_TRANSFORMER
    model = (tiny_model([], base=TINY_TRANSFORMER) if attention == "transformer"
             else tiny_model([f"model/attention={attention}"])).eval()
    assert shift_rows(model) == offset
    src, tgt, tok = [4, 5, 6, 7], [8, 9, 10, 11], PieceTok()
    forced = lambda t: output_maps(model, [src], [t + [EOS]], tok, torch.device("cpu"))[0].maps  # noqa: E731
    slot = "cross" if attention != "transformer" else "dec.1.cross"
    base = forced(tgt)[slot].mean(0)  # (T + 2, S)
    for t in range(len(tgt)):
        moved = (forced(tgt[:t] + [20] + tgt[t + 1:])[slot].mean(0) - base).abs().amax(-1) > 1e-6  # (T + 2,)
        assert int(moved.float().argmax()) == t + offset  # the first row that saw the new piece
    selection = slot if attention != "transformer" else f"{slot}:mean"
    links = align_ids(model, [src], [tgt], tok, tok, AlignSettings(True, None), torch.device("cpu"), 4)[selection]
    rows = base[offset: offset + len(tgt)]  # (T, S) the rows read with shift
    assert links[0] == {(int(rows[j].argmax()), j) for j in range(len(tgt))}


def test_rows_without_mass_link_nothing():
    W = torch.tensor([[0.0, 0.0], [0.2, 0.8]])
    assert links_from_matrix(W, None) == {(1, 1)}
    assert links_from_matrix(W, 0.0) == {(0, 1), (1, 1)}


def test_selections_per_head_layer_mean_and_all():
    maps = {"enc.0.self": torch.rand(2, 3, 3), "dec.0.self": torch.rand(2, 4, 4),
            "dec.0.cross": torch.rand(2, 4, 3), "dec.1.cross": torch.rand(2, 4, 3)}
    sel = selections(maps)
    assert sorted(sel) == ["all:mean", "dec.0.cross:h0", "dec.0.cross:h1", "dec.0.cross:mean",
                           "dec.1.cross:h0", "dec.1.cross:h1", "dec.1.cross:mean"]
    assert torch.allclose(sel["dec.1.cross:mean"], maps["dec.1.cross"].mean(0))
    assert torch.allclose(sel["all:mean"], (maps["dec.0.cross"].mean(0) + maps["dec.1.cross"].mean(0)) / 2)
    assert last_selection(list(sel)) == "dec.1.cross:mean"
    rnn = selections({"cross": torch.rand(1, 4, 3)})
    assert list(rnn) == ["cross"] and last_selection(list(rnn)) == "cross"


# ----------------------------------------------------------------------------- the toy-task bound

def toy_golds(pairs) -> list[GoldAlignment]:
    """toy_alignment.gold_alignment(corpus, split) output [(sure, possible)] -> GoldAlignment per pair."""
    return [GoldAlignment(set(sure), set(possible) | set(sure)) for sure, possible in pairs]


def word_tokenizer(corpus: ToyCorpus, path) -> SubwordTokenizer:
    """A sentencepiece 'word' model: every toy word "w12" is one piece "▁w12". (With the default
    unigram model a word is two pieces "▁w" + "12", and the rows of the constant "▁w" piece attend
    arbitrary words: see docs/alignment.md.)"""
    train = corpus.load("train")
    settings = {"model_type": "word", "vocab_size": 64, "character_coverage": 1.0,
                "input_sentence_size": 1_000_000, "shuffle_input_sentence": False}
    path.write_bytes(train_sentencepiece(list(train["src"]) + list(train["tgt"]), settings, 1))
    return SubwordTokenizer(path)


@pytest.mark.parametrize("task", ["reverse", "permute"])
def test_global_attention_aligns_toy_tasks_and_random_attention_does_not(tmp_path, task):
    torch.set_num_threads(1)  # tiny matrices: a second thread only waits for the first on a shared machine
    corpus = ToyCorpus(task, size=300, vocab=12, min_len=3, max_len=8, seed=1, eval_size=50)
    tok = word_tokenizer(corpus, tmp_path / "word.model")
    train, valid = corpus.load("train"), corpus.load("valid")
    b = collate(tok.encode(train["src"]), tok.encode(train["tgt"]), list(range(len(train))), PAD, BOS, EOS)
    sizes = ["model.encoder.emb_size=32", "model.encoder.hidden_size=32", "model.decoder.emb_size=32",
             "model.decoder.hidden_size=64", "model.decoder.input_feeding=false"]
    model = tiny_model(["model/attention=luong_general", *sizes], len(tok), len(tok))
    overfit(model, b.src, b.src_lengths, b.tgt_in, b.tgt_out, steps=150)
    src_ids, tgt_ids = tok.encode(valid["src"]), tok.encode(valid["tgt"])
    golds = toy_golds(gold_alignment(corpus, "valid"))
    links = align_ids(model.eval(), src_ids, tgt_ids, tok, tok, AlignSettings(False, None), torch.device("cpu"), 64)
    assert score_all(links, golds)["cross"]["aer"] <= 0.1
    # the same extraction on random attention maps (Dirichlet rows) is far from the truth
    random_links = []
    for s, t in zip(src_ids, tgt_ids):
        rand = torch.distributions.Dirichlet(torch.ones(len(s))).sample((len(t) + 1,))  # (T + 1, S)
        random_links.append(sentence_links(rand, list(range(len(s))), list(range(len(t))), 0, None))
    assert score_all({"random": random_links}, golds)["random"]["aer"] > 0.5
