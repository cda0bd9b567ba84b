"""Attention statistics on hand-made weight matrices (definitions: docs/attention_stats.md)."""
import math

import pytest
import torch

from nmt.tracking.stats import attention_stats, average_ranks, monotonicity, slot_stats, spearman


def test_diagonal_is_perfectly_monotonic_with_zero_entropy():
    eye = torch.eye(5)[None]  # (H=1, T=5, S=5)
    stats = slot_stats("cross", [eye])
    assert stats["monotonicity"] == pytest.approx(1.0)
    assert stats["entropy"] == pytest.approx(0.0, abs=1e-9)
    assert stats["eos_mass"] == pytest.approx(1 / 5)  # only the last query attends the final source token


def test_reversal_scores_minus_one_and_a_fixed_key_scores_zero():
    assert monotonicity(torch.eye(6).flip(-1)[None]) == [pytest.approx(-1.0)]
    fixed = torch.zeros(1, 4, 6)
    fixed[..., 2] = 1.0
    assert monotonicity(fixed) == [0.0]


def test_uniform_weights_have_maximal_entropy_log_tk():
    tk = 7
    uniform = torch.full((2, 4, tk), 1 / tk)
    stats = slot_stats("dec.0.cross", [uniform])
    assert stats["entropy"] == pytest.approx(math.log(tk))
    assert stats["eos_mass"] == pytest.approx(1 / tk)
    peaked = torch.softmax(torch.randn(3, 5, tk) * 3, dim=-1)
    assert slot_stats("cross", [peaked])["entropy"] < math.log(tk)


def test_centre_error_hand_computed():
    w = torch.tensor([[[0.7, 0.2, 0.1, 0.0],    # argmax 0, p_t 0.5 -> 0.5
                       [0.0, 0.1, 0.6, 0.3],    # argmax 2, p_t 2.0 -> 0
                       [0.0, 0.0, 0.2, 0.5]]])  # argmax 3 (row sums to 0.7: local-p), p_t 1.0 -> 2
    stats = slot_stats("cross", [w], [torch.tensor([0.5, 2.0, 1.0])])
    assert stats["centre_error"] == pytest.approx((0.5 + 0.0 + 2.0) / 3)
    assert stats["monotonicity"] == pytest.approx(1.0)


def test_rows_are_renormalised_and_empty_rows_left_out():
    w = torch.tensor([[[0.25, 0.25, 0.0],    # local-p row summing to 0.5: entropy log 2 after renormalising
                       [0.0, 0.0, 0.0]]])    # a local-m query past the source end: no mass, left out
    stats = slot_stats("cross", [w])
    assert stats["entropy"] == pytest.approx(math.log(2))
    assert stats["eos_mass"] == pytest.approx(0.0)
    assert math.isnan(stats["monotonicity"])  # one live row: undefined


def test_spearman_uses_average_ranks_for_ties():
    assert average_ranks(torch.tensor([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    rho = spearman(torch.arange(4.0), torch.tensor([0.0, 0.0, 1.0, 1.0]))
    assert rho == pytest.approx(4 / math.sqrt(20))
    assert math.isnan(spearman(torch.tensor([1.0]), torch.tensor([2.0])))


def test_attention_stats_pools_sentences_per_slot():
    s1 = ({"cross": torch.eye(3)[None], "dec.0.self": torch.eye(3)[None]}, {})
    s2 = ({"cross": torch.full((1, 2, 4), 0.25), "dec.0.self": torch.tensor([[[1.0, 0.0], [0.5, 0.5]]])}, {})
    stats = attention_stats([s1, s2])
    assert set(stats) == {"cross", "dec.0.self"}
    assert "eos_mass" not in stats["dec.0.self"]  # decoder self-attention keys are not the source
    # entropy: mean over the 5 cross rows (3 one-hot, 2 uniform over 4)
    assert stats["cross"]["entropy"] == pytest.approx(2 * math.log(4) / 5)
    # monotonicity: mean over (sentence, head): 1 (diagonal) and 0 (uniform: argmax constant)
    assert stats["cross"]["monotonicity"] == pytest.approx(0.5)
    assert stats["dec.0.self"]["entropy"] == pytest.approx(math.log(2) / 5)


def test_coverage_under_and_over_attention_hand_computed():
    # 4 output rows over 3 source tokens: token 0 gets 0.9 + 0.8 + 0.7 + 0.1 = 2.5 (> 2: over-attended),
    # token 1 gets 0.1 + 0.2 + 0.3 + 0.9 = 1.5, token 2 gets 0 (< 0.5: under-attended, never translated)
    w = torch.tensor([[[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.7, 0.3, 0.0], [0.1, 0.9, 0.0]]])
    stats = slot_stats("cross", [w])
    assert stats["coverage_under"] == pytest.approx(1 / 3)
    assert stats["coverage_over"] == pytest.approx(1 / 3)
    assert "distance" not in stats
    # a 0.6-mass local-p row counts as renormalised (0.5, 0.5); an empty row counts nothing
    w = torch.tensor([[[0.3, 0.3], [0.0, 0.0]]])
    assert slot_stats("cross", [w])["coverage_under"] == pytest.approx(0.0)  # both get 0.5, not below


def test_mean_attention_distance_per_head_hand_computed():
    # head 0 attends itself (distance 0); head 1, causal, attends the first token: rows t = 0, 1, 2 -> 0, 1, 2
    diag = torch.eye(3)
    first = torch.zeros(3, 3)
    first[:, 0] = 1.0
    half = torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5]])  # distances 0, 0.5, 1
    stats = slot_stats("dec.0.self", [torch.stack([diag, first]), torch.stack([half, half])])
    assert stats["distance_head0"] == pytest.approx((0.0 + 0.5) / 2)   # sentence means 0 and 0.5
    assert stats["distance_head1"] == pytest.approx((1.0 + 0.5) / 2)   # sentence means 1 and 0.5
    assert stats["distance"] == pytest.approx((0.0 + 1.0 + 0.5 + 0.5) / 4)
    assert "coverage_under" not in stats and "distance" not in slot_stats("cross", [diag[None]])
