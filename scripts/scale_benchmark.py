#!/usr/bin/env python3
"""Scale benchmark for the data pipeline (issue #13): a synthetic corpus of N pairs through nmt-train.

Generates N synthetic sentence pairs with Multi30k-like lengths (text files, data=text_dir), then
reports, each from its own process:

  build     cold cache build (hash, tokenizer sample + training, streamed encoding): seconds, peak RSS
  single    one training process (warm cache): time to first step, peak RSS, RSS before the data
            were loaded (imports + runtime; the model is built after the data), train tokens/s after
            the first --skip-steps steps
  ddp       2 ranks (torchrun, gloo on CPU): the same figures per rank, plus proportional (PSS) and
            private (USS) memory at the end, which count shared mmap pages once

    python scripts/scale_benchmark.py --pairs 100000 --steps 150 --work /tmp/scale --out scale.json

--reference also trains the same model with the same settings on Multi30k de-en (NMT_DATA_DIR) in
one process and reports tokens_per_s_vs_multi30k (the issue's "within 5 %" target).

Training goes through ``python -m nmt.cli.train`` (the real entry point); a worker wrapper around
it records RSS and per-step times through the trainer's Callbacks. Figures, not assertions.
"""
from __future__ import annotations

import time

START = time.time()  # before the heavy imports: "time to first step" counts them

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# A small RNN: the benchmark measures the data path, so the model must not hide it.
MODEL = ["model.encoder.emb_size=64", "model.encoder.hidden_size=64", "model.decoder.emb_size=64",
         "model.decoder.hidden_size=64", "model.tie_embeddings=false"]
SYLLABLES = {"src": ["ka", "te", "ro", "mi", "su", "na", "lo", "pe", "di", "gu", "ba", "fe", "zo", "ri"],
             "tgt": ["an", "el", "os", "ut", "ir", "am", "ed", "ol", "us", "ex", "ob", "ik", "ar", "em"]}
REPORT_FIELDS = ["pairs", "build_s", "build_peak_rss_mb", "single", "ddp", "machine"]
RUN_FIELDS = ["time_to_first_step_s", "peak_rss_mb", "rss_before_data_mb", "tokens_per_s", "steps", "pss_mb",
              "uss_mb"]


# --------------------------------------------------------------------------- synthetic corpus


def vocabulary(side: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """size distinct pseudo-words of 1-4 syllables."""
    syl = SYLLABLES[side]
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(syl, rng.integers(1, 5))))
    return np.array(sorted(words))


def write_split(directory: Path, name: str, n: int, seed: int) -> None:
    """Write <name>.src / <name>.tgt with n pairs: Zipfian words, lengths ~ Multi30k (mean 12, sd 4)."""
    rng = np.random.default_rng(seed)
    vocab = {side: vocabulary(side, 6000, np.random.default_rng(i)) for i, side in enumerate(SYLLABLES)}
    p = 1.0 / (np.arange(6000) + 2.7)
    p /= p.sum()                                                                              # (V,)
    with open(directory / f"{name}.src", "w") as fs, open(directory / f"{name}.tgt", "w") as ft:
        for start in range(0, n, 50_000):
            m = min(50_000, n - start)
            lengths = np.clip(np.rint(rng.normal(12.0, 4.0, m)), 2, 45).astype(np.int64)  # (m,)
            words = rng.choice(6000, size=int(lengths.sum()), p=p)                           # (sum len,)
            cuts = np.cumsum(lengths)[:-1]
            src = [" ".join(vocab["src"][w]) for w in np.split(words, cuts)]
            tgt = [" ".join(vocab["tgt"][w[::-1]]) + " ." for w in np.split(words, cuts)]   # "reordered"
            fs.write("\n".join(src) + "\n")
            ft.write("\n".join(tgt) + "\n")


def make_corpus(directory: Path, pairs: int, eval_pairs: int) -> Path:
    """Generate the corpus once per (pairs, eval_pairs); a marker file says it is complete."""
    marker = directory / "complete.json"
    if marker.is_file() and json.loads(marker.read_text()) == {"pairs": pairs, "eval_pairs": eval_pairs}:
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    for i, (name, n) in enumerate((("train", pairs), ("valid", eval_pairs), ("test", eval_pairs))):
        write_split(directory, name, n, seed=i)
    marker.write_text(json.dumps({"pairs": pairs, "eval_pairs": eval_pairs}))
    return directory


# --------------------------------------------------------------------------- worker (inside nmt-train)


def memory_now() -> dict[str, float]:
    """Current RSS, PSS (shared pages divided among their users) and USS (private) in MB, from smaps_rollup."""
    fields = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0]) / 1024
    return {"rss_mb": fields["Rss"], "pss_mb": fields["Pss"],
            "uss_mb": fields["Private_Clean"] + fields["Private_Dirty"]}


def worker(out: Path, overrides: list[str]) -> None:
    """Run nmt.cli.train.main() with overrides, recording step times and memory into out/rank<r>.json."""
    import nmt.cli.train as cli
    from nmt.training.trainer import Callbacks

    stats = {"steps": [], "rss_before_data_mb": None}

    class Probe(Callbacks):  # the trainer's own hooks: nothing of nmt is patched
        def on_start(self):
            stats["rss_before_data_mb"] = memory_now()["rss_mb"]

        def on_step(self, trainer, result):
            stats["steps"].append((time.time(), int(result["tokens"])))

    sys.argv = [sys.argv[0], *overrides]
    try:
        cli.main([Probe()])
    finally:
        stats.update(memory_now())
        stats["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        stats["start"] = START
        rank = os.environ.get("RANK", "0")
        (out / f"rank{rank}.json").write_text(json.dumps(stats))


def summarise(stats: dict, skip: int) -> dict:
    """A run's figures from a worker's record: time to first step, tokens/s after `skip` steps."""
    steps = stats["steps"]
    if len(steps) <= skip:
        raise RuntimeError(f"only {len(steps)} steps ran; --steps must exceed --skip-steps ({skip})")
    times = np.array([t for t, _ in steps])                                                   # (n,)
    tokens = np.array([k for _, k in steps])                                                  # (n,)
    return {"time_to_first_step_s": round(times[0] - stats["start"], 2),
            "tokens_per_s": round(float(tokens[skip:].sum() / (times[-1] - times[skip - 1])), 1),
            "steps": len(steps), "peak_rss_mb": round(stats["peak_rss_mb"], 1),
            "rss_before_data_mb": round(stats["rss_before_data_mb"], 1),
            "pss_mb": round(stats["pss_mb"], 1), "uss_mb": round(stats["uss_mb"], 1)}


# --------------------------------------------------------------------------- driver


def data_overrides(corpus: Path | None) -> list[str]:
    """The synthetic corpus (data=text_dir), or None: Multi30k de-en (the default data, NMT_DATA_DIR)."""
    if corpus is None:
        return ["data=multi30k_de_en"]
    return ["data=text_dir", f"data.corpus.directory={corpus}", "data.src_lang=src", "data.tgt_lang=tgt"]


def train_overrides(args, corpus: Path | None, cache: Path, run_dir: Path, ranks: int) -> list[str]:
    """nmt-train overrides: the corpus, the small model, a fixed step count."""
    return [*data_overrides(corpus), f"data.cache_dir={cache}", f"data.tokenizer.vocab_size={args.vocab}",
            "trainer=cpu", *MODEL,
            f"trainer.max_steps={args.steps}", f"trainer.max_tokens={args.max_tokens}",
            f"trainer.accum_steps={2 // ranks}", "trainer.valid_every=1000000", "trainer.save_every=1000000",
            "trainer.valid_max_sentences=20", "decode.beam_size=1", "trainer.num_threads=1",
            "logger.progress_bar=false", f"run_dir={run_dir}", f"hydra.run.dir={run_dir}", *args.extra]


def run_training(args, corpus: Path | None, cache: Path, name: str, ranks: int) -> list[dict]:
    """One training run through the worker; returns each rank's figures."""
    out = args.work / f"{name}-stats"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("rank*.json"):
        old.unlink()
    run_dir = args.work / f"{name}-run-{time.time_ns()}"
    launcher = ([sys.executable] if ranks == 1 else
                [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}",
                 f"--master_port={args.port}"])
    cmd = [*launcher, str(Path(__file__).resolve()), "--worker", str(out), "--",
           *train_overrides(args, corpus, cache, run_dir, ranks)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired as e:  # a rank stuck (e.g. in gloo's teardown) must not hang the caller
        raise RuntimeError(f"{name} training did not finish within --timeout {args.timeout} s; its run dir: "
                           f"{run_dir}") from e
    if proc.returncode != 0:
        raise RuntimeError(f"{name} training failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    return [summarise(json.loads((out / f"rank{r}.json").read_text()), args.skip_steps) for r in range(ranks)]


def build_cache(args, corpus: Path, cache: Path) -> dict:
    """Cold cache build in a fresh process: seconds and peak RSS."""
    code = ("import json, resource, sys, time; from hydra.utils import instantiate; from omegaconf import OmegaConf\n"
            "from nmt.data.pipeline import prepare_data\n"
            "d = OmegaConf.create(json.loads(sys.argv[1])); t = time.time()\n"
            "b = prepare_data(instantiate(d.corpus), dict(d.splits), OmegaConf.to_container(d.tokenizer), d.max_len,"
            " d.cache_dir)\n"
            "print(json.dumps({'build_s': time.time() - t, 'train_pairs': len(b.train),"
            " 'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))")
    data = data_config(args, corpus, cache)
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(data)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        raise RuntimeError(f"cache build failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def data_config(args, corpus: Path, cache: Path) -> dict:
    """The composed data config of a training run, as plain data (configs/data/text_dir.yaml + overrides)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    overrides = [o for o in train_overrides(args, corpus, cache, args.work, 1) if o.startswith("data")]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return OmegaConf.to_container(cfg.data, resolve=True)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", type=int, required=True, help="synthetic training pairs")
    p.add_argument("--eval-pairs", type=int, default=200, help="pairs in valid and test")
    p.add_argument("--steps", type=int, default=150, help="optimiser steps per training run")
    p.add_argument("--skip-steps", type=int, default=50, help="steps excluded from tokens/s")
    p.add_argument("--max-tokens", type=int, default=2000)
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--port", type=int, default=29561)
    p.add_argument("--work", type=Path, required=True, help="corpus, caches and runs go here")
    p.add_argument("--out", type=Path, help="write the report as JSON")
    p.add_argument("--no-ddp", action="store_true", help="skip the 2-rank run")
    p.add_argument("--timeout", type=float, default=None, help="seconds a training run may take (default: no limit)")
    p.add_argument("--reference", action="store_true",
                   help="also train the same model on Multi30k de-en (NMT_DATA_DIR) for the tokens/s ratio")
    p.add_argument("extra", nargs="*", help="more nmt-train overrides")
    args = p.parse_args(argv)
    corpus = make_corpus(args.work / f"corpus-{args.pairs}", args.pairs, args.eval_pairs)
    cache = args.work / f"cache-{args.pairs}"
    if cache.exists():
        subprocess.run(["rm", "-rf", str(cache)], check=True)
    build = build_cache(args, corpus, cache)
    report = {"pairs": args.pairs, "train_pairs_kept": build["train_pairs"], "build_s": round(build["build_s"], 1),
              "build_peak_rss_mb": round(build["peak_rss_mb"], 1),
              "single": run_training(args, corpus, cache, "single", 1)[0],
              "ddp": None if args.no_ddp else run_training(args, corpus, cache, "ddp", 2),
              "machine": f"{platform.node()} {os.cpu_count()} CPUs", "steps": args.steps,
              "skip_steps": args.skip_steps, "max_tokens": args.max_tokens}
    if args.reference:
        ref = run_training(args, None, args.work / "cache-multi30k", "multi30k", 1)[0]
        report["multi30k"] = ref
        report["tokens_per_s_vs_multi30k"] = round(report["single"]["tokens_per_s"] / ref["tokens_per_s"], 3)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker(Path(sys.argv[2]), sys.argv[4:])
    else:
        main()
