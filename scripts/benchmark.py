#!/usr/bin/env python3
"""Benchmark the attention types: training tokens/s, peak memory, decoding speed, MFU (issue 7).

Every model is built from the real configs (configs/train.yaml + model overrides) at one size,
trained for `--warmup` + `--steps` AdamW steps on deterministic synthetic batches of a fixed
token budget (Multi30k-like lengths), then decodes a fixed set of synthetic sentences with
greedy and beam search through nmt.decoding.translate_ids (length-sorted batches).

    python scripts/benchmark.py --models rnn-luong,transformer --device cpu --max-tokens 2000 \
        --steps 20 --warmup 5 --decode-sentences 200 --out bench.json --md bench.md

Figures, not assertions: see docs/benchmark.md for what every column means and the MFU formula.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import json
import os
import platform
import random
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

from nmt.cli.common import config_dir
from nmt.data.batching import Batch, TokenBatchSampler, collate
from nmt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from nmt.alloc import tune_allocator
from nmt.decoding import DecodeSettings, translate_ids
from nmt.models.build import build_model
from nmt.models.seq2seq import Seq2Seq
from nmt.training.optim import OptimSettings, build_optimizer
from nmt.training.step import CompiledNet, StepParts, train_step

from bench_common import TINY, cpu_name, fmt, joey_speeds, loadavg, peak_flops_for, ratio  # scripts/, beside this file

# name -> (family, Hydra overrides of configs/train.yaml). Model sizes are the configs' defaults.
MODELS = {
    "rnn-luong": ("rnn", ["model=rnn", "model/attention=luong_general"]),
    "rnn-luong-nofeed": ("rnn", ["model=rnn", "model/attention=luong_general",
                                 "model.decoder.input_feeding=false"]),
    "rnn-bahdanau": ("rnn", ["model=rnn", "model/attention=bahdanau"]),
    "rnn-dot": ("rnn", ["model=rnn", "model/attention=luong_dot"]),
    "rnn-concat": ("rnn", ["model=rnn", "model/attention=luong_concat"]),
    "rnn-local-m": ("rnn", ["model=rnn", "model/attention=local_m"]),
    "rnn-local-p": ("rnn", ["model=rnn", "model/attention=local_p"]),
    "rnn-hard": ("rnn", ["model=rnn", "model/attention=hard"]),
    "rnn-multihead": ("rnn", ["model=rnn", "model/attention=multihead"]),
    "transformer": ("transformer", ["model=transformer"]),
    "transformer-base": ("transformer", ["model=transformer_base"]),
    "hybrid": ("hybrid", ["model=hybrid"]),
}
DEFAULT_MODELS = [m for m in MODELS if m != "hybrid"]

# Synthetic Multi30k-like pairs: source length uniform in [8, 20] subword tokens, target length
# = source length + uniform [-2, 2] (de-en captions have similar lengths)
SRC_LEN = (8, 20)
TGT_JITTER = 2

# Decoding: eos logit offset until the length limit (see LengthLimited)
EOS_PENALTY = 1e4

# JoeyNMT reference configs (../shared/bench/joeynmt/configs) -> our closest model
JOEY_MODELS = {"transformer_small": "transformer", "rnn_luong": "rnn-luong", "rnn_bahdanau": "rnn-bahdanau"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help=f"comma list of {sorted(MODELS)}")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--max-tokens", type=int, default=2000,
                   help="token budget per batch: sentences * max(src, tgt + 1 length) <= it")
    p.add_argument("--steps", type=int, default=20, help="timed optimiser steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed optimiser steps first")
    p.add_argument("--decode-sentences", type=int, default=200)
    p.add_argument("--decode-batch", type=int, default=128, help="sentences per decoding batch")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--max-len-a", type=float, default=1.0, help="decode length limit a * src_len + b")
    p.add_argument("--max-len-b", type=int, default=1)
    p.add_argument("--vocab", type=int, default=8000, help="source = target vocabulary size")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast for training (default: on for cuda, off for cpu)")
    p.add_argument("--decode-amp", action="store_true", help="also decode under bf16 autocast")
    p.add_argument("--compile", action="store_true", help="torch.compile the training module")
    p.add_argument("--peak-flops", type=float, default=None, help="device peak FLOP/s for MFU")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--tune-allocator", action="store_true",
                   help="nmt.alloc.tune_allocator() first (glibc keeps freed memory: fewer page faults)")
    p.add_argument("--override", action="append", default=[], help="Hydra override for every model")
    p.add_argument("--tiny", action="store_true", help="tiny dims and vocabulary (tests)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--joeynmt-json", nargs="+", default=[],
                   help="run_joey.py summary JSON(s), [our_model=]path, for ratio columns")
    p.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    p.add_argument("--md", type=Path, default=None, help="also write the Markdown table here")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.decode_sentences < 1 or args.decode_batch < 1:
        p.error("--steps, --decode-sentences and --decode-batch must be >= 1, --warmup >= 0")
    args.models = list(dict.fromkeys(m.strip() for m in args.models.split(",") if m.strip()))
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        p.error(f"unknown model(s) {unknown}; choose from {sorted(MODELS)}")
    return args


def model_config(name: str, args: argparse.Namespace, tiny: bool):
    """The composed train config of one benchmark model (AdamW optimiser, CPU trainer node)."""
    family, overrides = MODELS[name]
    sizes = TINY[family] if tiny else []
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="train",
                       overrides=["optim=adamw", "trainer=cpu", *overrides, *sizes, *args.override])


def synthetic_pairs(n: int, vocab: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """n deterministic (src, tgt) id lists with Multi30k-like lengths; ids avoid the 4 specials."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        s = rng.randint(*SRC_LEN)
        t = max(1, s + rng.randint(-TGT_JITTER, TGT_JITTER))
        pairs.append(([rng.randrange(4, vocab) for _ in range(s)], [rng.randrange(4, vocab) for _ in range(t)]))
    return pairs


def training_batches(args: argparse.Namespace, vocab: int, count: int) -> list[Batch]:
    """`count` token-budget batches (nmt's TokenBatchSampler bucketing), cycling if the pool runs out."""
    pairs = synthetic_pairs(max(500, count * args.max_tokens // 12), vocab, args.seed)
    sampler = TokenBatchSampler([len(s) for s, _ in pairs], [len(t) for _, t in pairs],
                                args.max_tokens, shuffle=True, seed=args.seed)
    batches = []
    for idx in sampler.batches(0):
        batches.append(collate([pairs[i][0] for i in idx], [pairs[i][1] for i in idx], idx,
                               PAD_ID, BOS_ID, EOS_ID))
    return [batches[i % len(batches)] for i in range(count)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_parts(model: Seq2Seq, cfg, args, device: torch.device) -> StepParts:
    """The Trainer's step (nmt.training.step) for this model and the config's optimiser settings."""
    o = OptimSettings(**OmegaConf.to_container(cfg.optim, resolve=True))
    net = CompiledNet(model) if args.compile else model  # as trainer.compile=true builds it
    return StepParts(net, model, build_optimizer(model, o, device), PAD_ID, o.label_smoothing, o.clip_grad_norm,
                     args.amp, device, world=1, compiled=args.compile)


def time_training(model: Seq2Seq, cfg, batches: list[Batch], args, device: torch.device) -> dict:
    """Median per-step throughput over the timed steps (the first `warmup` batches are untimed)."""
    parts = step_parts(model, cfg, args, device)
    model.train()
    times, tgt, src, faults = [], [], [], 0
    for i, b in enumerate(batches):
        b = b.to(device)
        sync(device)
        t0, f0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        train_step(parts, [b], b.n_tgt_tokens)
        sync(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
            faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
            tgt.append(b.n_tgt_tokens)
            src.append(int(b.src_lengths.sum()))
    return {"train_tgt_tok_s": statistics.median(t / s for t, s in zip(tgt, times)),
            "train_tok_s": statistics.median((t + s) / dt for t, s, dt in zip(tgt, src, times)),
            "step_ms": 1000 * statistics.median(times),
            "batch_sentences": statistics.median(len(b) for b in batches[args.warmup:]),
            "batch_tgt_tokens": statistics.median(tgt), "minor_faults_per_step": faults / len(times)}


def memory_start(device: torch.device) -> tuple[int, str]:
    """Reset the peak counter; returns (baseline bytes that memory_peak subtracts, what is measured)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device), "cuda max_memory_allocated delta"
    try:  # give freed heap back to the OS so the RSS baseline is this model's, not its predecessor's
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:  # Linux >= 4.0: writing 5 resets VmHWM (the peak RSS) of this process
        Path("/proc/self/clear_refs").write_text("5")
        rss = _proc_status_kib("VmRSS")
        if rss:
            return rss * 1024, "cpu peak RSS delta (VmHWM)"
    except OSError:
        pass
    return _max_rss_bytes(), "cpu max RSS delta (resource; process high-water mark)"


def memory_peak(device: torch.device, start: tuple[int, str]) -> tuple[float, str]:
    """(MiB above the baseline, what was measured)."""
    base, kind = start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = _proc_status_kib("VmHWM") * 1024 if "VmHWM" in kind else _max_rss_bytes()
    return (peak - base) / 2**20, kind


def _max_rss_bytes() -> int:
    """The process's peak RSS from getrusage (KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _proc_status_kib(key: str) -> int:
    """A `kB` field of /proc/self/status; 0 where there is none (not Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class LengthLimited(nn.Module):
    """Decodes like `model` except that eos loses to every other token (its logit lowered by
    EOS_PENALTY, finite so beam scores stay finite) until the search's length limit forces it.

    A model trained for a few steps on synthetic data says eos at once (it is the most frequent
    token); this way every hypothesis has exactly max_len_a * src_len + max_len_b tokens, eos
    included, whatever the weights prefer, and the cost per step is the model's.
    """

    def __init__(self, model: Seq2Seq, eos_id: int):
        super().__init__()
        self.model, self.eos_id = model, eos_id

    def encode(self, *args, **kwargs):
        return self.model.encode(*args, **kwargs)

    def init_state(self, enc):
        return self.model.init_state(enc)

    def decode(self, *args, **kwargs):
        out = self.model.decode(*args, **kwargs)
        out.logits[..., self.eos_id] -= EOS_PENALTY  # (B, T, V) logits, no grad
        return out


def decode(model: Seq2Seq, src_ids: list[list[int]], beam: int, args, device: torch.device, batch: int):
    """translate_ids (greedy for beam 1) of the LengthLimited model, as nmt-evaluate batches it."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.decode_amp):
        settings = DecodeSettings(beam_size=beam, length_penalty=1.0, max_len_a=args.max_len_a,
                                  max_len_b=args.max_len_b, max_sentences=batch, nbest=1,
                                  max_input_tokens=max(map(len, src_ids)), sampling="none", topk=1, topp=1.0,
                                  temperature=1.0, seed=0, compile=False, coverage_penalty=0.0,
                                  alignment="none", selection="auto")
        return translate_ids(LengthLimited(model, EOS_ID), src_ids, settings, pad_id=PAD_ID, bos_id=BOS_ID,
                             eos_id=EOS_ID, device=device)


def time_decoding(model: Seq2Seq, src_ids: list[list[int]], beam: int, args, device: torch.device) -> dict:
    """Sentences/s over src_ids (after one small untimed warm-up call); mean output length incl. eos."""
    decode(model, src_ids[:8], beam, args, device, args.decode_batch)
    sync(device)
    t0 = time.perf_counter()
    hyp = decode(model, src_ids, beam, args, device, args.decode_batch)
    sync(device)
    dt = time.perf_counter() - t0
    return {"sent_s": len(src_ids) / dt, "out_len": statistics.mean(len(t) + 1 for t in hyp.tokens)}


def nonembedding_params(module: nn.Module) -> int:
    """Parameters outside nn.Embedding tables (token and learned position embeddings)."""
    emb = {id(p) for m in module.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    return sum(p.numel() for p in module.parameters() if id(p) not in emb)


def transformer_flops(model: Seq2Seq, cfg, batches: list[Batch]) -> float:
    """Training FLOPs per target token (PaLM App. B style, per sentence, padding excluded).

    6 * (N_enc * S_i + (N_dec + N_gen) * T_i) + 12 * d * (L_enc * S_i^2 + L_dec * (T_i^2 + T_i * S_i))
    summed over sentences i (S_i source, T_i = target + 1 tokens), divided by sum T_i.
    N_* = non-embedding parameters; N_gen = the generator (d * V + V), counted even when tied,
    since its matmul is real work. The attention term is QK^T and AV over every key (no causal halving).
    """
    n_enc, n_dec = nonembedding_params(model.encoder), nonembedding_params(model.decoder)
    n_gen = sum(p.numel() for p in model.generator.parameters())
    d, l_enc, l_dec = cfg.model.encoder.d_model, cfg.model.encoder.num_layers, cfg.model.decoder.num_layers
    flops = tokens = 0.0
    for b in batches:
        S = b.src_lengths.double()
        T = (b.tgt_out != PAD_ID).sum(dim=1).double()
        dense = 6 * (n_enc * S + (n_dec + n_gen) * T)
        attn = 12 * d * (l_enc * S**2 + l_dec * (T**2 + T * S))
        flops, tokens = flops + float((dense + attn).sum()), tokens + float(T.sum())
    return flops / tokens


def peak_flops(device: torch.device, override: float | None) -> float | None:
    """Device peak bf16 FLOP/s: --peak-flops, else the datasheet table for known GPUs, else None."""
    if override:
        return override
    if device.type != "cuda":
        return None
    return peak_flops_for(torch.cuda.get_device_name(device))


def bench_model(name: str, args: argparse.Namespace, device: torch.device, batches: list[Batch],
                src_ids: list[list[int]]) -> dict:
    """All figures of one model: training on `batches`, decoding of `src_ids`."""
    cfg = model_config(name, args, args.tiny)
    torch.manual_seed(args.seed)
    start = memory_start(device)
    model = build_model(cfg.model, args.vocab, args.vocab, PAD_ID).to(device)
    result = {"family": cfg.model.family, "params": model.num_parameters(), **time_training(
        model, cfg, batches, args, device)}
    result["peak_mem_mib"], result["mem_kind"] = memory_peak(device, start)
    greedy = time_decoding(model, src_ids, 1, args, device)
    beam = time_decoding(model, src_ids, args.beam, args, device)
    result.update(greedy_sent_s=greedy["sent_s"], greedy_out_len=greedy["out_len"],
                  beam_sent_s=beam["sent_s"], beam_out_len=beam["out_len"])
    result["flops_per_tgt_tok"] = result["mfu"] = None
    if cfg.model.family == "transformer":
        result["flops_per_tgt_tok"] = transformer_flops(model, cfg, batches[args.warmup:])
        peak = peak_flops(device, args.peak_flops)
        if peak:
            result["mfu"] = result["flops_per_tgt_tok"] * result["train_tgt_tok_s"] / peak
    del model
    return result


def warm_up_process(args: argparse.Namespace, device: torch.device, batch: Batch, src_ids) -> None:
    """One untimed step and decode of a tiny copy of every model: one-time library set-up (kernel
    loading, thread pools, CUDA context, allocator arenas) then counts against no model's figures."""
    for name in args.models:
        cfg = model_config(name, args, tiny=True)
        model = build_model(cfg.model, args.vocab, args.vocab, PAD_ID).to(device)
        train_step(step_parts(model, cfg, args, device), [batch], batch.n_tgt_tokens)
        decode(model, src_ids[:2], args.beam, args, device, batch=2)


def machine_info(device: torch.device, args: argparse.Namespace) -> dict:
    cuda = device.type == "cuda"
    return {
        "device": torch.cuda.get_device_name(device) if cuda else cpu_name(),
        "device_type": device.type,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "peak_flops": peak_flops(device, args.peak_flops),
        "loadavg_1m_start": loadavg(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def load_joey(specs: list[str]) -> dict[str, dict]:
    """run_joey.py summaries -> {our model: {tgt_tok_s, beam_sent_s (approx.), device, path}}."""
    joey = {}
    for spec in specs:
        ours, _, path = spec.rpartition("=")
        summary = json.loads(Path(path).read_text())
        ours = ours or JOEY_MODELS.get(Path(str(summary.get("config", ""))).stem, "")
        if not ours:
            print(f"warning: {path}: unknown JoeyNMT config {summary.get('config')!r}; "
                  f"pass it as our_model=path", file=sys.stderr)
            continue
        joey[ours] = {**joey_speeds(summary), "device": summary.get("gpu"), "config": summary.get("config"),
                      "path": path}
    return joey


def markdown_table(report: dict) -> str:
    """One row per model; ratio columns when JoeyNMT summaries were given."""
    joey, m = report.get("joeynmt", {}), report["machine"]
    head = ["model", "params (M)", "train tgt tok/s", "train tok/s", "step ms", "peak mem MiB",
            "greedy sent/s", f"beam{report['settings']['beam']} sent/s", "MFU"]
    if joey:
        head += ["tok/s ÷ Joey", "beam ÷ Joey"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in report["results"].items():
        cells = [name, f"{r['params'] / 1e6:.2f}", f"{r['train_tgt_tok_s']:,.0f}", f"{r['train_tok_s']:,.0f}",
                 f"{r['step_ms']:.1f}", f"{r['peak_mem_mib']:.0f}", f"{r['greedy_sent_s']:.1f}",
                 f"{r['beam_sent_s']:.1f}", "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f} %"]
        if joey:
            j = joey.get(name, {})
            cells += [fmt(ratio(r["train_tgt_tok_s"], j.get("tgt_tok_s")), ".2f"),
                      fmt(ratio(r["beam_sent_s"], j.get("beam_sent_s")), ".2f")]
        rows.append("| " + " | ".join(cells) + " |")
    mem_kinds = sorted({r["mem_kind"] for r in report["results"].values()})
    rows.append(f"\n{m['device']} ({m['device_type']}, {m['cpu_count']} CPUs, torch {m['torch']}); "
                f"peak mem = {', '.join(mem_kinds)}; 1-min load average {fmt(m['loadavg_1m_start'], '.2f')} "
                f"before, {fmt(m.get('loadavg_1m_end'), '.2f')} after.")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.tune_allocator:
        args.tune_allocator = tune_allocator()  # False where there is no glibc: the JSON says so
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    args.amp = device.type == "cuda" if args.amp is None else args.amp
    if args.tiny:
        args.vocab = min(args.vocab, 64)
    batches = training_batches(args, args.vocab, args.warmup + args.steps)
    src_ids = [s for s, _ in synthetic_pairs(args.decode_sentences, args.vocab, args.seed + 1)]
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    report = {"machine": machine_info(device, args), "settings": settings, "results": {}}
    warm_up_process(args, device, batches[0], src_ids)
    for name in args.models:
        print(f"[benchmark] {name} ...", file=sys.stderr, flush=True)
        report["results"][name] = bench_model(name, args, device, batches, src_ids)
    report["machine"]["loadavg_1m_end"] = loadavg()
    if args.joeynmt_json:
        report["joeynmt"] = load_joey(args.joeynmt_json)
    return write_report(report, markdown_table(report), args)


def write_report(report: dict, table: str, args: argparse.Namespace) -> dict:
    """Print the Markdown table, and write it to --md and the report as JSON to --out when given."""
    print(table)
    if args.md:
        args.md.write_text(table)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
