#!/usr/bin/env python3
"""Training speed with and without torch.compile, side by side (issue: GPU-ready, proven on CPU, section 2).

For each model, two copies with the same weights train on the same synthetic Multi30k-like batches
(scripts/benchmark.py's token-budget batches): the eager step and the compiled one (nmt.training.step.CompiledNet,
as trainer.compile=true builds it) alternate step by step, so machine load falls on both alike. The compiled
copy first sees one batch of every shape class (every target bucket) untimed: that is the compile time,
reported on its own. Then --steps timed steps each; the figure is the median target tokens/s.

    python scripts/compile_benchmark.py --models rnn-luong,transformer --max-tokens 2000 --steps 30 \
        --md compile.md --out compile.json

docs/benchmark.md "Compile" has the figures and what they mean.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from nmt.data.tokenizer import PAD_ID
from nmt.models.build import build_model
from nmt.training.step import TARGET_BUCKET, CompiledNet, StepParts, train_step

from bench_common import cpu_name, fmt, loadavg  # scripts/, beside this file
from benchmark import MODELS, model_config, training_batches


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", default="rnn-luong,transformer", help=f"comma list of {sorted(MODELS)}")
    p.add_argument("--max-tokens", type=int, default=2000, help="token budget per batch (configs/trainer/cpu.yaml)")
    p.add_argument("--steps", type=int, default=30, help="timed optimiser steps per variant")
    p.add_argument("--backend", default="inductor", help="torch.compile backend")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--vocab", type=int, default=8000, help="source = target vocabulary size")
    p.add_argument("--override", action="append", default=[], help="Hydra override for every model")
    p.add_argument("--tiny", action="store_true", help="tiny dims and vocabulary (tests)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    p.add_argument("--md", type=Path, default=None, help="also write the Markdown table here")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if unknown := [m for m in args.models if m not in MODELS]:
        p.error(f"unknown model(s) {unknown}; choose from {sorted(MODELS)}")
    return args


def step_parts(model, cfg, compiled: bool, backend: str) -> StepParts:
    """The trainer's step for this model (AdamW as configured): eager, or through CompiledNet."""
    from omegaconf import OmegaConf
    from nmt.training.optim import OptimSettings, build_optimizer
    o = OptimSettings(**OmegaConf.to_container(cfg.optim, resolve=True))
    net = CompiledNet(model, backend=backend) if compiled else model
    return StepParts(net, model, build_optimizer(model, o, torch.device("cpu")), PAD_ID, o.label_smoothing,
                     o.clip_grad_norm, False, torch.device("cpu"), 1, compiled=compiled)


def shape_classes(batches, unrolls_target: bool) -> list:
    """One batch per graph the compiled step needs: per target bucket for an unrolling decoder, else one."""
    seen = {}
    for b in batches:
        key = -(-b.tgt_in.size(1) // TARGET_BUCKET) if unrolls_target else 0
        seen.setdefault(key, b)
    return [seen[k] for k in sorted(seen)]


def bench_model(name: str, args: argparse.Namespace) -> dict:
    """Compile warm-up (timed apart), then eager and compiled steps alternating; median target tokens/s."""
    cfg = model_config(name, args, args.tiny)
    vocab = 40 if args.tiny else args.vocab
    torch.manual_seed(args.seed)
    eager_model = build_model(cfg.model, vocab, vocab, PAD_ID).train()
    compiled_model = copy.deepcopy(eager_model)
    parts = {"eager": step_parts(eager_model, cfg, False, args.backend),
             "compiled": step_parts(compiled_model, cfg, True, args.backend)}
    batches = training_batches(args, vocab, args.steps + 3)
    warm = shape_classes(batches, compiled_model.decoder.unrolls_target)
    graphs = lambda: torch._dynamo.utils.counters["stats"]["unique_graphs"]  # noqa: E731
    t0, g0 = time.perf_counter(), graphs()
    for b in warm + batches[1:3]:  # every graph compiles here, forward and backward (2 more: a new batch size)
        train_step(parts["compiled"], [b], b.n_tgt_tokens)
    compile_s, g1 = time.perf_counter() - t0, graphs()
    train_step(parts["eager"], [batches[0]], batches[0].n_tgt_tokens)  # the eager optimizer's state, too
    rates = {"eager": [], "compiled": []}
    for i, b in enumerate(batches[3: 3 + args.steps]):
        order = ("eager", "compiled") if i % 2 == 0 else ("compiled", "eager")  # neither always goes first
        for variant in order:
            t = time.perf_counter()
            train_step(parts[variant], [b], b.n_tgt_tokens)
            rates[variant].append(b.n_tgt_tokens / (time.perf_counter() - t))
    eager, compiled = (statistics.median(rates[v]) for v in ("eager", "compiled"))
    return {"model": name, "eager_tgt_tok_s": eager, "compiled_tgt_tok_s": compiled, "speedup": compiled / eager,
            "compile_s": compile_s, "graphs_warmed": len(warm), "graphs_compiled": g1 - g0,
            "graphs_while_timed": graphs() - g1, "steps": args.steps,
            "batch_sentences": statistics.median(len(b) for b in batches[3: 3 + args.steps])}


def markdown(rows: list[dict], meta: dict) -> str:
    lines = ["| model | eager tgt tok/s | compiled tgt tok/s | compiled / eager | compile time (s) | target buckets "
             "| graphs compiled (while timed) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['eager_tgt_tok_s']:,.0f} | {r['compiled_tgt_tok_s']:,.0f} | "
                     f"{r['speedup']:.2f}x | {r['compile_s']:.0f} | {r['graphs_warmed']} | {r['graphs_compiled']} "
                     f"({r['graphs_while_timed']}) |")
    lines.append(f"\n{meta['cpu']}, {meta['threads']} threads, torch {meta['torch']}, backend {meta['backend']}, "
                 f"max_tokens {meta['max_tokens']}, median of {meta['steps']} steps per variant; load average "
                 f"{fmt(meta['load_before'], '.2f')} before, {fmt(meta['load_after'], '.2f')} after; {meta['date']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    meta = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "backend": args.backend, "max_tokens": args.max_tokens, "steps": args.steps, "load_before": loadavg(),
            "date": datetime.datetime.now().isoformat(timespec="seconds")}
    rows = []
    for name in args.models:
        rows.append(bench_model(name, args))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    meta["load_after"] = loadavg()
    report = {"meta": meta, "rows": rows}
    print(markdown(rows, meta))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    if args.md:
        args.md.write_text(markdown(rows, meta))
    return report


if __name__ == "__main__":
    main()
