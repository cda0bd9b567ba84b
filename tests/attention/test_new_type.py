"""Adding an attention type is one class and one YAML, outside nmt/ (docs/architecture.md, "Adding an
attention type"): the library's contract checks pass on it, a 5-step run trains with it, and every tool works
on that run: the statistics and explorer.html of training, nmt-explain (its counterfactuals change the
output) and nmt-align. A type that skips the intervention hook fails nmt-explain loudly instead of reporting
"no change"."""
import math
import sys
import textwrap

import pytest
from helpers import compose_cfg, job_cfg, toy_cfg
from omegaconf import OmegaConf

from nmt.alignment.counterfactual import InterventionIgnored
from nmt.alignment.explain import explain_run
from nmt.alignment.pipeline import align_run
from nmt.attention.contract import ContractError, check_all
from nmt.models.build import build_attention

from nmt.runs.trained import attention_label
from helpers import train

MODULE = '''
"""A throwaway attention type: cosine similarity over a learned query projection, global window."""
import torch
from torch import nn

from nmt.attention import AttentionOutput, masked_softmax
from nmt.attention.intervention import intervene


class CosineAttention(nn.Module):
    intervention = None        # the contract's counterfactual hook
    window_half_width = None   # no local window

    def __init__(self, query_dim: int, key_dim: int, temperature: float):
        super().__init__()
        self.proj = nn.Linear(query_dim, key_dim, bias=False)
        self.temperature = temperature
        self.skip_hook = False  # True: the broken variant of the test

    def forward(self, query, keys, values, mask, *, query_positions=None, need_weights=True):
        q = nn.functional.normalize(self.proj(query), dim=-1)  # (B, Tq, Dk)
        k = nn.functional.normalize(keys, dim=-1)  # (B, Tk, Dk)
        weights = masked_softmax(q @ k.transpose(1, 2) / self.temperature, mask)  # (B, Tq, Tk)
        if not self.skip_hook:
            weights = intervene(self.intervention, weights, mask)
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


def build(yaml, skip_hook=False):
    module = build_attention(OmegaConf.load(yaml), 6, 8)
    module.skip_hook = skip_hook
    return module


def test_a_new_attention_type_passes_the_contract_checks(new_type):
    check_all(build(new_type), 6, 8)
    with pytest.raises(ContractError, match="never calls self.intervention"):
        check_all(build(new_type, skip_hook=True), 6, 8)


def test_a_new_attention_type_trains_and_every_tool_works_on_it(new_type, tmp_path):
    search = f"hydra.searchpath=[file://{new_type.parents[2]}]"
    assert attention_label(compose_cfg([search, "model/attention=cosine"]).model) == "cosine-t0.1/luong"
    run = tmp_path / "run"
    cfg = toy_cfg(run, tmp_path / "cache", [search, "model/attention=cosine", "trainer.max_steps=30",
                                            "logger.probe_sentences=1", "logger.stats_sentences=5"])
    metrics = train(cfg)
    assert metrics["steps"] == 30 and set(metrics["attention_stats"]) == {"cross"}
    assert metrics["attention_stats"]["cross"]["entropy"] >= 0
    assert (run / "attention" / "probe0_cross.png").is_file()
    assert '"cross"' in (run / "explorer.html").read_text(encoding="utf-8")

    explained = explain_run(job_cfg([f"run_dir={run}", "max_sentences=6", "leave_one_out=false",
                                         f"out={tmp_path / 'explain.md'}"], "explain"))
    assert explained["slots"]["cross"]["uniform"]["tvd"] > 0  # the hook reaches the new type
    tau = explained["slots"]["cross"]["tau_grad"]  # a mean over many tokens: exactly +-1 only for a broken tau
    assert math.isfinite(tau) and abs(tau) < 1

    src, tgt = tmp_path / "src.txt", tmp_path / "tgt.txt"
    src.write_text("a b c\nd e\n"), tgt.write_text("x y z\nu v\n")
    aligned = align_run(job_cfg([f"run_dir={run}", f"src={src}", f"tgt={tgt}", f"out={tmp_path / 'out.align'}"],
                                    "align"))
    assert aligned["selection"] == "cross"
    assert len((tmp_path / "out.align").read_text().splitlines()) == 2


def test_a_type_that_skips_the_hook_fails_nmt_explain_instead_of_reporting_no_change(new_type, tmp_path,
                                                                                        monkeypatch):
    search = f"hydra.searchpath=[file://{new_type.parents[2]}]"
    run = tmp_path / "run"
    train(toy_cfg(run, tmp_path / "cache", [search, "model/attention=cosine", "trainer.max_steps=2"]))
    import cosine_attention
    monkeypatch.setattr(cosine_attention.CosineAttention, "skip_hook", True, raising=False)
    monkeypatch.setattr(cosine_attention.CosineAttention, "__init__", _init_skipping(cosine_attention.CosineAttention))
    with pytest.raises(InterventionIgnored, match="CosineAttention attended .* never passed its weights"):
        explain_run(job_cfg([f"run_dir={run}", "max_sentences=2", "gradient=false", "leave_one_out=false",
                                 f"out={tmp_path / 'explain.md'}"], "explain"))
    assert not (tmp_path / "explain.md").exists()


def _init_skipping(cls):
    init = cls.__init__

    def skipping(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.skip_hook = True
    return skipping
