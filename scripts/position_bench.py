#!/usr/bin/env python3
"""Position and heads variants of the +experiment=self Transformer on one machine: training target tokens/s on
Multi30k de-en, beam sentences/s and the decoder state's bytes per sentence; or, with --length-buckets, the test
BLEU of finished runs by source length.

    python scripts/position_bench.py --steps 20 --warmup 5 --out position.json --md position.md
    python scripts/position_bench.py --variants sinusoidal,aan \
        --variant alibi_6=+model/position=alibi,model.decoder.num_layers=6
    python scripts/position_bench.py --length-buckets outputs/rotary outputs/alibi --md buckets.md

A variant is a name and a list of Hydra overrides on `+experiment=self` (VARIANTS; --variant adds one), so a
variant whose configs do not exist yet is reported as an error and the others still run. Training and beam
search reuse scripts/benchmark.py (the trainer's own train_step on real Multi30k batches of --max-tokens;
beam search through translate_ids with eos held back to the length limit, so every variant decodes the same
number of tokens). State bytes: the decoder state (every tensor: self-attention caches, projected source,
counters) after --cache-steps greedy steps on a batch of validation sources, divided by the batch size; the
self-attention caches alone are a column of their own. Figures, not assertions: docs/benchmark.md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from nmt.cli.common import config_dir, decode_settings
from nmt.data.batching import collate
from nmt.data.pipeline import make_batches, prepare_data
from nmt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from nmt.decoding import translate_ids
from nmt.models.build import build_corpus, build_model
from nmt.runs.config import RunConfig
from nmt.scoring import corpus_scores

import benchmark  # scripts/, beside this file
from bench_common import TINY, fmt, loadavg

# name -> Hydra overrides of `+experiment=self` (configs/experiment/self.yaml)
VARIANTS = {
    "sinusoidal": [],
    "learned": ["model.encoder.positions=learned", "model.decoder.positions=learned"],
    "shaw": ["+model/position=shaw"],
    "t5": ["+model/position=t5"],
    "rotary": ["+model/position=rotary"],
    "alibi": ["+model/position=alibi"],
    "gqa2": ["+model/heads=gqa"],       # 2 key/value heads for the 4 query heads
    "mqa": ["+model/heads=mqa"],        # 1 key/value head
    "aan": ["model/slot@model.decoder.self_attention=aan"],  # average attention decoder self slot
}
# source length in words (whitespace tokens of the raw source): name, shortest, longest (None: no limit)
BUCKETS = (("<=15", 0, 15), ("16-25", 16, 25), (">25", 26, None))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {list(VARIANTS)}")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=OVERRIDE[,OVERRIDE...]",
                   help="add (or redefine) a variant from Hydra overrides of +experiment=self")
    p.add_argument("--data", default="multi30k_de_en", help="data config (configs/data/<name>.yaml)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--max-tokens", type=int, default=2000, help="token budget per training batch")
    p.add_argument("--steps", type=int, default=20, help="timed optimiser steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed optimiser steps first")
    p.add_argument("--decode-sentences", type=int, default=200, help="validation sources decoded")
    p.add_argument("--decode-batch", type=int, default=64, help="sentences per decoding batch")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--max-len-a", type=float, default=1.0, help="decode length limit a * src_len + b")
    p.add_argument("--max-len-b", type=int, default=1)
    p.add_argument("--cache-steps", type=int, default=20, help="greedy steps before the state is measured")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--override", action="append", default=[], help="Hydra override for every variant")
    p.add_argument("--tiny", action="store_true", help="tiny model sizes (tests)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--length-buckets", nargs="+", type=Path, default=None, metavar="RUN_DIR",
                   help="instead: test BLEU of these finished runs by source length (words)")
    p.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    p.add_argument("--md", type=Path, default=None, help="also write the Markdown table here")
    args = p.parse_args(argv)
    if min(args.steps, args.decode_sentences, args.decode_batch, args.beam, args.cache_steps) < 1 or args.warmup < 0:
        p.error("--steps, --decode-sentences, --decode-batch, --beam and --cache-steps must be >= 1, --warmup >= 0")
    variants = dict(VARIANTS)
    for spec in args.variant:
        name, sep, overrides = spec.partition("=")
        if not sep or not name.strip():
            p.error(f"--variant {spec!r}: write NAME=OVERRIDE[,OVERRIDE...], e.g. alibi6=+model/position=alibi")
        variants[name.strip()] = [o for o in overrides.split(",") if o]
    chosen = list(dict.fromkeys([v.strip() for v in args.variants.split(",") if v.strip()] +
                                [s.partition("=")[0].strip() for s in args.variant]))
    unknown = [v for v in chosen if v not in variants]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; choose from {list(variants)} or add one with --variant NAME=...")
    args.variants = {v: variants[v] for v in chosen}
    args.compile, args.peak_flops = False, None  # what benchmark.py's helpers read
    return args


def compose_variant(overrides: list[str], args: argparse.Namespace):
    """The composed train config of one variant; --tiny sizes apply to the keys the variant has."""
    base = ["+experiment=self", "trainer=cpu", f"data={args.data}", *overrides, *args.override]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=base)
        if not args.tiny:
            return cfg
        sizes = [o for o in TINY["transformer"] if OmegaConf.select(cfg, o.split("=")[0]) is not None]
        return compose(config_name="train", overrides=base + sizes)  # e.g. AAN has no num_heads


def state_bytes(model, src_ids: list[list[int]], steps: int, device: torch.device) -> dict:
    """The decoder state after `steps` greedy steps on one batch: bytes per sentence, all and self-attention."""
    batch = collate(src_ids, [[EOS_ID]] * len(src_ids), list(range(len(src_ids))), PAD_ID, BOS_ID, EOS_ID)
    with torch.no_grad():
        enc = model.encode(batch.src.to(device), batch.src_lengths.to(device))
        state = model.init_state(enc)
        prev = torch.full((len(src_ids), 1), BOS_ID, device=device)  # (B, 1)
        for _ in range(steps):
            out = model.decode(prev, enc, state)
            state, prev = out.state, out.logits[:, -1:].argmax(-1)  # (B, 1)
    size = {k: v.numel() * v.element_size() for k, v in state.items()}
    return {"state_bytes_per_sent": sum(size.values()) / len(src_ids),
            "self_cache_bytes_per_sent": sum(b for k, b in size.items() if k.startswith("self_")) / len(src_ids)}


def time_beam(model, cfg, src_ids: list[list[int]], args: argparse.Namespace, device: torch.device) -> dict:
    """Beam sentences/s over src_ids with the run's decode settings (configs/decode/) at --beam, the length
    limit of --max-len-a/b and eos held back until it (benchmark.LengthLimited), after an untimed warm-up."""
    settings = replace(decode_settings(cfg), beam_size=args.beam, max_len_a=args.max_len_a, max_len_b=args.max_len_b,
                       max_sentences=args.decode_batch, nbest=1, max_input_tokens=max(map(len, src_ids)))
    limited = benchmark.LengthLimited(model.eval(), EOS_ID)
    with torch.no_grad():
        translate_ids(limited, src_ids[:2], settings, pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, device=device)
        benchmark.sync(device)
        start = time.perf_counter()
        hyp = translate_ids(limited, src_ids, settings, pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, device=device)
        benchmark.sync(device)
    return {"beam_sent_s": len(src_ids) / (time.perf_counter() - start),
            "beam_out_len": statistics.mean(len(t) + 1 for t in hyp.tokens)}


def bench_variant(cfg, args: argparse.Namespace, data, device: torch.device, batches, src_ids) -> dict:
    """Training, beam and state figures of one composed variant."""
    torch.manual_seed(args.seed)
    model = build_model(cfg.model, len(data.src_tok), len(data.tgt_tok), data.tgt_tok.pad_id).to(device)
    result = {"params": model.num_parameters(), **benchmark.time_training(model, cfg, batches, args, device)}
    result.update(time_beam(model, cfg, src_ids, args, device))
    result.update(state_bytes(model, src_ids[: args.decode_batch], args.cache_steps, device))
    return result


def real_data(args: argparse.Namespace):
    """Tokenised data (cached by content), the training batches and the validation sources decoded."""
    cfg = compose_variant([], args)
    d = cfg.data
    data = prepare_data(build_corpus(d.corpus), dict(d.splits), OmegaConf.to_container(d.tokenizer, resolve=True),
                        d.max_len, d.cache_dir, train_max_tgt_len=d.train_max_tgt_len)
    tok = data.tgt_tok
    batches = []
    for batch in make_batches(data.train, args.max_tokens, True, args.seed, tok.pad_id, tok.bos_id, tok.eos_id):
        batches.append(batch)
        if len(batches) == args.warmup + args.steps:
            break
    src_ids = [data.valid[i]["src_ids"] for i in range(min(args.decode_sentences, len(data.valid)))]
    return data, batches, src_ids


def markdown_table(report: dict) -> str:
    m, beam = report["machine"], report["settings"]["beam"]
    head = ["variant", "overrides", "params (M)", "train tgt tok/s", "step ms", f"beam{beam} sent/s",
            "state KiB/sent", "self-attn cache KiB/sent"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in report["results"].items():
        shown = " ".join(f"`{o}`" for o in r["overrides"]) or "(none)"
        if "error" in r:
            rows.append(f"| {name} | {shown} | not run: {r['error']} |" + " |" * (len(head) - 3))
            continue
        rows.append(f"| {name} | {shown} | {r['params'] / 1e6:.2f} | {r['train_tgt_tok_s']:,.0f} | "
                    f"{r['step_ms']:.1f} | "
                    f"{r['beam_sent_s']:.1f} | {r['state_bytes_per_sent'] / 1024:.1f} | "
                    f"{r['self_cache_bytes_per_sent'] / 1024:.1f} |")
    rows.append(f"\n{m['device']} ({m['device_type']}, {m['cpu_count']} CPUs, torch {m['torch']}); state after "
                f"{report['settings']['cache_steps']} greedy steps; 1-min load average "
                f"{fmt(m['loadavg_1m_start'], '.2f')} before, {fmt(m.get('loadavg_1m_end'), '.2f')} after.")
    return "\n".join(rows) + "\n"


def run_variants(args: argparse.Namespace) -> dict:
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    args.amp = device.type == "cuda"
    data, batches, src_ids = real_data(args)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "length_buckets"}
    report = {"machine": benchmark.machine_info(device, args), "settings": settings, "results": {}}
    for name, overrides in args.variants.items():
        print(f"[position_bench] {name} ...", file=sys.stderr, flush=True)
        try:
            cfg = compose_variant(overrides, args)
        except Exception as err:  # a variant whose configs are missing or bad: say so, run the others
            report["results"][name] = {"overrides": overrides, "error": str(err).splitlines()[0]}
            continue
        report["results"][name] = {"overrides": overrides, **bench_variant(cfg, args, data, device, batches, src_ids)}
    report["machine"]["loadavg_1m_end"] = loadavg()
    return report


def length_buckets(run_dir: Path) -> dict:
    """Test BLEU of one finished run per source-length bucket (words) from its test.beam.hyp.txt."""
    config = RunConfig.load(run_dir / "config.yaml")
    split = config.data.split_name("test")
    sources = build_corpus(config.data.corpus).load(split)["src"]
    hyps = (run_dir / "test.beam.hyp.txt").read_text(encoding="utf-8").split("\n")[: len(sources)]
    refs = (run_dir / "test.ref.txt").read_text(encoding="utf-8").split("\n")[: len(sources)]
    if len(hyps) != len(sources) or len(refs) != len(sources):
        raise ValueError(f"{run_dir}: test.beam.hyp.txt / test.ref.txt do not have the {len(sources)} lines of "
                         f"split {split}: pass a finished run (nmt-train writes them after training)")
    out = {"split": split, "all": {"n": len(sources), "bleu": corpus_scores(hyps, refs)["bleu"]}}
    words = [len(s.split()) for s in sources]
    for name, lo, hi in BUCKETS:
        rows = [i for i, n in enumerate(words) if n >= lo and (hi is None or n <= hi)]
        bleu = corpus_scores([hyps[i] for i in rows], [refs[i] for i in rows])["bleu"] if rows else None
        out[name] = {"n": len(rows), "bleu": bleu}
    return out


def buckets_table(report: dict) -> str:
    names = [name for name, _, _ in BUCKETS]
    head = ["run", "split", *[f"BLEU {n} words (n)" for n in names], "BLEU all (n)"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run, r in report.items():
        cells = [f"{fmt(r[n]['bleu'], '.2f')} ({r[n]['n']})" for n in [*names, "all"]]
        rows.append("| " + " | ".join([run, r["split"], *cells]) + " |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.length_buckets:
        report = {str(run): length_buckets(run) for run in args.length_buckets}
        table = buckets_table(report)
    else:
        report = run_variants(args)
        table = markdown_table(report)
    return benchmark.write_report(report, table, args)


if __name__ == "__main__":
    main()
