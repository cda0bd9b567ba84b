"""Both RNN decoder flows: teacher forcing equals step-by-step decoding fed the same tokens."""
import pytest
import torch
from helpers import pad_batch, tiny_model

CASES = [
    ("luong_general", ["model.decoder.input_feeding=true"]),
    ("luong_general", ["model.decoder.input_feeding=false"]),
    ("luong_dot", ["model.decoder.hidden_size=32", "model.decoder.input_feeding=false"]),
    ("luong_concat", ["model.decoder.cell=gru", "model.encoder.cell=gru"]),
    ("bahdanau", []),
    ("bahdanau", ["model.decoder.cell=gru", "model.decoder.num_layers=2", "model.encoder.num_layers=2"]),
]


@pytest.mark.parametrize("attention,extra", CASES)
def test_teacher_forcing_equals_stepwise(attention, extra):
    model = tiny_model([f"model/attention={attention}", *extra]).eval()
    src, src_len = pad_batch([[5, 6, 7, 8, 9], [10, 11, 4], [12, 13, 14, 15]], eos=True)
    tgt, _ = pad_batch([[7, 8, 9, 10], [11, 12, 5, 6], [4, 4, 13, 14]], bos=True)
    with torch.no_grad():
        enc = model.encode(src, src_len)
        full = model.decode(tgt, enc, model.init_state(enc), need_weights=True)
        state, steps, maps = model.init_state(enc), [], []
        for t in range(tgt.size(1)):
            out = model.decode(tgt[:, t: t + 1], enc, state, need_weights=True)
            state = out.state
            steps.append(out.logits)
            maps.append(out.attention["cross"])
    torch.testing.assert_close(full.logits, torch.cat(steps, 1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(full.attention["cross"], torch.cat(maps, 2), atol=1e-5, rtol=1e-5)
    assert full.attention["cross"].shape == (3, 1, tgt.size(1), src.size(1))


def test_bahdanau_attends_with_previous_state():
    """Bahdanau flow: the first step's attention depends only on s_0 (the encoder bridge), so it is
    the same whatever the first target token is; the Luong flow's first attention (h_1) is not."""
    src, src_len = pad_batch([[5, 6, 7, 8]], eos=True)
    for attention, same in (("bahdanau", True), ("luong_general", False)):
        model = tiny_model([f"model/attention={attention}"]).eval()
        enc = model.encode(src, src_len)
        a = model.decode(torch.tensor([[4]]), enc, model.init_state(enc), need_weights=True).attention["cross"]
        b = model.decode(torch.tensor([[9]]), enc, model.init_state(enc), need_weights=True).attention["cross"]
        assert torch.allclose(a, b) == same


def test_padding_gets_no_attention_and_gradients_reach_everything():
    model = tiny_model(["model/attention=luong_general"])
    src, src_len = pad_batch([[5, 6, 7, 8, 9, 10], [11, 12]], eos=True)
    tgt, _ = pad_batch([[7, 8, 9], [11, 12, 5]], bos=True)
    out, _ = model(src, src_len, tgt, need_weights=True)
    assert torch.all(out.attention["cross"][1, :, :, 3:] == 0)
    out.logits.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_tied_embeddings_need_matching_sizes():
    with pytest.raises(ValueError, match="tie_embeddings"):
        tiny_model(["model.tie_embeddings=true"])
    model = tiny_model(["model.tie_embeddings=true", "model.decoder.emb_size=24"])
    assert model.generator.weight is model.decoder.embed.weight


def test_maps_are_collected_only_when_asked_for():
    model = tiny_model(["model/attention=local_p"]).eval()
    src, src_len = pad_batch([[5, 6, 7, 8]], eos=True)
    out, _ = model(src, src_len, torch.tensor([[2, 4, 9]]))
    assert out.attention == {} and out.centres == {}
    out, _ = model(src, src_len, torch.tensor([[2, 4, 9]]), need_weights=True)
    assert out.attention["cross"].shape == (1, 1, 3, 5) and out.centres["cross"].shape == (1, 3)


def test_decoder_deeper_than_its_rnn_encoder_is_a_config_error():
    """Each decoder layer starts from one encoder layer's final state: 2 over 1 used to crash inside the LSTM."""
    with pytest.raises(ValueError, match=r"model\.decoder\.num_layers=2 is more than model\.encoder\.num_layers=1"):
        tiny_model(["model.decoder.num_layers=2", "model.encoder.num_layers=1"])
    model = tiny_model(["model.decoder.num_layers=1", "model.encoder.num_layers=2"]).eval()  # shallower is fine
    src, src_len = pad_batch([[5, 6, 7]], eos=True)
    out, _ = model(src, src_len, torch.tensor([[2, 4]]))
    assert out.logits.shape == (1, 2, 30)
