"""The compiled training path pads the source to a multiple of SOURCE_BUCKET (CUDA's memory-efficient attention
kernel needs an aligned mask stride): the padding is masked, so the outputs are those of the unpadded batch; and
the Transformer step, host lengths included, compiles without a graph break (dynamo decides the breaks before
any backend runs: the "eager" backend keeps this fast; aot_eager gives the same count in minutes)."""
import pytest
import torch
from helpers import TINY_RNN, TINY_TRANSFORMER, tiny_model

from nmt.data.batching import collate
from nmt.training.step import SOURCE_BUCKET, CompiledNet, StepParts, compile_batch, train_step

FULL = collate([[5, 6, 7], [9, 10, 11]], [[5, 6], [7, 8, 9]], [0, 1], 0, 1, 2)  # S = 3, nothing padded


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("base", [TINY_TRANSFORMER, TINY_RNN], ids=["transformer", "rnn"])
def test_the_padded_source_gives_the_unpadded_outputs(base):
    torch.manual_seed(0)
    model = tiny_model([], base=base).eval()
    padded = compile_batch(FULL, 0, model.decoder.unrolls_target)
    assert padded.src.size(1) == SOURCE_BUCKET and padded.host.padded and not FULL.host.padded
    T = FULL.tgt_in.size(1)
    out, enc = model(padded.src, padded.src_lengths, padded.tgt_in, host_lengths=padded.host)
    ref, ref_enc = model(FULL.src, FULL.src_lengths, FULL.tgt_in, host_lengths=FULL.host)
    torch.testing.assert_close(out.logits[:, :T], ref.logits)
    torch.testing.assert_close(enc.memory[:, :3], ref_enc.memory)


def test_the_compiled_transformer_step_has_no_graph_break():
    torch.manual_seed(0)
    model = tiny_model([], base=TINY_TRANSFORMER)
    parts = StepParts(CompiledNet(model, backend="eager"), model, torch.optim.SGD(model.parameters(), lr=0.01),
                      0, 0.1, 1.0, False, torch.device("cpu"), 1, compiled=True)
    torch._dynamo.utils.counters.clear()
    out = train_step(parts, [FULL], FULL.n_tgt_tokens)  # HostLengths and need_weights=False into the graph
    assert bool(out["applied"])
    assert dict(torch._dynamo.utils.counters["graph_break"]) == {}
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # it did compile
