"""Adding an attention type is one class and one YAML, outside nmt/ (docs/architecture.md, "Adding an
attention type"): the contract checks pass on it and a 5-step training run uses it."""
import sys
import textwrap

import pytest
from helpers import compose_cfg, toy_cfg
from test_attention_contract import check_contract, check_gradients, check_need_weights

from nmt.logging import attention_label
from nmt.training.session import train

MODULE = '''
"""A throwaway attention type: cosine similarity over a learned query projection, global window."""
import torch
from torch import nn

from nmt.attention import AttentionOutput, masked_softmax


class CosineAttention(nn.Module):
    def __init__(self, query_dim: int, key_dim: int, temperature: float):
        super().__init__()
        self.proj = nn.Linear(query_dim, key_dim, bias=False)
        self.temperature = temperature

    def forward(self, query, keys, values, mask, *, query_positions=None, need_weights=True):
        q = nn.functional.normalize(self.proj(query), dim=-1)  # (B, Tq, Dk)
        k = nn.functional.normalize(keys, dim=-1)  # (B, Tk, Dk)
        weights = masked_softmax(q @ k.transpose(1, 2) / self.temperature, mask)  # (B, Tq, Tk)
        return AttentionOutput(weights @ values, weights.unsqueeze(1))  # context (B, Tq, Dv), (B, 1, Tq, Tk)
'''

YAML = '''
# A throwaway attention type for the test.
_target_: cosine_attention.CosineAttention
label: cosine-t${.temperature}/${.flow}
temperature: 0.1
flow: luong
'''


@pytest.fixture
def new_type(tmp_path, monkeypatch):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "cosine_attention.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    yaml = tmp_path / "conf" / "model" / "attention" / "cosine.yaml"
    yaml.parent.mkdir(parents=True)
    yaml.write_text(YAML)
    yield yaml
    sys.modules.pop("cosine_attention", None)


def test_a_new_attention_type_passes_the_contract_checks(new_type):
    for tq in (1, 5):
        check_contract(new_type, tq, (6, 8))
        check_gradients(new_type, tq, 6)
    check_need_weights(new_type)


def test_a_new_attention_type_trains_from_its_own_config_dir(new_type, tmp_path):
    search = f"hydra.searchpath=[file://{new_type.parents[2]}]"
    assert attention_label(compose_cfg([search, "model/attention=cosine"]).model) == "cosine-t0.1/luong"
    cfg = toy_cfg(tmp_path / "run", tmp_path / "cache", [search, "model/attention=cosine", "trainer.max_steps=5",
                                                         "logger.probe_sentences=1", "logger.stats_sentences=5"])
    metrics = train(cfg)
    assert metrics["steps"] == 5 and set(metrics["attention_stats"]) == {"cross"}
    assert (tmp_path / "run" / "attention" / "probe0_cross.png").is_file()
