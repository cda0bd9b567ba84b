"""Counterfactual weights: valid distributions over the attended keys, no change on a uniform slot,
hand-worked values, and the same hooks through every attention module of the contract."""
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from scipy.stats import kendalltau

from nmt.alignment.counterfactual import COUNTERFACTUALS, intervening, make_hook, uniform, zero_top
from nmt.alignment.explain import kendall_tau
from nmt.attention import LocalAttention
from nmt.attention.windows import lengths_mask
from nmt.models.build import build_attention

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "model" / "attention"
NAMES = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
LENGTHS = torch.tensor([6, 3, 1])


def random_weights():
    """(B=3, H=2, Tq=4, Tk=6) softmax rows over a padding mask with a window: rows sum to 1 on `allowed`."""
    allowed = lengths_mask(LENGTHS, 6)[:, None, None, :].expand(3, 2, 4, 6).clone()  # (B, H, Tq, Tk)
    allowed[0, :, 0, 4:] = False  # a window cutting one row short
    allowed[1, :, 3, :] = False   # a row with no attended key at all
    scores = torch.randn(3, 2, 4, 6)
    weights = torch.softmax(scores.masked_fill(~allowed, -1e9), -1) * allowed  # (B, H, Tq, Tk)
    return weights, allowed


@pytest.mark.parametrize("name", COUNTERFACTUALS)
def test_counterfactual_is_a_distribution_over_the_attended_keys(name):
    weights, allowed = random_weights()
    out = make_hook(name, seed=0)(weights, allowed)
    has_key = allowed.any(-1)  # (B, H, Tq)
    assert torch.allclose(out.sum(-1)[has_key], torch.ones(int(has_key.sum())))
    assert (out[~allowed] == 0).all()
    assert (out >= 0).all()


@pytest.mark.parametrize("name", COUNTERFACTUALS)
def test_counterfactual_leaves_a_uniform_slot_unchanged(name):
    _, allowed = random_weights()
    flat = uniform(torch.zeros(allowed.shape), allowed)
    assert torch.allclose(make_hook(name, seed=0)(flat, allowed), flat)


def test_hand_worked_values():
    allowed = torch.tensor([[True, True, True, False]])
    w = torch.tensor([[0.5, 0.3, 0.2, 0.0]])
    assert torch.allclose(uniform(w, allowed), torch.tensor([[1 / 3, 1 / 3, 1 / 3, 0.0]]))
    assert torch.allclose(zero_top(w, allowed), torch.tensor([[0.0, 0.6, 0.4, 0.0]]))  # 0.3/0.5, 0.2/0.5
    one_hot = torch.tensor([[0.0, 1.0, 0.0, 0.0]])  # hard attention: the others share the mass
    assert torch.allclose(zero_top(one_hot, allowed), torch.tensor([[0.5, 0.0, 0.5, 0.0]]))
    permuted = make_hook("permute", seed=3)(w.expand(50, 4), allowed.expand(50, 4))
    assert (permuted[:, 3] == 0).all()
    assert torch.equal(permuted[:, :3].sort(-1).values, torch.tensor([0.2, 0.3, 0.5]).expand(50, 3))
    assert len({tuple(r.tolist()) for r in permuted}) > 1  # really shuffled


def build(name):
    return build_attention(OmegaConf.load(CONFIG_DIR / f"{name}.yaml"), query_dim=8, key_dim=8).eval()


def returned(module, query, keys, values, mask, positions):
    """The weights the hook acts on: local_p's normalised `align`, else the output weights."""
    out = module(query, keys, values, mask, query_positions=positions)
    if isinstance(module, LocalAttention) and module.window == "local_p":
        return module.align(query, keys, mask, positions)[0].unsqueeze(1), out  # (B, 1, Tq, Tk)
    return out.weights, out


@pytest.mark.parametrize("name", NAMES)
def test_uniform_through_every_attention_module(name):
    torch.manual_seed(0)
    module = build(name)
    query, keys, values = torch.randn(3, 5, 8), torch.randn(3, 6, 8), torch.randn(3, 6, 8)
    mask, positions = lengths_mask(LENGTHS, 6)[:, None, :], torch.arange(5).expand(3, 5)  # (B, 1, Tk), (B, Tq)
    before, _ = returned(module, query, keys, values, mask, positions)
    with intervening(module, uniform):
        after, out = returned(module, query, keys, values, mask, positions)
    assert module.intervention is None  # restored
    live = before.sum(-1) > 0  # rows that attend anything (local windows may hold no key)
    on = after > 0
    assert torch.allclose(after.sum(-1)[live], torch.ones(int(live.sum())))
    spread = on.sum(-1)[live].float()
    assert torch.allclose(after.amax(-1)[live], 1 / spread)  # equal weights on every attended key
    assert (after[~mask.unsqueeze(1).expand_as(after)] == 0).all()  # zero on padding


# hard attention is never uniform; the location score (a_t = softmax(W_a h_t)) never reads the keys
@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("hard", "luong_location")])
def test_identical_keys_make_every_counterfactual_a_no_op(name):
    """With identical keys the slot already attends uniformly: the context must not move."""
    torch.manual_seed(0)
    module = build(name)
    query, values = torch.randn(3, 5, 8), torch.randn(3, 6, 8)
    keys = torch.randn(1, 1, 8).expand(3, 6, 8)
    mask, positions = lengths_mask(LENGTHS, 6)[:, None, :], torch.arange(5).expand(3, 5)
    base = module(query, keys, values, mask, query_positions=positions).context
    for cf in COUNTERFACTUALS:
        with intervening(module, make_hook(cf, seed=0)):
            out = module(query, keys, values, mask, query_positions=positions).context
        assert torch.allclose(out, base, atol=1e-6), cf


def test_kendall_tau_matches_scipy_with_ties():
    x = torch.tensor([[0.1, 0.4, 0.4, 0.0, 0.9], [1.0, 1.0, 1.0, 1.0, 1.0], [0.3, 0.1, 0.2, 7.0, -1.0]])
    y = torch.tensor([[1.0, 3.0, 2.0, 2.0, 5.0], [1.0, 2.0, 3.0, 4.0, 5.0], [0.5, 0.4, 0.1, -9.0, 9.0]])
    valid = torch.tensor([[True] * 5, [True] * 5, [True, True, True, False, False]])  # row 2: padding at the end
    tau = kendall_tau(x, y, valid)
    assert tau[0].item() == pytest.approx(kendalltau(x[0], y[0]).statistic)
    assert math.isnan(tau[1].item())  # a constant row has no ranking
    assert tau[2].item() == pytest.approx(kendalltau(x[2, :3], y[2, :3]).statistic)  # padding ignored
