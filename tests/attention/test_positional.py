"""Position inside attention (nmt.attention.positional) and grouped-query heads, checked against the papers'
formulas on hand-sized cases: Shaw's clipped distances, T5's bucket numbers, ALiBi's slopes, RoPE's complex
rotation; multi-head attention with each method against a loop-by-loop reference; the contract; T5's shared
table; the config groups model/position and model/heads."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from helpers import compose_cfg, tiny_model

from nmt.attention import MultiHeadAttention
from nmt.attention.contract import check_all
from nmt.attention.positional import Rotary, ShawRelative, alibi_slopes, relative_position_bucket
from nmt.models.build import build_model
from nmt.models.positions import PositionEncoding

METHODS = ("none", "shaw", "t5", "rotary", "alibi")
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "model"
TINY = ["model=transformer", "model.encoder.d_model=16", "model.encoder.ff_size=32", "model.decoder.ff_size=32",
        "model.encoder.num_layers=2", "model.decoder.num_layers=2", "model.encoder.dropout=0.0",
        "model.decoder.dropout=0.0"] + [f"model.{slot}.{key}" for slot in (
            "encoder.self_attention", "decoder.self_attention", "decoder.cross_attention")
            for key in ("num_heads=2", "dropout=0.0")]


def mha(position: str, num_heads: int = 2, num_kv_heads: int | None = None, window: str = "global",
        **settings) -> MultiHeadAttention:
    torch.manual_seed(0)
    settings = {"max_relative_distance": 2, "num_buckets": 8, "max_distance": 16, **settings}
    return MultiHeadAttention(8, 8, num_heads, 0.0, window, 0, "scaled_dot", position=position,
                              num_kv_heads=num_kv_heads, **settings).eval()


# --- each method's formula on a hand-sized case --------------------------------------------------------------

def test_shaw_clips_the_distance_j_minus_i_to_k():
    """Shaw et al. 2018, Eq. 5: a_ij = w_clip(j - i, k); with k = 1 on 3 positions the rows of w used are
    clip(j - i, 1) + 1."""
    shaw = ShawRelative(head_dim=4, max_relative_distance=1)
    idx = shaw.index(torch.arange(3)[None], torch.arange(3)[None])  # (1, 3, 3)
    assert idx[0].tolist() == [[1, 2, 2],
                               [0, 1, 2],
                               [0, 0, 1]]
    assert shaw.relative_position_keys.shape == shaw.relative_position_values.shape == (3, 4)  # 2k + 1 rows


@pytest.mark.parametrize("bidirectional, cases", [
    # j - i -> bucket, T5's defaults (32 buckets, max_distance 128). Bidirectional: 16 buckets per side, 8 exact
    # (distances 0..7), then 8 + floor(log(n / 8) / log(128 / 8) * 8): n = 20 -> 8 + floor(2.64) = 10; n >= 128
    # -> 15; n = 40 -> 8 + floor(4.64) = 12; keys after the query (j > i) add 16.
    (True, {0: 0, -1: 1, -7: 7, -8: 8, -20: 10, -40: 12, -200: 15, 1: 17, 3: 19, 40: 28, 200: 31}),
    # Causal: 32 buckets for keys at or before the query, 16 exact, n = 20 -> 16 + floor(log(20 / 16) / log(8)
    # * 16) = 17, n = 50 -> 16 + floor(8.77) = 24, n = 100 -> 30, n = 127 -> 31; keys after the query -> 0.
    (False, {0: 0, 3: 0, -3: 3, -15: 15, -16: 16, -20: 17, -50: 24, -100: 30, -127: 31, -200: 31}),
])
def test_t5_buckets_are_the_papers(bidirectional, cases):
    rel = torch.tensor(list(cases))
    assert relative_position_bucket(rel, bidirectional, 32, 128).tolist() == list(cases.values())


def test_alibi_slopes_are_the_papers():
    """Press et al. 2022, Sec. 3: H = 8 gives 1/2, 1/4, ..., 1/256; H = 6 (not a power of 2) takes the 4-head
    slopes 1/4 .. 1/256, then every other slope of the 8-head set, 1/2 and 1/8."""
    assert alibi_slopes(8) == [2.0 ** -h for h in range(1, 9)]
    assert alibi_slopes(6) == [1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8]


def test_rotary_rotates_each_pair_as_a_complex_number():
    """Su et al. 2021, Eq. 34: (x_{2i} + i x_{2i+1}) e^{i m theta_i}, theta_i = 10000^(-2i/d); d = 4: theta = 1,
    1/100."""
    x = torch.randn(1, 1, 3, 4)  # (B, H, T, dh)
    m = torch.tensor([[0, 1, 7]])
    rotated = Rotary(4, 10000.0).rotate(x, m)
    z = torch.complex(x[..., 0::2].double(), x[..., 1::2].double())  # (1, 1, 3, 2): one number per pair
    theta = torch.tensor([1.0, 0.01], dtype=torch.float64)
    expected = z * torch.exp(1j * m[0, :, None].double() * theta)  # (1, 1, 3, 2)
    torch.testing.assert_close(rotated[..., 0::2].double(), expected.real, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rotated[..., 1::2].double(), expected.imag, atol=1e-5, rtol=1e-5)


def test_rotary_dot_products_depend_on_the_distance_only():
    rope = Rotary(8, 10000.0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def dot(m: int, n: int) -> float:
        return float((rope.rotate(q, torch.tensor([[m]])) * rope.rotate(k, torch.tensor([[n]]))).sum())
    assert dot(5, 2) == pytest.approx(dot(0, -3), abs=1e-4) == pytest.approx(dot(40, 37), abs=1e-4)
    assert dot(5, 2) != pytest.approx(dot(5, 3), abs=1e-3)  # another distance, another score


# --- multi-head attention with each method against a loop-by-loop reference ---------------------------------

def reference(att: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Self-attention of x (Tq = Tk = T, positions 0..T-1) written out per sentence, head, query and key from the
    papers' equations: query head h reads key/value head h // (H / Hkv); a causal window skips keys j > i and
    takes T5's unidirectional buckets; -> context (B, T, d)."""
    B, T, _ = x.shape
    H, dh, group = att.num_heads, att.head_dim, att.num_heads // att.num_kv_heads
    q = att.q_proj(x).view(B, T, H, dh)
    k = att.k_proj(x).view(B, T, att.num_kv_heads, dh)
    v = att.v_proj(x).view(B, T, att.num_kv_heads, dh)
    pos, kind = att.position, att.position.kind
    out = torch.zeros(B, T, H, dh)
    for b in range(B):
        for h in range(H):
            for i in range(T):
                e = torch.full((T,), -math.inf)
                for j in range(T):
                    if not mask[b, j] or (att.window == "causal" and j > i):
                        continue
                    qi, kj = q[b, i, h], k[b, j, h // group]
                    if kind == "rotary":  # Eq. 34: complex rotation of every pair by its own position
                        qi, kj = rotate_pairs(qi, i), rotate_pairs(kj, j)
                    e[j] = qi @ kj / math.sqrt(dh)
                    if kind == "shaw":  # Eq. 4: q_i (k_j + a^K_ij) / sqrt(d_z)
                        e[j] += qi @ pos.relative_position_keys[min(max(j - i, -2), 2) + 2] / math.sqrt(dh)
                    if kind == "t5":
                        bucket = relative_position_bucket(torch.tensor(j - i), att.window != "causal", 8, 16)
                        e[j] += pos.relative_attention_bias.weight[bucket, h]
                    if kind == "alibi":
                        e[j] -= alibi_slopes(H)[h] * abs(i - j)
                alpha = torch.softmax(e, 0)
                for j in range(T):
                    if e[j] > -math.inf:
                        value = v[b, j, h // group]
                        if kind == "shaw":  # Eq. 3: sum_j alpha_ij (v_j + a^V_ij)
                            value = value + pos.relative_position_values[min(max(j - i, -2), 2) + 2]
                        out[b, i, h] += alpha[j] * value
    return att.out_proj(out.reshape(B, T, H * dh))


def rotate_pairs(x: torch.Tensor, m: int) -> torch.Tensor:
    z = torch.complex(x[0::2].double(), x[1::2].double())  # (dh/2,)
    theta = 10000.0 ** (-torch.arange(0, x.numel(), 2, dtype=torch.float64) / x.numel())
    r = z * torch.exp(1j * m * theta)
    return torch.stack([r.real, r.imag], -1).flatten().float()


@pytest.mark.parametrize("window", ["global", "causal"])
@pytest.mark.parametrize("heads", [(2, None), (4, 2), (4, 1)], ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize("position", METHODS)
def test_multihead_attention_with_each_method_equals_the_papers_formula(position, heads, window):
    att = mha(position, *heads, window=window)
    x = torch.randn(2, 5, 8)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])  # (B, Tk): the second sentence has 3 words
    with torch.no_grad():
        expected = reference(att, x, mask)
        for need_weights in (True, False):  # the explicit path and, where the method allows it, the fused one
            got = att(x, x, x, mask[:, None, :], need_weights=need_weights).context
            torch.testing.assert_close(got[0], expected[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(got[1, :3], expected[1, :3], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("window", ["global", "causal"])
@pytest.mark.parametrize("num_kv_heads", [None, 1])
@pytest.mark.parametrize("position", METHODS)
def test_each_method_keeps_the_attention_contract(position, num_kv_heads, window):
    check_all(mha(position, 2, num_kv_heads, window), 8, 8)


def test_the_cache_of_grouped_heads_is_smaller_by_num_heads_over_num_kv_heads():
    x = torch.randn(3, 6, 8)
    sizes = {kv: mha("none", 4, kv).project_kv(x, x) for kv in (None, 2, 1)}
    assert [tuple(k.shape) for k, _ in sizes.values()] == [(3, 4, 6, 2), (3, 2, 6, 2), (3, 1, 6, 2)]
    assert [v.numel() for _, v in sizes.values()] == [144, 72, 36]


def test_rotary_keys_are_cached_rotated_and_extend_kv_continues_the_positions():
    att = mha("rotary")
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        full_k, _ = att.project_kv(x, x)  # positions 0..4
        k, v = att.project_kv(x[:, :2], x[:, :2])
        k, v = att.extend_kv((k, v), x[:, 2:], x[:, 2:])  # no positions given: 2..4 after a cache of 2
        plain = att._split(att.k_proj(x), 2)  # (B, Hkv, T, dh) not rotated
    torch.testing.assert_close(k, full_k)
    torch.testing.assert_close(full_k[:, :, 0], plain[:, :, 0])  # position 0: angle 0
    assert not torch.allclose(full_k[:, :, 1:], plain[:, :, 1:], atol=1e-3)


# --- in the Transformer -------------------------------------------------------------------------------------

@pytest.mark.parametrize("position", METHODS)
def test_the_encoder_sees_word_order_through_each_method_alone(position):
    """With no input positions an encoder is blind to order: a permuted source gives the permuted memory. Each
    method inside attention alone breaks that (encoder.positions=none everywhere here)."""
    model = tiny_model(["model.encoder.positions=none", f"model.encoder.self_attention.position={position}"],
                       base=TINY).eval()
    src = torch.tensor([[5, 6, 7, 8, 9]])
    perm = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        memory = model.encode(src, torch.tensor([5])).memory  # (1, 5, D)
        permuted = model.encode(src[:, perm], torch.tensor([5])).memory
    blind = torch.allclose(permuted, memory[:, perm], atol=1e-5)
    assert blind == (position == "none")


def test_t5_shares_one_bias_table_per_stack_and_lists_it_once():
    shared = tiny_model(["+model/position=t5"], base=TINY)
    separate = tiny_model(["+model/position=t5", "model.encoder.self_attention.share_position_bias=false",
                           "model.decoder.self_attention.share_position_bias=false"], base=TINY)
    tables = [[layer.self_attention.position.relative_attention_bias.weight for layer in part.layers]
              for part in (shared.encoder, shared.decoder)]
    assert all(t[1] is t[0] for t in tables) and tables[0][0] is not tables[1][0]  # per stack, not per model
    assert sum(p is tables[0][0] for p in shared.parameters()) == 1
    per_table = 32 * 2  # num_buckets x heads
    assert separate.num_parameters() - shared.num_parameters() == 2 * per_table  # layer 1 of each stack
    src, tgt = torch.tensor([[5, 6, 7]]), torch.tensor([[2, 8, 9]])
    out, _ = shared(src, torch.tensor([3]), tgt)
    out.logits.sum().backward()
    assert tables[0][0].grad is not None and tables[0][0].grad.abs().sum() > 0


@pytest.mark.parametrize("override, message", [
    ("model.decoder.cross_attention.position=alibi", "model.decoder.cross_attention.position=alibi: positions do "
                                                     "not apply across languages"),
    ("model.encoder.self_attention.position=sinusoidal", r"model.encoder.self_attention.position must be one of "
                                                          r"\('none', 'shaw', 't5', 'rotary', 'alibi'\)"),
    ("model.decoder.self_attention.num_kv_heads=3", r"model.decoder.self_attention.num_kv_heads must divide "
                                                     r"num_heads \(2\)"),
    ("model.decoder.cross_attention.num_kv_heads=0", "model.decoder.cross_attention.num_kv_heads must divide"),
    ("model.encoder.self_attention.max_relative_distance=0", "model.encoder.self_attention.max_relative_distance "
                                                              "must be >= 1"),
    ("model.encoder.self_attention.num_buckets=2", "position=t5 needs model.encoder.self_attention.num_buckets >= 4"),
    ("model.encoder.self_attention.score=general", "position=rotary needs model.encoder.self_attention.score "
                                                   "scaled_dot or dot"),
    ("model.encoder.positions=rotary", r"rotary acts inside attention: set model.\*.self_attention.position=rotary"),
])
def test_bad_position_and_head_settings_fail_naming_the_key(override, message):
    method = {"max_relative_distance": "shaw", "num_buckets": "t5", "score": "rotary"}
    extra = [f"+model/position={m}" for key, m in method.items() if f".{key}=" in override]
    with pytest.raises(ValueError, match=message):
        tiny_model([*extra, override], base=TINY)


def test_positions_none_adds_nothing():
    pe = PositionEncoding("none", 6, 10)
    out = pe(torch.arange(4).expand(2, 4), 3)
    assert out.shape == (2, 4, 6) and not out.any() and list(pe.parameters()) == []


@pytest.mark.parametrize("group, name", [(g, p.stem) for g in ("position", "heads")
                                         for p in sorted((CONFIGS / g).glob("*.yaml"))])
def test_every_position_and_heads_config_composes_with_the_self_experiment(group, name):
    cfg = compose_cfg(["+experiment=self", f"+model/{group}={name}", "trainer=cpu"])
    model = build_model(cfg.model, 60, 60, 0)
    enc, dec = model.encoder.layers[0].self_attention, model.decoder.layers[0]
    if group == "position":
        assert enc.position.kind == dec.self_attention.position.kind == name
        assert dec.cross_attention.position.kind == "none"
        if name == "t5":  # buckets both ways in the encoder, one way in the causal decoder slot
            assert enc.position.bidirectional and not dec.self_attention.position.bidirectional
        assert cfg.model.encoder.positions == cfg.model.decoder.positions == ("sinusoidal" if name == "none" else "none")
    else:
        assert {enc.num_kv_heads, dec.self_attention.num_kv_heads, dec.cross_attention.num_kv_heads} == \
            {{"gqa": 2, "mqa": 1}[name]}
