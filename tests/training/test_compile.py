"""torch.compile of the training step (issue: GPU-ready, proven on CPU, section 2; docs/benchmark.md "Compile").

The Transformer's forward + loss is one graph (no graph break); the RNN's only break is its packed encoder
(nmt.models.rnn._packed_rnn). Recompiles over many batches of varying size stay bounded: one graph for the
Transformer (batch, source and target lengths dynamic), one per target bucket for the RNN decoder's unrolled
step loop (nmt.training.step.TARGET_BUCKET). Dynamo's "eager" backend keeps these tests fast: recompiles and
graph breaks are decided by dynamo, before any backend runs.
"""
import random

import pytest
import torch
from helpers import TINY_RNN, TINY_TRANSFORMER, tiny_model

from nmt.data.batching import collate
from nmt.training.loss import label_smoothed_loss
from nmt.training.step import TARGET_BUCKET, CompiledNet, StepParts, train_step

BATCH = collate([[5, 6, 7, 8], [9, 10]], [[5, 6], [7, 8, 9]], [0, 1], 0, 1, 2)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def explain(model):
    """torch._dynamo.explain of the train step's forward + loss, under the settings CompiledNet uses."""
    def forward_loss(src, src_lengths, tgt_in, tgt_out):
        out, _ = model(src, src_lengths, tgt_in)
        return label_smoothed_loss(out.logits, tgt_out, 0, 0.1)[0]
    with torch._dynamo.config.patch(allow_rnn=True):
        return torch._dynamo.explain(forward_loss)(BATCH.src, BATCH.src_lengths, BATCH.tgt_in, BATCH.tgt_out)


def test_the_transformer_train_step_has_no_graph_break():
    report = explain(tiny_model([], base=TINY_TRANSFORMER).train())
    assert report.graph_break_count == 0, [r.reason for r in report.break_reasons]
    assert report.graph_count == 1


@pytest.mark.parametrize("overrides", [[], ["model/attention=local_p"], ["model/attention=hard"]],
                         ids=["default_rnn", "local_p", "hard"])
def test_the_rnn_breaks_only_at_its_packed_encoder(overrides):
    report = explain(tiny_model(overrides, base=TINY_RNN).train())
    assert report.break_reasons, "the packed encoder runs eagerly: one break (seen from each enclosing frame)"
    assert all("_packed_rnn" in r.reason for r in report.break_reasons), [r.reason for r in report.break_reasons]


def varying_batches(n: int, max_len: int, seed: int = 0):
    """n batches of 2..6 pairs with source and target lengths 1..max_len, as an epoch's buckets give."""
    rng = random.Random(seed)
    for _ in range(n):
        b = rng.randint(2, 6)
        s_len, t_len = rng.randint(1, max_len), rng.randint(1, max_len)
        src = [[rng.randint(4, 29) for _ in range(rng.randint(1, s_len))] for _ in range(b - 1)]
        tgt = [[rng.randint(4, 29) for _ in range(rng.randint(1, t_len))] for _ in range(b - 1)]
        yield collate([[5] * s_len, *src], [[6] * t_len, *tgt], list(range(b)), 0, 1, 2)


def compiles(model, n_batches: int, max_len: int) -> tuple[int, set[int]]:
    """Train n_batches varying batches through a CompiledNet; -> (graphs compiled, target lengths seen)."""
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    parts = StepParts(CompiledNet(model, backend=counting_backend), model,
                      torch.optim.SGD(model.parameters(), lr=0.01), 0, 0.1, 1.0, False, torch.device("cpu"), 1,
                      compiled=True)
    lengths = set()
    for batch in varying_batches(n_batches, max_len):
        lengths.add(batch.tgt_in.size(1))
        train_step(parts, [batch], batch.n_tgt_tokens)
    return len(graphs), lengths


def test_the_transformer_compiles_once_for_all_batch_shapes():
    n, lengths = compiles(tiny_model([], base=TINY_TRANSFORMER).train(), 8, 20)
    assert len(lengths) > 4  # the batches did vary
    assert n == 1  # batch, source and target lengths are dynamic: one graph


def test_rnn_recompiles_are_bounded_by_the_target_buckets():
    model = tiny_model([], base=TINY_RNN).train()
    # targets of 1..7 tokens (+ bos or eos): lengths 2..8, one bucket (a short unrolled loop keeps this fast)
    n, lengths = compiles(model, 12, TARGET_BUCKET - 1)
    buckets = {-(-t // TARGET_BUCKET) for t in lengths}
    assert len(lengths) >= 2 * len(buckets) + 2  # without the buckets: 3 graphs per length, over the bound
    # a compile of the step is 3 graphs (around the packed encoder, and the decoder's); the frames resumed
    # after the encoder see its outputs with a static batch size first, and once more when it changes
    graphs_per_compile = 3
    assert n <= graphs_per_compile * (len(buckets) + 1), (n, sorted(lengths))


def test_decode_compile_gives_the_same_translations(monkeypatch):
    from helpers import compose_cfg
    from omegaconf import OmegaConf

    from nmt.decoding import DecodeSettings, compiled, translate_ids
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward
    monkeypatch.setattr(compiled, "_decode", torch.compile(compiled.decode_step, dynamic=True,
                                                           backend=counting_backend))
    model = tiny_model([], base=TINY_RNN)  # the step an RNN decoder runs T times per sentence
    decode = OmegaConf.to_container(compose_cfg([]).decode)
    src = [[5, 6, 7], [8, 9], [10, 11, 12, 13]]
    out = {}
    for on in (False, True):
        settings = DecodeSettings(**{**decode, "beam_size": 2, "max_len_a": 0.0, "max_len_b": 4,
                                     "compile": on})
        out[on] = translate_ids(model, src, settings, pad_id=0, bos_id=1, eos_id=2,
                                device=torch.device("cpu")).tokens
    assert out[True] == out[False]
    # batch (beams) and source lengths are dynamic (dynamo may still specialise sizes 0 and 1, as a Transformer's
    # cache at its first two steps): at most 3 graphs serve every step of every batch
    assert len(graphs) <= 3
