"""Source lengths kept on the host (Batch.host): built by the collator, left on the host by Batch.to (the
prefetcher's copy to the device), packed by the RNN encoder as they are (no device->host copy of the device
lengths), and telling a Transformer encoder when nothing is padded."""
from __future__ import annotations

import torch
from helpers import TINY_RNN, TINY_TRANSFORMER, tiny_model

from nmt.common import HostLengths
from nmt.data.batching import collate

PADDED = collate([[5, 6, 7, 8], [9, 10]], [[5, 6], [7, 8, 9]], [0, 1], 0, 1, 2)
FULL = collate([[5, 6, 7], [9, 10, 11]], [[5, 6], [7, 8, 9]], [0, 1], 0, 1, 2)


def test_the_collator_builds_host_lengths_and_whether_the_source_is_padded():
    assert PADDED.host.lengths.tolist() == PADDED.src_lengths.tolist() == [4, 2]
    assert PADDED.host.lengths.device.type == "cpu"
    assert PADDED.host.padded and not FULL.host.padded


def test_batch_to_moves_the_tensors_and_leaves_the_host_lengths_on_the_host():
    moved = PADDED.to("meta")
    assert moved.src.device.type == moved.src_lengths.device.type == "meta"
    assert moved.host is PADDED.host and moved.host.lengths.device.type == "cpu"


def test_the_rnn_encoder_packs_with_the_host_lengths_as_they_are(monkeypatch):
    import nmt.models.rnn as rnn
    seen = []

    def spy(x, lengths, **kwargs):
        seen.append(lengths)
        return pack(x, lengths, **kwargs)

    pack = rnn.pack_padded_sequence
    monkeypatch.setattr(rnn, "pack_padded_sequence", spy)
    model = tiny_model([], base=TINY_RNN)
    with_host = model.encode(PADDED.src, PADDED.src_lengths, host_lengths=PADDED.host)
    without = model.encode(PADDED.src, PADDED.src_lengths)
    assert seen[0] is PADDED.host.lengths  # the collator's host tensor itself: nothing copied from the device
    assert seen[1] is PADDED.src_lengths
    assert torch.equal(with_host.memory, without.memory)


def test_a_transformer_encoder_attends_without_a_mask_only_when_nothing_is_padded(monkeypatch):
    import nmt.attention.multihead as mh
    masks = []
    sdpa = mh.F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kwargs):
        masks.append(attn_mask is not None)
        return sdpa(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(mh.F, "scaled_dot_product_attention", spy)
    model = tiny_model([], base=TINY_TRANSFORMER).eval()
    unmasked = model.encode(FULL.src, FULL.src_lengths, host_lengths=FULL.host)
    n = len(masks)
    masked = model.encode(FULL.src, FULL.src_lengths, host_lengths=HostLengths(FULL.host.lengths, True))
    assert masks[:n] == [False] * n and masks[n:] == [True] * n  # one call per encoder layer each
    assert not unmasked.padded and masked.padded
    torch.testing.assert_close(unmasked.memory, masked.memory)  # an all-True mask changes nothing
    masks.clear()
    model.encode(PADDED.src, PADDED.src_lengths, host_lengths=PADDED.host)
    assert masks and all(masks)
