"""Transformer encoder/decoder: causal, cached decoding equals recomputation, padding-invariant, trains."""
import pytest
import torch
from helpers import BOS, EOS, PAD, overfit, pad_batch, real_batch, tiny_model

from nmt.decoding import beam_search, greedy_decode
from nmt.models.seq2seq import DecoderOutput

TINY = ["model=transformer", "model.encoder.d_model=16", "model.encoder.ff_size=32",
        "model.decoder.ff_size=32", "model.encoder.num_layers=2", "model.decoder.num_layers=2",
        "model.encoder.dropout=0.0", "model.decoder.dropout=0.0"] + [
    f"model.{slot}.{key}" for slot in ("encoder.self_attention", "decoder.self_attention",
                                       "decoder.cross_attention")
    for key in ("num_heads=2", "dropout=0.0")]
TINY_HYBRID = ["model=hybrid", "model.encoder.d_model=16", "model.encoder.ff_size=32",
               "model.encoder.num_layers=2", "model.encoder.dropout=0.0",
               "model.encoder.self_attention.num_heads=2", "model.encoder.self_attention.dropout=0.0",
               "model.decoder.emb_size=16", "model.decoder.hidden_size=24", "model.decoder.dropout=0.0"]
VARIANTS = {
    "pre_norm": [],
    "post_norm_learned": ["model.encoder.pre_norm=false", "model.decoder.pre_norm=false",
                          "model.encoder.positions=learned", "model.decoder.positions=learned"],
    "local_windows": [f"model.{side}.self_attention.{key}" for side in ("encoder", "decoder")
                      for key in ("window=local", "half_width=2")],
    # the decoder adds its own causal mask, so a global window slot stays causal (and may use SDPA)
    "global_decoder_window": ["model.decoder.self_attention.window=global"],
    # position inside attention (configs/model/position/): no input positions, the method in both self slots
    **{method: ["+model/position=" + method] for method in ("shaw", "t5", "rotary", "alibi")},
    "shaw_k1": ["+model/position=shaw", *[f"model.{side}.self_attention.max_relative_distance=1"
                                          for side in ("encoder", "decoder")]],  # clipping inside the sentences
    # grouped-query heads (configs/model/heads/): 4 query heads over 2 key/value heads, or 2 over 1
    "gqa_rotary": ["+model/heads=gqa", "+model/position=rotary",
                   *[f"model.{slot}.num_heads=4" for slot in ("encoder.self_attention", "decoder.self_attention",
                                                              "decoder.cross_attention")]],
    "mqa_t5": ["+model/heads=mqa", "+model/position=t5"],
}
HEADS = {"gqa_rotary": (4, 2), "mqa_t5": (2, 1)}  # (query heads, key/value heads) where not (2, 2)


def transformer(overrides=(), src_vocab=30, tgt_vocab=30):
    return tiny_model(list(overrides), src_vocab, tgt_vocab, base=TINY)


def toy_batch():
    src, src_len = pad_batch([[5, 6, 7, 8, 9], [10, 11, 4], [12, 13, 14, 15, 16, 17]], eos=True)
    tgt, _ = pad_batch([[7, 8, 9, 10, 11], [11, 12, 5], [4, 4, 13, 14]], bos=True)
    return src, src_len, tgt


@pytest.mark.parametrize("variant", VARIANTS)
def test_sdpa_path_equals_explicit_path(variant):
    model = transformer(VARIANTS[variant]).eval()
    src, src_len, tgt = toy_batch()
    with torch.no_grad():
        fast, fast_enc = model(src, src_len, tgt, need_weights=False)
        slow, slow_enc = model(src, src_len, tgt, need_weights=True)
    torch.testing.assert_close(fast_enc.memory, slow_enc.memory, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast.logits, slow.logits, atol=1e-5, rtol=1e-5)
    assert fast.attention == {} and fast_enc.attention == {}
    assert set(slow.attention) == {"dec.0.self", "dec.0.cross", "dec.1.self", "dec.1.cross"}
    H = HEADS.get(variant, (2, 2))[0]  # the weights keep every query head
    assert slow_enc.attention["enc.1.self"].shape == (3, H, 7, 7)
    assert slow.attention["dec.0.self"].shape == (3, H, 6, 6)
    assert slow.attention["dec.1.cross"].shape == (3, H, 6, 7)


@pytest.mark.parametrize("variant", VARIANTS)
def test_decoder_is_causal(variant):
    model = transformer(VARIANTS[variant]).eval()
    src, src_len, tgt = toy_batch()
    changed = tgt.clone()
    changed[:, 3:] = torch.randint(4, 30, changed[:, 3:].shape)
    with torch.no_grad():
        a, _ = model(src, src_len, tgt, need_weights=True)
        b, _ = model(src, src_len, changed)
    torch.testing.assert_close(a.logits[:, :3], b.logits[:, :3], atol=1e-6, rtol=1e-6)
    future = torch.ones(6, 6, dtype=torch.bool).triu(1)  # key after query
    assert torch.all(a.attention["dec.0.self"][..., future] == 0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_decoding_equals_full_recomputation(variant):
    model = transformer(VARIANTS[variant]).eval()
    src, src_len, tgt = toy_batch()
    with torch.no_grad():
        enc = model.encode(src, src_len)
        full = model.decode(tgt, enc, model.init_state(enc), need_weights=True)
        state, steps, cross = model.init_state(enc), [], []
        for chunk in (tgt[:, :1], tgt[:, 1:3], tgt[:, 3:4], tgt[:, 4:]):  # T = 1 and T > 1 continuations
            out = model.decode(chunk, enc, state, need_weights=True)
            state = out.state
            steps.append(out.logits)
            cross.append(out.attention["dec.1.cross"])
    torch.testing.assert_close(torch.cat(steps, 1), full.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat(cross, 2), full.attention["dec.1.cross"], atol=1e-5, rtol=1e-5)
    H, H_kv = HEADS.get(variant, (2, 2))
    assert state["pos"].tolist() == [6, 6, 6] and state["self_k1"].shape == (3, H_kv, 6, 16 // H)  # H/Hkv x smaller
    assert state["cross_k0"].shape == (3, H_kv, 7, 16 // H)
    torch.testing.assert_close(state["self_v0"], full.state["self_v0"], atol=1e-5, rtol=1e-5)


# average attention (nmt.attention.AverageAttention) as the decoder's self slot: no heads (its dropout is the decoder's)
TINY_AAN = [o for o in TINY if not o.startswith("model.decoder.self_attention.")] + [
    "model/slot@model.decoder.self_attention=aan"]


def test_aan_cached_decoding_equals_full_recomputation():
    """The average attention decoder in chunks (T = 1 and T > 1) equals its full pass, maps included (1/j on
    the prefix), and its cache after a one-token step is one running sum per layer whatever the length."""
    model = tiny_model([], base=TINY_AAN).eval()
    src, src_len, tgt = toy_batch()
    with torch.no_grad():
        enc = model.encode(src, src_len)
        full = model.decode(tgt, enc, model.init_state(enc), need_weights=True)
        state, steps, sizes, t = model.init_state(enc), [], [], 0
        for chunk in (tgt[:, :1], tgt[:, 1:3], tgt[:, 3:4], tgt[:, 4:]):
            out = model.decode(chunk, enc, state, need_weights=True)
            state, T = out.state, chunk.size(1)
            steps.append(out.logits)
            rows = full.attention["dec.1.self"][:, :, t: t + T, : t + T]  # (B, 1, T, t+T)
            torch.testing.assert_close(out.attention["dec.1.self"], rows)
            sizes += [sum(v.numel() * v.element_size() for k, v in state.items() if k.startswith("self_"))] * (T == 1)
            t += T
    torch.testing.assert_close(torch.cat(steps, 1), full.logits, atol=1e-5, rtol=1e-5)
    triangle = torch.ones(6, 6).tril() / torch.arange(1, 7)[:, None]  # (6, 6) row j: 1/j on keys <= j
    torch.testing.assert_close(full.attention["dec.0.self"], triangle.expand(3, 1, 6, 6))
    assert sizes == [2 * 3 * 16 * 4] * 2  # after t = 1 and t = 4: 2 layers x 3 sentences x a float32 sum of 16
    assert state["pos"].tolist() == [6, 6, 6] and state["seen"].shape == (3, 6, 0)


def test_aan_beam_with_cache_equals_recomputation(real_pairs):
    """Beam search reorders the running sums like any cache (index_select(0, origin))."""
    torch.manual_seed(1)
    sv, tv, src, src_len, tgt_in, tgt_out = real_batch(real_pairs)
    model = tiny_model([], len(sv), len(tv), base=TINY_AAN)
    overfit(model, src, src_len, tgt_in, tgt_out, steps=15, lr=0.005)
    cached = beam_search(model.eval(), src, src_len, 4, BOS, EOS, 1.0, 1.5, 5)
    reference = beam_search(Recompute(model), src, src_len, 4, BOS, EOS, 1.0, 1.5, 5)
    assert cached.tokens == reference.tokens
    torch.testing.assert_close(cached.scores, reference.scores, atol=1e-4, rtol=1e-4)


class Recompute(torch.nn.Module):
    """Reference decoder: no cache, re-runs the whole prefix every step (state = the prefix ids)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def encode(self, src, src_lengths, need_weights=False):
        return self.model.encode(src, src_lengths)

    def init_state(self, enc):
        return {"prefix": torch.zeros(enc.memory.size(0), 0, dtype=torch.long)}

    def decode(self, prev, enc, state, need_weights=False):
        prefix = torch.cat([state["prefix"], prev], dim=1)  # (B, t+1)
        out = self.model.decode(prefix, enc, self.model.init_state(enc))
        return DecoderOutput(out.features[:, -1:], {"prefix": prefix}, logits=out.logits[:, -1:])


@pytest.fixture(scope="module")
def half_trained(real_pairs):
    """Trained a little on real pairs: peaked enough that search has real choices to make."""
    torch.manual_seed(1)
    sv, tv, src, src_len, tgt_in, tgt_out = real_batch(real_pairs)
    model = transformer([], len(sv), len(tv))
    overfit(model, src, src_len, tgt_in, tgt_out, steps=20, lr=0.005)
    return model.eval(), src, src_len


def test_greedy_with_cache_equals_recomputation(half_trained):
    model, src, src_len = half_trained
    cached = greedy_decode(model, src, src_len, BOS, EOS, 1.5, 5)
    reference = greedy_decode(Recompute(model), src, src_len, BOS, EOS, 1.5, 5)
    assert cached.tokens == reference.tokens and any(len(t) > 3 for t in cached.tokens)
    torch.testing.assert_close(cached.scores, reference.scores, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("k", [1, 4])
def test_beam_with_cache_equals_recomputation(half_trained, k):
    """Beam search reorders every cached key/value with index_select(0, origin)."""
    model, src, src_len = half_trained
    cached = beam_search(model, src, src_len, k, BOS, EOS, 1.0, 1.5, 5)
    reference = beam_search(Recompute(model), src, src_len, k, BOS, EOS, 1.0, 1.5, 5)
    assert cached.tokens == reference.tokens
    torch.testing.assert_close(cached.scores, reference.scores, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("variant", VARIANTS)
def test_padding_and_batch_mates_change_nothing(variant):
    model = transformer(VARIANTS[variant]).eval()
    src, src_len, tgt = toy_batch()
    alone_src, alone_len = pad_batch([[10, 11, 4]], eos=True)
    alone_tgt, _ = pad_batch([[11, 12, 5]], bos=True)
    with torch.no_grad():
        batch, batch_enc = model(src, src_len, tgt)
        alone, alone_enc = model(alone_src, alone_len, alone_tgt)
    torch.testing.assert_close(batch_enc.memory[1, :4], alone_enc.memory[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch.logits[1, :4], alone.logits[0], atol=1e-5, rtol=1e-5)


def test_sliding_window_encoder_attends_only_inside_the_window():
    model = transformer(["model.encoder.self_attention.window=local",
                         "model.encoder.self_attention.half_width=1"]).eval()
    src, src_len, tgt = toy_batch()
    _, enc = model(src, src_len, tgt, need_weights=True)
    i = torch.arange(src.size(1))
    outside = (i[:, None] - i[None, :]).abs() > 1  # (S, S)
    for name in ("enc.0.self", "enc.1.self"):
        weights = enc.attention[name]  # (B, H, S, S)
        assert torch.all(weights[..., outside] == 0)
        assert torch.all(weights[1, :, :, 4:] == 0)  # padding of the 4-token sentence
        torch.testing.assert_close(weights[1, :, :4].sum(-1), torch.ones(2, 4))


@pytest.mark.parametrize("part", ["encoder.self_attention", "decoder.cross_attention"])
def test_heads_must_divide_d_model(part):
    with pytest.raises(ValueError, match=rf"model.{part}.num_heads must divide the model size: key_dim 16 "
                                         rf"is not divisible by num_heads 3"):
        transformer([f"model.{part}.num_heads=3"])


def test_bad_positions_and_mismatched_sizes_fail_clearly():
    with pytest.raises(ValueError, match="positions must be one of"):
        transformer(["model.encoder.positions=relative"])
    # rotary is a part of the self-attention slots (nmt.attention.positional), not an embedding: the error says where
    with pytest.raises(ValueError, match=r"rotary acts inside attention: set model.\*.self_attention.position=rotary"):
        transformer(["model.encoder.positions=rotary"])
    with pytest.raises(ValueError, match="model.decoder.d_model"):
        transformer(["model.decoder.d_model=32"])


def test_gradients_reach_everything_and_embeddings_tie():
    model = transformer(["model.share_embeddings=true"])
    assert model.generator.weight is model.decoder.embed.weight
    assert model.encoder.embed.weight is model.decoder.embed.weight
    src, src_len, tgt = toy_batch()
    out, _ = model(src, src_len, tgt)
    out.logits.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_transformer_overfits_real_pairs(real_pairs):
    sv, tv, src, src_len, tgt_in, tgt_out = real_batch(real_pairs)
    model = transformer(["model.encoder.d_model=32", "model.encoder.ff_size=64", "model.decoder.ff_size=64"],
                        len(sv), len(tv))
    nll = overfit(model, src, src_len, tgt_in, tgt_out, steps=150, lr=0.005)
    assert nll < 0.05
    hyp = greedy_decode(model.eval(), src, src_len, BOS, EOS, max_len_a=2.0, max_len_b=5)
    assert hyp.tokens == [[i for i in row.tolist() if i not in (PAD, EOS)] for row in tgt_out]


def test_hybrid_builds_and_teacher_forcing_equals_stepwise():
    model = tiny_model(["model/attention=luong_general"], base=TINY_HYBRID).eval()
    assert type(model.encoder).__name__ == "TransformerEncoder"
    src, src_len, tgt = toy_batch()
    with torch.no_grad():
        enc = model.encode(src, src_len)
        assert enc.final is None
        full = model.decode(tgt, enc, model.init_state(enc))
        state, steps = model.init_state(enc), []
        for t in range(tgt.size(1)):
            out = model.decode(tgt[:, t: t + 1], enc, state)
            state = out.state
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, 1), full.logits, atol=1e-5, rtol=1e-5)
