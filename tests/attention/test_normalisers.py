"""Sparse normalisers (nmt.attention.normalisers): sparsemax and entmax against hand-computed rows, masks,
gradients, learned alpha, every attention type, a user's own type, and the tools that read sparse rows."""
import importlib.util
import math
from pathlib import Path

import pytest
import torch
from helpers import compose_cfg, toy_cfg, train
from torch import nn

from nmt.alignment.counterfactual import permuter, uniform, zero_top
from nmt.alignment.extract import argmax_alignments
from nmt.attention import AttentionOutput, GlobalAttention, MultiHeadAttention
from nmt.attention.contract import check_all, check_gradients
from nmt.attention.intervention import intervene
from nmt.attention.normalisers import NORMALISERS, Normaliser, normalise
from nmt.models.build import build_model
from nmt.tracking.stats import slot_stats

SPARSE = [("sparsemax", None), ("entmax15", None), ("entmax_alpha", 1.3)]


def test_sparsemax_matches_the_threshold_computed_by_hand():
    """Martins & Astudillo 2016, Eq. 4: z = (1.0, 0.8, 0.1, -1.0) sorted; k = 2 is the largest k with
    1 + k z_(k) > sum_{j<=k} z_(j) (1 + 1.6 > 1.8, but 1 + 0.3 < 1.9), so tau = (1.0 + 0.8 - 1) / 2 = 0.4
    and p = [z - tau]_+ = (0.6, 0.4, 0, 0)."""
    z = torch.tensor([[0.1, 1.0, -1.0, 0.8]])  # unsorted on purpose
    p = normalise(z, None, "sparsemax")
    torch.testing.assert_close(p, torch.tensor([[0.0, 0.6, 0.0, 0.4]]))


def test_entmax15_matches_the_row_solved_by_hand():
    """Peters et al. 2019, Eq. 10 with alpha = 1.5: p_i = [z_i / 2 - tau]_+^2, sum 1. For z = (2, 1, 0) the
    support is {0, 1}: (1 - tau)^2 + (0.5 - tau)^2 = 1 gives 1 - tau = (1 + sqrt 7) / 4, so
    p = ((4 + sqrt 7) / 8, (4 - sqrt 7) / 8, 0) (and z_2 / 2 = 0 < tau = (3 - sqrt 7) / 4)."""
    r7 = math.sqrt(7.0)
    expected = torch.tensor([[(4 + r7) / 8, (4 - r7) / 8, 0.0]], dtype=torch.float64)
    z = torch.tensor([[2.0, 1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(normalise(z, None, "entmax15"), expected)
    torch.testing.assert_close(normalise(z, None, "entmax_alpha", 1.5), expected, atol=1e-6, rtol=0)


def test_entmax_alpha_satisfies_its_fixed_point_definition():
    """p_i = [(alpha - 1) z_i - tau]_+^(1 / (alpha - 1)) with one tau for the row, and sum p = 1."""
    alpha = 1.3
    z = torch.tensor([[1.5, 0.2, -2.0, 1.1, -0.4]], dtype=torch.float64)
    p = normalise(z, None, "entmax_alpha", alpha)
    top = p.argmax()
    tau = (alpha - 1) * z[0, top] - p[0, top] ** (alpha - 1)  # solved from the largest weight
    again = ((alpha - 1) * z - tau).clamp_min(0) ** (1 / (alpha - 1))
    torch.testing.assert_close(p, again, atol=1e-6, rtol=0)
    assert abs(float(p.sum()) - 1) < 1e-6 and (p == 0).any()  # sparse: z = -2.0 is cut off


@pytest.mark.parametrize("kind, alpha", SPARSE)
def test_masked_keys_are_exactly_zero_and_do_not_move_the_others(kind, alpha):
    z = torch.randn(2, 3, 6)
    mask = torch.tensor([[True] * 6, [True, True, True, False, False, False]])[:, None, :]  # (B, 1, Tk)
    p = normalise(z, mask, kind, alpha)
    assert (p[1, :, 3:] == 0).all()
    torch.testing.assert_close(p[1, :, :3], normalise(z[1, :, :3], None, kind, alpha))
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 3))


@pytest.mark.parametrize("kind, alpha", SPARSE)
def test_a_row_with_every_key_masked_is_zero_with_a_zero_gradient(kind, alpha):
    z = torch.randn(2, 1, 4, requires_grad=True)
    mask = torch.tensor([[True, True, False, False], [False] * 4])[:, None, :]
    p = normalise(z, mask, kind, alpha)
    assert (p[1] == 0).all()
    (p * torch.randn_like(p)).sum().backward()
    assert torch.isfinite(z.grad).all() and (z.grad[1] == 0).all() and (z.grad[0, :, 2:] == 0).all()


@pytest.mark.parametrize("kind, alpha", SPARSE)
def test_gradients_reach_the_scores_of_the_support(kind, alpha):
    z = torch.tensor([[0.3, 0.2, 0.1, -3.0]], requires_grad=True)
    p = normalise(z, None, kind, alpha)
    assert p[0, 3] == 0 and (p[0, :3] > 0).all()
    p[0, 0].backward()
    assert (z.grad[0, :3].abs() > 0).all() and z.grad[0, 3] == 0  # the cut-off key gets none


def test_learned_alpha_gets_a_gradient_per_head():
    norm = Normaliser("entmax_alpha", 1.5, learn_alpha=True, num_heads=3)
    torch.testing.assert_close(norm.current_alpha(), torch.full((3,), 1.5))
    scores = torch.randn(2, 3, 4, 5)  # (B, H, Tq, Tk)
    p = norm(scores, None)
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 3, 4))
    (p * torch.randn_like(p)).sum().backward()
    assert norm.pre_alpha.grad.shape == (3,) and (norm.pre_alpha.grad.abs() > 0).all()
    head1 = normalise(scores[:, 1], None, "entmax_alpha", 1.5)  # each head uses its own alpha
    torch.testing.assert_close(p[:, 1], head1, atol=1e-5, rtol=0)


@pytest.mark.parametrize("args, message", [
    (("sparsemx", None, False), "must be one of"),
    (("entmax_alpha", None, False), "needs model.attention.alpha"),
    (("sparsemax", 1.5, False), "read by normaliser entmax_alpha only"),
    (("entmax_alpha", 1.0, False), "must be > 1"),
    (("entmax15", None, True), "learn_alpha needs normaliser=entmax_alpha"),
    (("entmax_alpha", 2.5, True), r"must lie in \(1.01, 2.0\)"),
])
def test_bad_settings_name_the_fix(args, message):
    with pytest.raises(ValueError, match=message):
        Normaliser(*args, num_heads=1)


def test_multihead_with_a_sparse_normaliser_never_takes_the_fused_softmax_path():
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 8, 2, 0.0, "global", 0, "scaled_dot", normaliser="sparsemax").eval()
    q, kv = torch.randn(2, 3, 8) * 4, torch.randn(2, 5, 8) * 4
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])[:, None, :]
    full = mha(q, kv, kv, mask)
    fast = mha(q, kv, kv, mask, need_weights=False)
    assert (full.weights == 0).any()  # a sparse map: softmax would give none
    torch.testing.assert_close(fast.context, full.context)


class UserAttention(nn.Module):
    """A type defined outside nmt/: a bilinear score and any normaliser through the public function."""
    intervention = None
    window_half_width = None

    def __init__(self, query_dim: int, key_dim: int, kind: str, scale: float = 1.0):
        super().__init__()
        self.w, self.kind, self.scale = nn.Linear(query_dim, key_dim, bias=False), kind, scale

    def forward(self, query, keys, values, mask, *, query_positions=None, need_weights=True):
        scores = self.scale * self.w(query) @ keys.transpose(1, 2)  # (B, Tq, Tk)
        weights = intervene(self.intervention, normalise(scores, mask, self.kind), mask)  # (B, Tq, Tk)
        return AttentionOutput(weights @ values, weights.unsqueeze(1))


@pytest.mark.parametrize("kind", [k for k in NORMALISERS if k != "entmax_alpha"])
def test_a_user_defined_type_can_use_any_normaliser(kind):
    torch.manual_seed(0)
    check_all(UserAttention(6, 8, kind), 6, 8)


def test_the_contract_accepts_rows_with_one_key():
    """Scores 50x larger make most sparsemax rows one-hot (no gradient to the scores there); the gradient check
    still passes because its second pass brings the scores close together."""
    torch.manual_seed(0)
    module = UserAttention(6, 8, "sparsemax", scale=50.0)
    from nmt.attention.contract import inputs
    query, keys, values, mask, _ = inputs(1, 6, 8)
    weights = module(query, keys, values, mask).weights
    assert ((weights > 0).sum(-1) == 1).all()  # every row one-hot: the case under test
    check_gradients(module, 1, 6, 8)


def test_statistics_accept_a_row_with_one_nonzero_weight():
    w = torch.tensor([[[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.5, 0.5]]])  # (H=1, Tq, Tk) sparse rows
    stats = slot_stats("cross", [w])
    assert all(math.isfinite(v) for v in stats.values()), stats
    assert stats["entropy"] == pytest.approx(math.log(2) / 3)  # one-hot rows 0, the half-half row log 2
    assert stats["eos_mass"] == pytest.approx(0.5)  # (0 + 1 + 0.5) / 3 on the last key
    assert stats["coverage_under"] == pytest.approx(1 / 3)  # key 0 gets no attention at all
    assert stats["support"] == pytest.approx(4 / 3)  # (1 + 1 + 2) / 3 keys with non-zero weight


def test_alignment_extraction_links_a_sparse_row_to_its_one_key():
    maps = {"cross": torch.tensor([[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])}  # (1, T + 1, S)
    links = argmax_alignments(maps, ["▁a", "▁b", "▁c"], ["▁x", "▁y"])
    assert links == {"cross": {(2, 0), (0, 1)}}


def test_counterfactuals_keep_a_sparse_row_a_distribution_on_its_keys():
    w = torch.tensor([[[0.0, 1.0, 0.0, 0.0]]])  # one non-zero weight among three allowed keys
    allowed = torch.tensor([[[True, True, True, False]]])
    torch.testing.assert_close(zero_top(w, allowed), torch.tensor([[[0.5, 0.0, 0.5, 0.0]]]))
    torch.testing.assert_close(uniform(w, allowed), torch.tensor([[[1 / 3, 1 / 3, 1 / 3, 0.0]]]))
    permuted = permuter(0)(w, allowed)
    assert permuted.sum() == 1 and permuted[..., 3] == 0 and sorted(permuted[0, 0, :3].tolist()) == [0, 0, 1]


def test_the_transformer_slots_take_the_normaliser_option():
    cfg = compose_cfg(["model=transformer", "trainer=cpu", "model.decoder.cross_attention.normaliser=entmax15"])
    model = build_model(cfg.model, 40, 40, 0)
    kinds = {name: m.normaliser.kind for name, m in model.named_modules() if isinstance(m, MultiHeadAttention)}
    assert kinds and all(k == ("entmax15" if "cross" in n else "softmax") for n, k in kinds.items()), kinds


@pytest.mark.parametrize("config", ["sparsemax", "entmax15", "entmax_alpha"])
def test_the_configs_build_global_attention_with_their_normaliser(config):
    cfg = compose_cfg([f"model/attention={config}", "trainer=cpu"])
    attention = build_model(cfg.model, 40, 40, 0).decoder.attention
    assert isinstance(attention, GlobalAttention) and attention.normaliser.kind == config
    assert (attention.normaliser.pre_alpha is not None) == (config == "entmax_alpha")


def test_a_sparsemax_run_trains_and_logs_statistics_and_maps(tmp_path):
    """nmt-train model/attention=sparsemax data=toy, 8 steps: the loss falls; statistics and heatmaps are written."""
    cfg = toy_cfg(tmp_path / "run", tmp_path / "cache", [
        "model/attention=sparsemax", "trainer.max_steps=8", "trainer.valid_every=8", "trainer.log_every=1",
        "trainer.num_threads=1", "logger.probe_sentences=1", "logger.stats_sentences=5", "optim.lr=0.01"])
    metrics = train(cfg)
    from helpers import tb_scalars
    loss = tb_scalars(tmp_path / "run", "train/loss")
    assert loss[max(loss)] < loss[min(loss)], loss
    stats = metrics["attention_stats"]["cross"]
    assert math.isfinite(stats["entropy"]) and math.isfinite(stats["eos_mass"])
    assert (tmp_path / "run" / "attention" / "probe0_cross.png").is_file()


def test_the_sparse_page_examples_print_what_the_page_says():
    """docs/attention/sparse.md's >>> blocks, run as tests/docs/test_attention_pages.py runs the other pages."""
    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("attention_pages", root / "tests" / "docs" / "test_attention_pages.py")
    pages = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pages)
    result = pages.run_examples(root / "docs" / "attention" / "sparse.md")
    assert result.attempted >= 8 and result.failed == 0, result
