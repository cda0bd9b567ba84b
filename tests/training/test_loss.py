"""label_smoothed_loss against PyTorch's own label-smoothed cross-entropy (an independent implementation)."""
import pytest
import torch
import torch.nn.functional as F

from nmt.training.loss import label_smoothed_loss

PAD = 0


def batch(V: int = 7):
    logits = torch.randn(3, 5, V) * 3  # (B, T, V)
    target = torch.randint(1, V, (3, 5))  # (B, T)
    target[0, 3:] = PAD
    target[2, 1:] = PAD
    return logits, target


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_equals_torch_cross_entropy_with_label_smoothing(eps):
    logits, target = batch()
    loss, nll = label_smoothed_loss(logits, target, PAD, eps)
    flat_logits, flat_target = logits.view(-1, logits.size(-1)), target.view(-1)
    expected = F.cross_entropy(flat_logits, flat_target, label_smoothing=eps, ignore_index=PAD, reduction="sum")
    expected_nll = F.cross_entropy(flat_logits, flat_target, ignore_index=PAD, reduction="sum")
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(nll, expected_nll)


def test_padding_contributes_nothing_to_value_or_gradient():
    logits, target = batch()
    logits.requires_grad_(True)
    loss, _ = label_smoothed_loss(logits, target, PAD, 0.1)
    loss.backward()
    assert (logits.grad[target == PAD] == 0).all()
    assert (logits.grad[target != PAD].abs().sum(-1) > 0).all()
