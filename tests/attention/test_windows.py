"""Window masks shared by local and sliding-window attention."""
import torch

from nmt.attention import causal_mask, window_mask
from nmt.attention.windows import aligned_positions, key_offsets, lengths_mask


def test_window_mask_long_and_float_centres_match_a_loop():
    for centres in (torch.tensor([[0, 3], [6, 2]]), torch.tensor([[0.4, 3.5], [6.0, 1.2]])):
        got = window_mask(centres, 7, 2)
        for b in range(2):
            for t in range(2):
                for s in range(7):
                    assert bool(got[b, t, s]) == (abs(s - float(centres[b, t])) <= 2)


def test_window_of_half_width_zero_is_the_centre_only():
    got = window_mask(torch.tensor([[1, 4]]), 6, 0)
    assert got.sum(-1).tolist() == [[1, 1]] and got[0, 0, 1] and got[0, 1, 4]


def test_causal_mask():
    got = causal_mask(torch.tensor([[0, 1, 2], [2, 3, 4]]), 5)  # (B, Tq, Tk)
    expected = torch.arange(5)[None, None, :] <= torch.tensor([[0, 1, 2], [2, 3, 4]])[..., None]
    assert torch.equal(got, expected)
    assert got[0].tril().equal(got[0]) and got[0, 0].sum() == 1


def test_aligned_positions_put_the_last_query_on_the_last_key():
    assert aligned_positions(2, 3, 3, torch.device("cpu")).tolist() == [[0, 1, 2]] * 2
    assert aligned_positions(1, 1, 5, torch.device("cpu")).tolist() == [[4]]
    assert aligned_positions(1, 4, 2, torch.device("cpu")).tolist() == [[0, 1, 2, 3]]


def test_key_offsets_and_lengths_mask():
    assert key_offsets(torch.tensor([[1.5]]), 3).tolist() == [[[-1.5, -0.5, 0.5]]]
    assert lengths_mask(torch.tensor([2, 0]), 3).tolist() == [[True, True, False], [False] * 3]
