"""The one attention contract (nmt.attention.contract), checked over every YAML in configs/model/attention;
and the checks themselves fail on modules that break it."""
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from nmt.attention import AttentionOutput, masked_softmax
from nmt.attention.contract import (ContractError, check_all, check_call, check_gradients, check_intervention,
                                    check_need_weights, check_window)
from nmt.attention.intervention import intervene
from nmt.models.build import build_attention

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "model" / "attention"
NAMES = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def build(config: Path, query_dim: int, key_dim: int) -> nn.Module:
    """The module of an attention YAML, built as build_model builds the RNN decoder's attention."""
    cfg = OmegaConf.load(config)
    assert cfg.flow in ("luong", "bahdanau") and cfg.label
    return build_attention(cfg, query_dim, key_dim)


def test_every_attention_name_has_a_config():
    assert set(NAMES) >= {"bahdanau", "luong_dot", "luong_general", "luong_concat",
                          "local_m", "local_p", "hard", "multihead"}


@pytest.mark.parametrize("dims", [(8, 8), (6, 8)], ids=["same_dims", "query_6_key_8"])
@pytest.mark.parametrize("name", NAMES)
def test_every_attention_config_keeps_the_contract(name, dims):
    if name == "luong_dot" and dims[0] != dims[1]:
        with pytest.raises(ValueError, match="query_dim == key_dim, got 6 and 8"):
            build(CONFIG_DIR / f"{name}.yaml", *dims)
        return
    check_all(build(CONFIG_DIR / f"{name}.yaml", *dims), *dims)


class Broken(nn.Module):
    """Global dot attention that can be broken one way at a time."""
    intervention = None
    window_half_width = None

    def __init__(self, flaw: str = ""):
        super().__init__()
        self.flaw, self.w = flaw, nn.Linear(8, 8, bias=False)

    def forward(self, query, keys, values, mask, *, query_positions=None, need_weights=True):
        scores = self.w(query) @ keys.transpose(1, 2)  # (B, Tq, Tk)
        weights = masked_softmax(scores, None if self.flaw == "attends_padding" else mask)
        if self.flaw == "unnormalised":
            weights = weights * 0.9
        if self.flaw != "ignores_hook":
            weights = intervene(self.intervention, weights, mask)
        if self.flaw == "no_weights" and not need_weights:
            return AttentionOutput(weights @ values, None)
        return AttentionOutput(weights @ values, weights.unsqueeze(1))  # (B, Tq, Dv), (B, 1, Tq, Tk)


def test_a_correct_module_passes_every_check():
    check_all(Broken(), 8, 8)


@pytest.mark.parametrize("flaw, check, message", [
    ("unnormalised", check_call, "sum to 1"),
    ("attends_padding", check_call, "padded key"),
    ("ignores_hook", check_intervention, "never calls self.intervention"),
    ("no_weights", check_need_weights, "4-d weights"),
])
def test_each_check_catches_its_breach(flaw, check, message):
    with pytest.raises(ContractError, match=message):
        check(Broken(flaw), *((8, 8) if check is check_need_weights else (5, 8, 8)))


def test_gradient_and_window_checks_catch_their_breach():
    frozen = Broken()
    frozen.dead = nn.Parameter(torch.ones(1))  # a parameter the output never uses
    with pytest.raises(ContractError, match="dead gets no finite non-zero gradient"):
        check_gradients(frozen, 5, 8, 8)
    liar = Broken()
    liar.window_half_width = 1  # declares a window it does not attend
    with pytest.raises(ContractError, match="outside the declared window"):
        check_window(liar, 5, 8, 8)
    undeclared = Broken()
    del Broken.window_half_width
    try:
        with pytest.raises(ContractError, match="must declare window_half_width"):
            check_window(undeclared, 5, 8, 8)
    finally:
        Broken.window_half_width = None
