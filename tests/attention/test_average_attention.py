"""Average attention network (Zhang et al. 2018): Eq. 1-4 by hand, the contract, an O(d) running-sum cache
that decodes exactly as the full pass, the intervention hook, and a tiny Transformer with it that learns."""
import math

import pytest
import torch
from helpers import overfit, real_batch, tiny_model

from nmt.attention import AverageAttention
from nmt.attention.contract import check_all

Y = torch.tensor([[[1.0, 2.0], [3.0, 0.0], [-1.0, 4.0]]])  # (B=1, T=3, D=2): y_1, y_2, y_3
TRIANGLE = torch.tensor([[1, 0, 0], [1 / 2, 1 / 2, 0], [1 / 3, 1 / 3, 1 / 3]])  # Eq. 1's 1/j on k <= j
F_GATE = 0.75  # sigmoid(log 3)


def hand_set(module: AverageAttention) -> AverageAttention:
    """FFN(x) = relu(x) (W_1 = W_2 = I, no bias); gates W = 0, input gate bias 0 (i = 1/2), forget gate bias
    log 3 (f = 3/4): then h~_j = y_j / 2 + 3/4 relu(g_j)."""
    with torch.no_grad():
        for layer in (module.ffn[0], module.ffn[3]):
            layer.weight.copy_(torch.eye(2))
            layer.bias.zero_()
        module.gates.weight.zero_()
        module.gates.bias.copy_(torch.tensor([0.0, 0.0, math.log(3), math.log(3)]))
    return module.eval()


def expected() -> torch.Tensor:
    """Eq. 1-4 by hand: averages [1, 2], [2, 1], [1, 2] (all positive, so relu keeps them)."""
    averages = torch.tensor([[[1.0, 2.0], [2.0, 1.0], [1.0, 2.0]]])  # (1, 3, 2)
    return 0.5 * Y + F_GATE * averages  # [[1.25, 2.5], [3.0, 0.75], [0.25, 3.5]]


def test_eq_1_to_4_by_hand_on_three_steps():
    aan = hand_set(AverageAttention(2, 2, ff_size=2, dropout=0.0))
    full = aan(Y, Y, Y, None)
    torch.testing.assert_close(full.weights[0, 0], TRIANGLE)
    torch.testing.assert_close(full.context, torch.tensor([[[1.25, 2.5], [3.0, 0.75], [0.25, 3.5]]]))
    torch.testing.assert_close(full.context, expected())
    cache, steps, rows = aan.project_kv(Y[:, :0], Y[:, :0]), [], []  # one step at a time: the running sum
    for j in range(3):
        cache = aan.extend_kv(cache, Y[:, j: j + 1], Y[:, j: j + 1])
        out = aan.attend(Y[:, j: j + 1], *cache, None)
        steps.append(out.context)
        rows.append(out.weights[0, 0, 0])
    torch.testing.assert_close(torch.cat(steps, 1), expected())
    torch.testing.assert_close(rows[2], TRIANGLE[2])
    torch.testing.assert_close(rows[1], TRIANGLE[1, :2])


def test_keeps_the_contract():
    check_all(AverageAttention(8, 8, ff_size=16, dropout=0.1), 8, 8)


def test_a_padding_mask_averages_the_attended_keys_only():
    aan = hand_set(AverageAttention(2, 2, ff_size=2, dropout=0.0))
    mask = torch.tensor([[[True, False, True]]])  # (1, 1, 3): the second key removed
    out = aan(Y, Y, Y, mask)
    torch.testing.assert_close(out.weights[0, 0, 2], torch.tensor([0.5, 0.0, 0.5]))
    torch.testing.assert_close(out.context[0, 2], 0.5 * Y[0, 2] + F_GATE * (Y[0, 0] + Y[0, 2]) / 2)


def cache_bytes(cache) -> int:
    return sum(t.numel() * t.element_size() for t in cache)


def test_the_running_sum_cache_is_O_d_and_equals_the_full_pass():
    torch.manual_seed(0)
    aan, B, D, T = AverageAttention(8, 8, ff_size=16, dropout=0.0).eval(), 3, 8, 12
    y = torch.randn(B, T, D)
    full = aan(y, y, y, None)
    cache, sizes, steps = aan.project_kv(y[:, :0], y[:, :0]), [], []
    for j in range(T):
        cache = aan.extend_kv(cache, y[:, j: j + 1], y[:, j: j + 1])
        steps.append(aan.attend(y[:, j: j + 1], *cache, None, need_weights=j == T - 1))
        sizes.append(cache_bytes(cache))
    assert sizes == [B * D * 4] * T  # one float32 sum per sentence, whatever t
    assert cache[0].size(2) == T  # the count is k's dim 2
    torch.testing.assert_close(torch.cat([s.context for s in steps], 1), full.context, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(steps[-1].weights, full.weights[:, :, -1:])
    chunked = aan.extend_kv(aan.project_kv(y[:, :5], y[:, :5]), y[:, 5:], y[:, 5:])  # T > 1 continuation
    torch.testing.assert_close(aan.attend(y[:, 5:], *chunked, None).context, full.context[:, 5:],
                               atol=1e-5, rtol=1e-5)


def first_key(weights, allowed):
    """A hook that puts every row's weight on its first allowed key."""
    first = allowed & (allowed.cumsum(-1) == 1)
    return first.to(weights.dtype)


def test_an_intervention_takes_the_explicit_path_and_changes_the_context():
    torch.manual_seed(0)
    aan, y = AverageAttention(8, 8, ff_size=16, dropout=0.0).eval(), torch.randn(2, 5, 8)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()[None]  # (1, 5, 5): the decoder's mask
    plain = aan(y, y, y, causal).context
    aan.intervention = first_key
    try:
        hooked = aan(y, y, y, causal).context
        cache, steps = aan.project_kv(y[:, :0], y[:, :0]), []
        for j in range(5):
            cache = aan.extend_kv(cache, y[:, j: j + 1], y[:, j: j + 1])
            steps.append(aan.attend(y[:, j: j + 1], *cache, causal[:, j: j + 1, : j + 1]).context)
        assert cache[1].shape == (2, 1, 5, 8)  # the explicit cache: every input
    finally:
        del aan.intervention
    assert not torch.allclose(hooked[:, 1:], plain[:, 1:])
    torch.testing.assert_close(hooked[:, 0], plain[:, 0])  # one key: nothing to move
    torch.testing.assert_close(torch.cat(steps, 1), hooked, atol=1e-5, rtol=1e-5)


def test_an_intervention_set_mid_decoding_and_bad_sizes_are_refused():
    aan, y = AverageAttention(4, 4, ff_size=8, dropout=0.0), torch.randn(1, 3, 4)
    cache = aan.extend_kv(aan.project_kv(y[:, :0], y[:, :0]), y[:, :2], y[:, :2])
    aan.intervention = first_key
    try:
        with pytest.raises(ValueError, match="set it before model.init_state"):
            aan.extend_kv(cache, y[:, 2:], y[:, 2:])
    finally:
        del aan.intervention
    with pytest.raises(ValueError, match="got 1 queries"):
        aan.attend(y[:, :1], *cache, None)
    with pytest.raises(ValueError, match="query_dim must equal key_dim, got 6 and 4"):
        AverageAttention(6, 4, ff_size=8, dropout=0.0)
    with pytest.raises(ValueError, match="ff_size must be >= 1"):
        AverageAttention(4, 4, ff_size=0, dropout=0.0)


AAN_TRANSFORMER = ["model=transformer", "model.encoder.d_model=16", "model.encoder.ff_size=32",
                   "model.decoder.ff_size=32", "model.encoder.num_layers=1", "model.decoder.num_layers=1",
                   "model.encoder.dropout=0.0", "model.decoder.dropout=0.0",
                   "model.encoder.self_attention.num_heads=2", "model.decoder.cross_attention.num_heads=2",
                   "model/slot@model.decoder.self_attention=aan"]


def test_a_tiny_transformer_with_the_aan_decoder_overfits_one_batch(real_pairs):
    """Eight real pairs, 76 target words: chance is ln 76 = 4.3 nats a token; 60 full-batch steps reach ~0.2."""
    torch.manual_seed(0)
    sv, tv, src, src_len, tgt_in, tgt_out = real_batch(real_pairs)
    model = tiny_model([], len(sv), len(tv), base=AAN_TRANSFORMER)
    assert isinstance(model.decoder.layers[0].self_attention, AverageAttention)
    assert overfit(model, src, src_len, tgt_in, tgt_out, steps=60, lr=0.01) < 0.5


def test_every_tool_reads_an_aan_run(tmp_path):
    """A toy run with the AAN decoder: its dec.0.self map in the statistics and the explorer, nmt-explain's
    counterfactuals (none changes a uniform slot: TVD 0, no InterventionIgnored) and nmt-align on the cross slot."""
    from helpers import compose_cfg, job_cfg, train

    from nmt.alignment.explain import explain_run
    from nmt.alignment.pipeline import align_run
    run = tmp_path / "run"
    cfg = compose_cfg(["data=toy", "data.corpus.size=300", "data.corpus.eval_size=20", "trainer=cpu", "+experiment=aan",
                       *[o for o in AAN_TRANSFORMER if o.startswith(("model.encoder", "model.decoder.cross"))],
                       "model.decoder.num_layers=1", "model.decoder.ff_size=32", "trainer.max_tokens=400",
                       "trainer.max_steps=10", "trainer.valid_every=1000", "decode.beam_size=2",
                       "logger.progress_bar=false", "logger.probe_sentences=1", "logger.stats_sentences=5",
                       f"run_dir={run}", f"data.cache_dir={tmp_path / 'cache'}"])
    metrics = train(cfg)
    assert set(metrics["attention_stats"]) == {"enc.0.self", "dec.0.self", "dec.0.cross"}
    assert metrics["attention_stats"]["dec.0.self"]["entropy"] > 0
    assert '"dec.0.self"' in (run / "explorer.html").read_text(encoding="utf-8")
    explained = explain_run(job_cfg([f"run_dir={run}", "max_sentences=4", "leave_one_out=false",
                                     f"out={tmp_path / 'explain.md'}"], "explain"))
    assert explained["slots"]["dec.0.self"]["uniform"]["tvd"] == pytest.approx(0.0, abs=1e-6)
    assert explained["slots"]["dec.0.cross"]["uniform"]["tvd"] > 0
    src, tgt = tmp_path / "src.txt", tmp_path / "tgt.txt"
    src.write_text("w1 w2 w3\nw4 w5\n"), tgt.write_text("w3 w2 w1\nw5 w4\n")
    aligned = align_run(job_cfg([f"run_dir={run}", f"src={src}", f"tgt={tgt}", f"out={tmp_path / 'out.align'}"],
                                "align"))
    assert aligned["selection"] == "dec.0.cross:mean" and len((tmp_path / "out.align").read_text().splitlines()) == 2
