"""The one attention contract, checked over every YAML in configs/model/attention.

The check_* functions take a YAML path, so a new attention type (tests/attention/test_new_type.py:
one class and one YAML outside nmt/) runs the same checks.
"""
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from nmt.attention import LocalAttention, MultiHeadAttention
from nmt.attention.windows import lengths_mask
from nmt.models.build import build_attention

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "model" / "attention"
NAMES = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
B, TK = 3, 7
LENGTHS = torch.tensor([7, 4, 1])


def build(config: Path, query_dim: int, key_dim: int) -> torch.nn.Module:
    """The module of an attention YAML, built as build_model builds the RNN decoder's attention."""
    cfg = OmegaConf.load(config)
    assert cfg.flow in ("luong", "bahdanau") and cfg.label
    return build_attention(cfg, query_dim, key_dim)


def inputs(tq: int, dq: int, dk: int):
    query = torch.randn(B, tq, dq)
    keys = torch.randn(B, TK, dk)
    values = torch.randn(B, TK, dk)
    mask = lengths_mask(LENGTHS, TK)[:, None, :]  # (B, 1, Tk)
    positions = torch.arange(tq).expand(B, tq) + torch.tensor([[0], [2], [4]])  # (B, Tq)
    return query, keys, values, mask, positions


def normalised(module, query, keys, mask, positions, out):
    """Weights whose rows must sum to 1: local_p's pre-Gaussian alignment, else the output."""
    if isinstance(module, LocalAttention) and module.window == "local_p":
        return module.align(query, keys, mask, positions)[0].unsqueeze(1)  # (B, 1, Tq, Tk)
    return out.weights


def test_every_attention_name_has_a_config():
    assert set(NAMES) >= {"bahdanau", "luong_dot", "luong_general", "luong_concat",
                          "local_m", "local_p", "hard", "multihead"}


@pytest.mark.parametrize("dims", [(8, 8), (6, 8)], ids=["same_dims", "query_6_key_8"])
@pytest.mark.parametrize("tq", [1, 5])
@pytest.mark.parametrize("name", NAMES)
def test_contract(name, tq, dims):
    if name == "luong_dot" and dims[0] != dims[1]:
        with pytest.raises(ValueError, match="query_dim == key_dim, got 6 and 8"):
            build(CONFIG_DIR / f"{name}.yaml", *dims)
        return
    check_contract(CONFIG_DIR / f"{name}.yaml", tq, dims)


def check_contract(config: Path, tq: int, dims: tuple[int, int]) -> None:
    """Shapes, finite values, rows summing to 1 over attended keys, exact zeros on padding."""
    dq, dk = dims
    module = build(config, dq, dk).eval()
    query, keys, values, mask, positions = inputs(tq, dq, dk)
    out = module(query, keys, values, mask, query_positions=positions)
    heads = module.num_heads if isinstance(module, MultiHeadAttention) else 1
    assert out.context.shape == (B, tq, dk)
    assert out.weights.shape == (B, heads, tq, TK)
    assert torch.isfinite(out.context).all() and torch.isfinite(out.weights).all()
    norm = normalised(module, query, keys, mask, positions, out)
    torch.testing.assert_close(norm.sum(-1), torch.ones(B, heads, tq))
    padding = ~mask[:, None].expand_as(out.weights)  # (B, H, Tq, Tk)
    assert (out.weights[padding] == 0).all() and (norm[padding] == 0).all()
    assert (out.weights >= 0).all() and (out.weights <= norm + 1e-6).all()


@pytest.mark.parametrize("tq", [1, 5])
@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name, tq):
    check_gradients(CONFIG_DIR / f"{name}.yaml", tq, 8 if name == "luong_dot" else 6)


def check_gradients(config: Path, tq: int, dq: int) -> None:
    """Every parameter gets a finite, non-zero gradient; the query's gradient is finite."""
    module = build(config, dq, 8).train()
    query, keys, values, mask, positions = inputs(tq, dq, 8)
    query.requires_grad_(True)
    out = module(query, keys, values, mask, query_positions=positions)
    (out.context * torch.randn_like(out.context)).sum().backward()
    for pname, param in module.named_parameters():
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all(), pname
        assert param.grad.abs().sum() > 0, pname
    assert torch.isfinite(query.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_need_weights_false_never_returns_none(name):
    check_need_weights(CONFIG_DIR / f"{name}.yaml")


def check_need_weights(config: Path) -> None:
    """need_weights=False still returns 4-d weights (never None) and the same context."""
    module = build(config, 8, 8).eval()
    query, keys, values, mask, positions = inputs(2, 8, 8)
    out = module(query, keys, values, mask, query_positions=positions, need_weights=False)
    full = module(query, keys, values, mask, query_positions=positions)
    assert out.weights is not None and out.weights.dim() == 4
    torch.testing.assert_close(out.context, full.context, atol=1e-5, rtol=1e-5)
