"""A tiny model memorises a handful of real Multi30k pairs (loss ~0, exact greedy reproduction)."""
import pytest
from helpers import BOS, EOS, overfit, real_batch, tiny_model

from nmt.decoding import greedy_decode

SIZES = ["model.encoder.emb_size=32", "model.encoder.hidden_size=32", "model.decoder.emb_size=32",
         "model.decoder.hidden_size=64"]


@pytest.mark.parametrize("attention", ["luong_general", "bahdanau", "local_m", "local_p", "hard", "multihead"])
def test_rnn_overfits_real_pairs(real_pairs, attention):
    sv, tv, src, src_len, tgt_in, tgt_out = real_batch(real_pairs)
    model = tiny_model([f"model/attention={attention}", *SIZES], len(sv), len(tv))
    nll = overfit(model, src, src_len, tgt_in, tgt_out, steps=150)
    assert nll < 0.05
    hyp = greedy_decode(model.eval(), src, src_len, BOS, EOS, max_len_a=2.0, max_len_b=5)
    expected = [[i for i in row.tolist() if i not in (0, EOS)] for row in tgt_out]
    assert hyp.tokens == expected
