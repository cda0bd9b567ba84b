"""GPU numerics proven on CPU: what runs in float32 under bf16 autocast (the RNNs, hard attention's Gumbel noise,
local-p's centres). CPU autocast takes other kernels than CUDA's, so these tests assert the intent: the RNN is
entered with autocast off and float32 inputs, weights and states; the noise is drawn and p_t computed in float32."""
import collections

import pytest
import torch
from helpers import TINY_RNN, compose_cfg, tiny_model
from omegaconf import OmegaConf
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.utils._python_dispatch import TorchDispatchMode

from nmt.attention.hard_attention import HardAttention
from nmt.attention.local_attention import LocalAttention
from nmt.data.batching import collate
from nmt.training.optim import OptimSettings, build_optimizer
from nmt.training.step import StepParts, train_step

BATCH = collate([[5, 6, 7, 8], [9, 10]], [[5, 6], [7, 8, 9]], [0, 1], 0, 1, 2)


def amp_parts(overrides):
    model = tiny_model(overrides, base=TINY_RNN)
    optim = OptimSettings(**OmegaConf.to_container(compose_cfg([]).optim, resolve=True))
    return StepParts(model, model, build_optimizer(model, optim, torch.device("cpu")), 0, 0.1, 1.0, True,
                     torch.device("cpu"), 1)


class OpDtypes(TorchDispatchMode):
    """The floating dtypes of every tensor reaching each op, by op name (only while `active`)."""

    def __init__(self):
        super().__init__()
        self.dtypes, self.active = collections.defaultdict(set), True

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.active:
            for t in torch.utils._pytree.tree_leaves((args, kwargs)):
                if isinstance(t, torch.Tensor) and t.is_floating_point():
                    self.dtypes[func.__name__].add(t.dtype)
        return func(*args, **(kwargs or {}))


def rnn_calls(model: nn.Module, ops: OpDtypes) -> list[dict]:
    """Hooks on every LSTM/GRU: at each call, whether autocast was on and the dtypes of input, state and
    weights; `ops` records the dtypes of the ops run inside the RNN only."""
    calls = []

    def enter(module, args):
        x, hx = args
        data = x.data if isinstance(x, PackedSequence) else x
        states = hx if isinstance(hx, tuple) else (hx,)
        calls.append({"autocast": torch.is_autocast_enabled("cpu"),
                      "dtypes": {data.dtype, *(h.dtype for h in states), *(p.dtype for p in module.parameters())}})
        ops.active = True

    def leave(module, args, out):
        ops.active = False

    for m in model.modules():
        if isinstance(m, nn.RNNBase):
            m.register_forward_pre_hook(enter)
            m.register_forward_hook(leave)
    return calls


def test_the_rnns_run_in_float32_outside_bf16_autocast():
    parts = amp_parts([])  # the default model: packed BiLSTM encoder, Luong input-feeding LSTM decoder
    ops = OpDtypes()
    calls = rnn_calls(parts.model, ops)
    ops.active = False
    with ops:
        out = train_step(parts, [BATCH], 5)
    assert bool(out["applied"])
    assert len(calls) == 1 + BATCH.tgt_in.size(1)  # the encoder once, the decoder once per target step
    assert [c["autocast"] for c in calls] == [False] * len(calls)
    assert all(c["dtypes"] == {torch.float32} for c in calls)
    assert ops.dtypes and set().union(*ops.dtypes.values()) == {torch.float32}  # the RNN's own ops


def test_the_parallel_luong_and_bahdanau_decoders_run_in_float32_too():
    for overrides, n_calls in ((["model.decoder.input_feeding=false"], 2), (["model/attention=bahdanau"], 1 + BATCH.tgt_in.size(1))):
        parts = amp_parts(overrides)
        calls = rnn_calls(parts.model, OpDtypes())
        train_step(parts, [BATCH], 5)
        assert len(calls) == n_calls, overrides
        assert all(not c["autocast"] and c["dtypes"] == {torch.float32} for c in calls), overrides


def test_gumbel_noise_is_drawn_in_float32_under_bf16_autocast():
    torch.manual_seed(0)
    hard = HardAttention(8, 8, "general", 1.0).train()
    q, k = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    ops = OpDtypes()
    with ops, torch.autocast("cpu", torch.bfloat16):
        out = hard(q, k, k, None)
    assert ops.dtypes["exponential_.default"] == {torch.float32}
    assert out.weights.sum(-1).eq(1).all()  # still one-hot


def test_local_p_centres_are_float32_and_equal_the_fp32_computation_under_bf16_autocast():
    torch.manual_seed(0)
    local = LocalAttention(16, 16, "general", "local_p", 2, 1.0)
    q, k = torch.randn(2, 3, 16), torch.randn(2, 60, 16)
    mask = torch.ones(2, 1, 60, dtype=torch.bool)
    mask[1, :, 45:] = False
    with torch.autocast("cpu", torch.bfloat16):
        under_amp = local(q, k, k, mask).centres  # (B, Tq)
    plain = local(q, k, k, mask).centres
    assert under_amp.dtype == torch.float32
    assert torch.equal(under_amp, plain)  # bf16 would round p_t to steps of 0.25 on this 60-token source


def test_decoding_runs_under_bf16_autocast_where_decode_amp_says_so(monkeypatch):
    import nmt.decoding.translate as translate
    from dataclasses import replace
    from nmt.decoding.translate import DecodeSettings, translate_ids
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert translate.decode_amp(torch.device("cuda")) and not translate.decode_amp(torch.device("cpu"))
    model = tiny_model([], base=TINY_RNN)
    seen = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda *a, **k: seen.append(torch.is_autocast_enabled("cpu")) or encode(*a, **k))
    settings = DecodeSettings(**OmegaConf.to_container(compose_cfg([]).decode))
    for amp, beam in ((False, 1), (True, 1), (True, 2)):
        monkeypatch.setattr(translate, "decode_amp", lambda device: amp)  # as on a CUDA device with bf16
        hyp = translate_ids(model, [[5, 6, 7], [8, 9]], replace(settings, beam_size=beam, nbest=1, max_len_b=3),
                            pad_id=0, bos_id=1, eos_id=2, device=torch.device("cpu"))
        assert len(hyp.tokens) == 2
    assert seen == [False, True, True]


def test_tf32_is_set_for_cuda_only_and_follows_the_setting(monkeypatch):
    """trainer.tf32 sets the float32 matmul precision on a CUDA device ("high": TF32 tensor cores,
    "highest": none) and leaves a CPU run's precision alone."""
    from nmt.common import enable_tf32
    calls = []
    monkeypatch.setattr(torch, "set_float32_matmul_precision", calls.append)
    enable_tf32(torch.device("cuda", 0), True)
    enable_tf32(torch.device("cuda", 0), False)
    enable_tf32(torch.device("cpu"), True)
    assert calls == ["high", "highest"]


def test_the_gpu_trainer_turns_tf32_on_and_training_applies_it(tmp_path, monkeypatch):
    """configs/trainer/gpu.yaml says tf32 true, cpu.yaml false; train() passes its device and the setting
    to enable_tf32 before any run-dir, data or model work."""
    from helpers import toy_cfg
    from nmt.cli.train import run_settings
    from nmt.training import session
    assert compose_cfg(["trainer=gpu"]).trainer.tf32 is True and compose_cfg([]).trainer.tf32 is False
    seen = []
    monkeypatch.setattr(session, "enable_tf32", lambda device, on: seen.append((device.type, on)))

    def locked(*args, **kwargs):
        raise RuntimeError("stop here")
    monkeypatch.setattr(session, "train_locked", locked)
    with pytest.raises(RuntimeError, match="stop here"):
        session.train(run_settings(toy_cfg(tmp_path / "run", tmp_path / "cache", ["trainer.tf32=true"])))
    assert seen == [("cpu", True)]
