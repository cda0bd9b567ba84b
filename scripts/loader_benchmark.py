#!/usr/bin/env python3
"""The training data loader alone, on one CPU core: batches/s and target tokens/s (issue 22, section 3).

The loader is what the training loop iterates: TokenBatchSampler (shuffle, bucketing, packing into
`max_tokens` batches; a new plan every epoch) and collate_rows (padding from the memory-mapped ids),
built by ``nmt.data.pipeline.make_batches`` exactly as nmt-train builds it. The batch size is the GPU
trainer's (configs/trainer/gpu.yaml, trainer.max_tokens) unless overridden. The process is pinned to
one CPU (``os.sched_setaffinity``) with ``torch.set_num_threads(1)``. Two modes:

    plain      the batches built in the consuming loop (trainer.prefetch=0)
    prefetch   built ahead by nmt.data.prefetch.Prefetcher's thread (trainer.prefetch=--depth): the
               thread and the consumer share the one core

Each repeat iterates --epochs whole epochs per mode (modes alternate, so a change in the machine's
load hits both); the table gives the median over --repeats. --train-steps N also times N training
steps of the default CPU model (configs/trainer/cpu.yaml: its batch size and every core) with and
without prefetching: the prefetch thread's effect on a CPU step.

    NMT_DATA_DIR=/path/to/data python scripts/loader_benchmark.py --repeats 5 --train-steps 30

Figures, not assertions: docs/benchmark.md, section "Loader".
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from contextlib import closing
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from nmt.cli.common import config_dir, register_resolvers
from nmt.data.pipeline import DataBundle, make_batches, prepare_data
from nmt.data.prefetch import Prefetcher
from nmt.models.build import build_corpus, build_model
from nmt.training.optim import OptimSettings, build_optimizer
from nmt.training.step import StepParts, train_step

from bench_common import cpu_name, loadavg  # scripts/, beside this file


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=3, help="whole epochs per mode and repeat")
    p.add_argument("--repeats", type=int, default=5, help="repeats; the table shows the median")
    p.add_argument("--depth", type=int, default=2, help="prefetch depth of the 'prefetch' mode")
    p.add_argument("--max-tokens", type=int, default=None, help="batch size (default: the GPU trainer's)")
    p.add_argument("--cpu", type=int, default=None, help="the CPU to pin to (default: the last one allowed)")
    p.add_argument("--train-steps", type=int, default=0, help="also time this many CPU training steps per mode")
    p.add_argument("--warmup-steps", type=int, default=3, help="untimed training steps before each timing")
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    p.add_argument("override", nargs="*", help="Hydra overrides of configs/train.yaml, e.g. data=toy")
    return p.parse_args(argv)


def compose_train(overrides: list[str]):
    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def load(cfg) -> DataBundle:
    d = cfg.data
    return prepare_data(build_corpus(d.corpus), dict(d.splits), OmegaConf.to_container(d.tokenizer, resolve=True),
                        d.max_len, d.cache_dir)


def batches(data: DataBundle, max_tokens: int, seed: int, depth: int):
    """The training iterator nmt-train builds; wrapped in a Prefetcher when depth > 0."""
    tok = data.tgt_tok
    plain = make_batches(data.train, max_tokens, True, seed, tok.pad_id, tok.bos_id, tok.eos_id)
    return Prefetcher(plain, depth, torch.device("cpu")) if depth else plain


def time_epochs(data: DataBundle, max_tokens: int, seed: int, depth: int, first_epoch: int, epochs: int) -> dict:
    """Iterate `epochs` whole epochs (each with its own plan): batches and target tokens per second of wall
    time and per second of the process's CPU time (all its threads; what a loaded machine does not distort)."""
    it = batches(data, max_tokens, seed, depth)
    n = tokens = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for epoch in range(first_epoch, first_epoch + epochs):
        it.set_epoch(epoch)
        for b in it:
            n, tokens = n + 1, tokens + b.n_tgt_tokens
    seconds, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    return {"batches_per_s": n / seconds, "tgt_tokens_per_s": tokens / seconds, "batches_per_cpu_s": n / cpu_s,
            "tgt_tokens_per_cpu_s": tokens / cpu_s, "batches": n, "tgt_tokens_per_batch": tokens / n}


def loader_figures(data: DataBundle, args, max_tokens: int, seed: int) -> dict:
    """Median over repeats of each mode; modes alternate within a repeat."""
    runs = {"plain": [], "prefetch": []}
    for r in range(args.repeats):
        for mode, depth in (("plain", 0), ("prefetch", args.depth)):
            runs[mode].append(time_epochs(data, max_tokens, seed, depth, r * args.epochs, args.epochs))
    return {mode: {k: statistics.median(x[k] for x in rs) for k in rs[0]} | {"runs": rs} for mode, rs in runs.items()}


def time_steps(cfg, data: DataBundle, depth: int, args) -> tuple[float, float]:
    """(median wall seconds, mean process CPU seconds) per training step (batch fetch + train_step)."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, len(data.src_tok), len(data.tgt_tok), data.tgt_tok.pad_id)
    optim = OptimSettings(**OmegaConf.to_container(cfg.optim, resolve=True))
    parts = StepParts(model, model, build_optimizer(model, optim, torch.device("cpu")), data.tgt_tok.pad_id,
                      optim.label_smoothing, optim.clip_grad_norm, False, torch.device("cpu"), world=1)
    model.train()
    times, cpu = [], 0.0
    with closing(iter(batches(data, cfg.trainer.max_tokens, cfg.seed, depth))) as it:
        t0, c0 = time.perf_counter(), time.process_time()
        for i, batch in enumerate(it):
            train_step(parts, [batch], batch.n_tgt_tokens)
            now, cnow = time.perf_counter(), time.process_time()
            if i >= args.warmup_steps:
                times.append(now - t0)
                cpu += cnow - c0
            if len(times) == args.train_steps:
                break
            t0, c0 = now, cnow
    if len(times) < args.train_steps:
        raise ValueError(f"an epoch has fewer than {args.warmup_steps} + {args.train_steps} batches: "
                         "lower --train-steps or --warmup-steps")
    return statistics.median(times), cpu / len(times)


def step_figures(args, n_cpus: int) -> dict:
    """Training step time with and without the prefetch thread, on every allowed core (a CPU run)."""
    cfg = compose_train(["trainer=cpu", *args.override])
    torch.set_num_threads(cfg.trainer.num_threads or n_cpus)
    data = load(cfg)
    runs = {"prefetch=0": [], f"prefetch={args.depth}": []}
    for _ in range(args.repeats):
        for key, depth in (("prefetch=0", 0), (f"prefetch={args.depth}", args.depth)):
            runs[key].append([1000 * t for t in time_steps(cfg, data, depth, args)])
    return {"max_tokens": cfg.trainer.max_tokens, "threads": torch.get_num_threads(), "steps": args.train_steps,
            "step_ms": {k: statistics.median(r[0] for r in v) for k, v in runs.items()},
            "cpu_ms_per_step": {k: statistics.median(r[1] for r in v) for k, v in runs.items()},
            "runs_ms": runs}


def table(report: dict) -> str:
    rows = ["| mode | batches/s | target tokens/s | batches/CPU-s | target tokens/CPU-s | target tokens/batch |",
            "|---|---|---|---|---|---|"]
    for mode in ("plain", "prefetch"):
        f = report["loader"][mode]
        rows.append(f"| {mode} | {f['batches_per_s']:,.0f} | {f['tgt_tokens_per_s'] / 1e6:.2f} M | "
                    f"{f['batches_per_cpu_s']:,.0f} | {f['tgt_tokens_per_cpu_s'] / 1e6:.2f} M | "
                    f"{f['tgt_tokens_per_batch']:,.0f} |")
    m = report["machine"]
    rows.append(f"\nmax_tokens {report['max_tokens']}, {report['loader']['plain']['batches']} batches per "
                f"{report['epochs']} epochs, median of {report['repeats']}; {m['cpu']}, pinned to CPU "
                f"{m['pinned_cpu']}, 1 thread; load average {m['load_before']:.2f} before, {m['load_after']:.2f} after")
    if "training" in report:
        t = report["training"]
        steps = ", ".join(f"{k}: {v:.1f} ms ({t['cpu_ms_per_step'][k]:.1f} ms CPU)" for k, v in t["step_ms"].items())
        rows.append(f"\nCPU training step (the configured model, max_tokens {t['max_tokens']}, {t['threads']} threads, "
                    f"median of {t['steps']} steps x {report['repeats']}): {steps}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cpus = os.sched_getaffinity(0)
    pinned = args.cpu if args.cpu is not None else max(cpus)
    load_before = loadavg()
    cfg = compose_train(["trainer=gpu", *args.override])
    max_tokens = args.max_tokens or cfg.trainer.max_tokens
    threads = torch.get_num_threads()
    report = {"max_tokens": max_tokens, "epochs": args.epochs, "repeats": args.repeats, "depth": args.depth}
    if args.train_steps:  # first: torch's worker threads must not be created while the process is pinned
        report["training"] = step_figures(args, len(cpus))
    try:
        os.sched_setaffinity(0, {pinned})  # this thread and those it starts (the prefetch thread)
        torch.set_num_threads(1)
        report["loader"] = loader_figures(load(cfg), args, max_tokens, cfg.seed)
    finally:  # the caller's process as it was (the tests call main())
        os.sched_setaffinity(0, cpus)
        torch.set_num_threads(threads)
    report["machine"] = {"cpu": cpu_name(), "cpus": len(cpus), "pinned_cpu": pinned, "torch": torch.__version__,
                         "load_before": load_before, "load_after": loadavg()}
    print(table(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
