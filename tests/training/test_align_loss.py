"""Alignment losses (nmt.training.align_loss): zero at the target, positive elsewhere, unlinked rows add nothing,
and the gradient of a Transformer head's loss reaches that head only."""
import pytest
import torch
from helpers import TINY_TRANSFORMER, pad_batch, tiny_model

from nmt.alignment.supervision import alignment_targets, piece_links
from nmt.training.align_loss import (align_loss, centre_sum, hard_align_sum, linked_rows, penultimate_cross,
                                     soft_align_sum, supervised_weights)

SRC = ["▁Ein", "▁Hund", "e", "▁läuft"]
TGT = ["▁dog", "s", "▁run", "▁fast"]
LINKS = {(1, 0), (0, 0), (2, 1)}


def targets() -> torch.Tensor:
    """(1, 5, 4): rows 0, 1 uniform over source pieces 0-2, row 2 on piece 3, rows 3 (unlinked) and 4 (eos) zero."""
    return alignment_targets([piece_links(SRC, TGT, LINKS, "x")], 5, 4)


def random_rows(shape, seed=0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).softmax(-1)


def test_soft_loss_is_zero_at_the_target_and_positive_elsewhere():
    A = targets()
    W = A.clone()
    W[0, 3:] = random_rows((2, 4))  # unlinked rows: any weights
    assert soft_align_sum(W, A) == 0 and align_loss(W, A, "soft") == 0
    for seed in range(5):
        assert align_loss(random_rows((1, 5, 4), seed), A, "soft") > 0.01
    W_local = A * 0.9  # local-p's Gaussian-scaled rows sum to less than 1
    assert align_loss(W_local, A, "soft") > 0


def test_rows_without_links_add_nothing():
    A, W = targets(), random_rows((1, 5, 4))
    other = W.clone()
    other[0, 3:] = random_rows((2, 4), seed=7)  # only the unlinked rows change
    for loss in (lambda w: soft_align_sum(w, A), lambda w: hard_align_sum(w, A),
                 lambda w: align_loss(w, A, "soft")):
        assert loss(W) == loss(other)
    assert linked_rows(A).tolist() == [[True, True, True, False, False]]
    # the mean is over the 3 linked rows, not the 5 rows
    torch.testing.assert_close(align_loss(W, A, "soft"), soft_align_sum(W, A) / 3)


def test_hard_loss_is_zero_on_a_linked_piece_and_positive_off_it():
    A = targets()
    on = torch.zeros(1, 5, 4)
    on[0, 0, 2] = on[0, 1, 0] = on[0, 2, 3] = on[0, 3, 0] = on[0, 4, 1] = 1.0  # one-hot samples
    assert hard_align_sum(on, A) == 0
    off = on.clone()
    off[0, 2] = torch.tensor([1.0, 0, 0, 0])  # row 2's link is piece 3
    assert hard_align_sum(off, A) > 10  # ~ log(1 / EPS)


def test_centre_loss_teaches_the_mean_linked_position():
    A = targets()  # mean linked positions: rows 0, 1 -> 1.0, row 2 -> 3.0
    centres = torch.tensor([[1.0, 1.0, 3.0, 0.0, 2.5]])  # rows 3, 4 unlinked: any centre
    assert centre_sum(centres, A, half_width=2) == 0
    torch.testing.assert_close(centre_sum(centres + 1.0, A, half_width=2), torch.tensor(3 * 0.25))


def test_an_unknown_kind_names_the_key():
    with pytest.raises(ValueError, match="trainer.align_loss.kind must be one of"):
        align_loss(targets(), targets(), "sparse")


def forward_maps(model):
    src, src_len = pad_batch([[5, 6, 7, 8], [9, 10]])
    tgt_in, _ = pad_batch([[11, 12, 13], [14, 15]], bos=True)
    out, _ = model(src, src_len, tgt_in, need_weights=True)
    links = [piece_links(SRC, TGT[:3], {(0, 0), (1, 0), (2, 1)}, "x"), piece_links(SRC[:2], TGT[:2], {(1, 0)}, "y")]
    return out, alignment_targets(links, tgt_in.size(1), src.size(1))  # (2, 4, 4)


def test_the_gradient_reaches_only_the_supervised_head():
    torch.manual_seed(0)
    model = tiny_model([], base=TINY_TRANSFORMER).train()  # 2 decoder layers, 2 cross heads
    out, A = forward_maps(model)
    slot = penultimate_cross(list(out.attention))
    assert slot == "dec.0.cross"
    align_loss(supervised_weights(out.attention, slot, head=0), A, "soft").backward()
    grads = {n: p.grad for n, p in model.named_parameters()}

    def moved(name, rows=slice(None)):
        g = grads[name]
        return g is not None and bool(g[rows].abs().sum() > 0)

    dh = 8  # d_model 16 / 2 heads
    cross = "decoder.layers.0.cross_attention"
    assert moved(f"{cross}.q_proj.weight", slice(0, dh)) and moved(f"{cross}.k_proj.weight", slice(0, dh))
    assert not moved(f"{cross}.q_proj.weight", slice(dh, 2 * dh))  # head 1's query rows
    assert not moved(f"{cross}.k_proj.weight", slice(dh, 2 * dh))
    assert not moved(f"{cross}.v_proj.weight") and not moved(f"{cross}.out_proj.weight")
    above = [n for n in grads if n.startswith(("decoder.layers.1.", "decoder.layers.0.ff", "decoder.final_norm",
                                               "generator"))]
    assert above and not any(moved(n) for n in above), [n for n in above if moved(n)]
    assert moved("decoder.layers.0.self_attention.q_proj.weight") and moved("encoder.layers.0.ff.net.0.weight")


def test_supervised_weights_names_the_fix():
    model = tiny_model([], base=TINY_TRANSFORMER).eval()
    out, _ = forward_maps(model)
    assert supervised_weights(out.attention, "dec.1.cross", 1).shape == (2, 4, 4)
    with pytest.raises(ValueError, match=r"heads 0..1"):
        supervised_weights(out.attention, "dec.1.cross", 2)
    with pytest.raises(ValueError, match="not decoder->encoder attention"):
        supervised_weights(out.attention, "dec.1.self", 0)
    with pytest.raises(ValueError, match=r"cross slots are \['dec.0.cross', 'dec.1.cross'\]"):
        supervised_weights(out.attention, "dec.2.cross", 0)
    with pytest.raises(ValueError, match="need_weights=True"):
        supervised_weights({}, "cross", 0)
    not_computed = {"dec.0.cross": torch.zeros(1, 2, 3, 0)}  # (B, H, T, 0): need_weights=False, fused kernels
    with pytest.raises(ValueError, match="fused path"):
        supervised_weights(not_computed, "dec.0.cross", 0)


@pytest.mark.parametrize("attention, kind", [("local_p", "soft"), ("hard", "hard"), ("luong_general", "soft")])
def test_rnn_slots_learn_from_the_loss(attention, kind):
    torch.manual_seed(0)
    model = tiny_model([f"model/attention={attention}"]).train()
    out, A = forward_maps(model)
    assert penultimate_cross(list(out.attention)) == "cross"
    loss = align_loss(supervised_weights(out.attention, "cross", 0), A, kind)
    if attention == "local_p":
        loss = loss + centre_sum(out.centres["cross"], A, half_width=10)
    loss.backward()
    attn = dict(model.attention_modules())["cross"]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in attn.parameters())
    assert model.generator.weight.grad is None or model.generator.weight.grad.abs().sum() == 0
