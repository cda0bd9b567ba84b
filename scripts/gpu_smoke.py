#!/usr/bin/env python3
"""The first GPU run in one command: every GPU path of nmt once, each with the figure behind its verdict.

    bash scripts/gpu_smoke.sh OUT                  # on one CUDA GPU: wheels from .whl installed first (~5 min)
    python3 scripts/gpu_smoke.py OUT --quick       # on CPU: the CUDA rows say "skipped: no CUDA" (~1-2 min)

Tiny models on the generated toy task (configs/data/toy.yaml), so every row takes seconds. Prints one table
(row, result, figure, seconds) and writes OUT/smoke.json, OUT/smoke.md and OUT/smoke.log (every training's
log). Exit status 0 when no row failed, 1 otherwise. docs/gpu_race.md "Smoke test (first GPU run)" says what
each row settles. Training runs in this process through the library's train() (as the tests do), except
where a fresh process is the point: Ctrl-C and resume, torchrun, the out-of-memory exit.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import math
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]  # nmt of this checkout; bench_common beside
from bench_common import TINY  # noqa: E402 (standard library only)

log = logging.getLogger("gpu_smoke")


@dataclass(frozen=True)
class Sizes:
    """Steps and data of one mode: --quick (the CPU test) or the full GPU run."""
    steps: int          # optimiser steps of the train rows (loss must fall over them)
    max_tokens: int     # trainer.max_tokens of every row but the OOM row
    eval_size: int      # toy valid/test sentences (final evaluation, beam decode)
    warmup: int         # optim.warmup_steps
    compile_steps: int  # steps of the compiled Transformer (varying batch shapes)


QUICK = Sizes(steps=20, max_tokens=400, eval_size=20, warmup=5, compile_steps=8)
FULL = Sizes(steps=200, max_tokens=4000, eval_size=200, warmup=20, compile_steps=40)
LOG_EVERY = 5
RESUME_STEPS, CUT_STEP = 12, 7          # Ctrl-C after step 7: two steps of the log window are unlogged
LOSS_WINDOW, LOSS_DROP = 5, 0.10        # mean loss of the last 5 steps at least 10% under the first 5's
COMPILE_GRAPH_BOUND = 2                 # dynamo graphs for every batch shape of the Transformer step
OOM_CAP_MIB = 256                       # the OOM row caps this process's CUDA memory here...
OOM_MAX_TOKENS = 10_000_000             # ...and asks for one batch of the whole toy corpus
OOM_MODEL = ["model.encoder.d_model=512", "model.encoder.ff_size=4096", "model.decoder.ff_size=4096",
             "model.encoder.num_layers=1", "model.decoder.num_layers=1"]
TORCHRUN_STEPS = 20                     # nmt-train under torchrun: the launch is the point, not the learning
CHILD_TIMEOUT_S = 900                   # a guard against a hung child; a loaded 2-core CPU needs minutes to start one
PACKAGES = ("datasets", "pyarrow", "hydra-core", "omegaconf", "sentencepiece", "sacrebleu")  # versions in the header


@dataclass
class Row:
    """One line of the table: PASS, FAIL or "skipped: <why>", and the figure behind it."""
    name: str
    what: str
    cuda_only: bool
    result: str = "not run"
    figure: str = ""
    seconds: float = 0.0
    details: dict = field(default_factory=dict)


@dataclass
class Smoke:
    """What the rows share: settings, the work directory, the CUDA flag and what earlier rows left."""
    out: Path
    work: Path
    sizes: Sizes
    cuda: bool
    broken: str | None            # --break ROW: a failure injected there (tests the FAIL path)
    log_path: Path
    resume: "ResumeChildren | None" = None      # the resume row's processes, started with the smoke test
    runs: dict = field(default_factory=dict)     # row -> (run_dir, overrides) of its training
    metrics: dict = field(default_factory=dict)  # row -> metrics.json of its training


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("out", type=Path, help="folder for smoke.json, smoke.md and smoke.log ($OUT on the GPU machine)")
    p.add_argument("--quick", action="store_true", help=f"CPU-test sizes: {QUICK}")
    p.add_argument("--work", type=Path, default=None, help="run directories and caches (default: a new temporary "
                   "folder, outside OUT: only the three result files come back from a GPU machine)")
    p.add_argument("--rows", nargs="+", default=None, help=f"only these rows (default all: {list(ROWS)})")
    p.add_argument("--break", dest="broken", default=None, metavar="ROW",
                   help="inject a failure into ROW (a NaN loss in a train row, an error elsewhere): the FAIL path")
    args = p.parse_args(argv)
    for name in [*(args.rows or []), *([args.broken] if args.broken else [])]:
        if name not in ROWS:
            p.error(f"unknown row {name!r}; choose from {list(ROWS)}")
    return args


# ------------------------------------------------------------------------------------------- verdicts
def judge_train(losses: list[float], stopped: str) -> tuple[bool, str]:
    """Loss falls (mean of the last LOSS_WINDOW steps >= LOSS_DROP under the first's), no NaN, ran to max_steps."""
    bad = [i + 1 for i, v in enumerate(losses) if not math.isfinite(v)]
    if bad:
        return False, f"non-finite loss at step {bad[0]} of {len(losses)}"
    if len(losses) < 2 * LOSS_WINDOW:
        return False, f"only {len(losses)} steps ran (stopped: {stopped})"
    first, last = (sum(w) / len(w) for w in (losses[:LOSS_WINDOW], losses[-LOSS_WINDOW:]))
    figure = f"loss {first:.3f} -> {last:.3f} over {len(losses)} steps"
    if stopped != "max_steps":
        return False, f"{figure}, but it stopped by {stopped!r}"
    return last <= first * (1 - LOSS_DROP), figure


def judge_resume(exact: bool, weight_diff: float, loss_diff: float, resumed_at: int, stopped: str,
                 unlogged: int) -> tuple[bool, str]:
    """The cut checkpoint says SIGINT and holds the unlogged steps; the run resumed there and finished; bit-identical
    to the uninterrupted run where `exact` (CPU), else (CUDA kernels are not bit-deterministic: docs/faults.md)
    the difference, within a loose bound."""
    where = f"SIGINT after step {CUT_STEP} ({unlogged} unlogged, log_every {LOG_EVERY}), resumed at {resumed_at}"
    if "interrupted by SIGINT" not in stopped:
        return False, f"the checkpoint of step {CUT_STEP} says stopped={stopped!r}, not interrupted by SIGINT"
    if resumed_at != CUT_STEP or unlogged != CUT_STEP % LOG_EVERY:
        return False, f"{where}: expected to resume at {CUT_STEP} with {CUT_STEP % LOG_EVERY} unlogged steps"
    if weight_diff == 0 and loss_diff == 0:
        return True, f"{where}: step {RESUME_STEPS} bit-identical to an uninterrupted run (weights, logged losses)"
    figure = f"{where}: at step {RESUME_STEPS} max |dw| {weight_diff:.2e}, max |dloss| {loss_diff:.2e}"
    if exact:
        return False, f"{figure} (bit-identical promised here)"
    return loss_diff < 0.05, f"{figure} (not bit-identical on CUDA: docs/faults.md)"


def judge_compile(graphs: int, breaks: dict, shapes: int, losses: list[float]) -> tuple[bool, str]:
    """0 graph breaks, at most COMPILE_GRAPH_BOUND graphs for every batch shape, finite losses."""
    figure = f"{graphs} graph(s), {sum(breaks.values())} break(s) over {len(losses)} steps of {shapes} batch shapes"
    if breaks:
        reason = sorted(breaks)[0].splitlines()
        context = next((ln.strip() for ln in reason if "debug context" in ln), "")
        return False, f"{figure}: {reason[0][:100]} {context[:200]}".rstrip()
    if not all(math.isfinite(v) for v in losses):
        return False, f"{figure}: non-finite loss"
    return 0 < graphs <= COMPILE_GRAPH_BOUND, figure


def judge_oom(rc: int, stderr: str, checkpoints: list[str]) -> tuple[bool, str]:
    """nmt-train exits 1 with one `nmt-train: ...` line naming trainer.max_tokens, no traceback, no checkpoint."""
    lines = [ln for ln in stderr.splitlines() if "trainer.max_tokens" in ln]
    if rc != 1:
        last = stderr.strip().splitlines()[-1][:160] if stderr.strip() else ""
        return False, f"exit status {rc}, not 1: {last}"
    if "Traceback" in stderr:
        return False, "exit 1, but with a traceback"
    if not lines or not lines[0].startswith("nmt-train: "):
        return False, "exit 1, but no `nmt-train: ...` line names trainer.max_tokens"
    if checkpoints:
        return False, f"exit 1, but a checkpoint was written: {', '.join(checkpoints)}"
    return True, f"exit 1, no checkpoint: {lines[0][:200]}"


def judge_lstm_dtypes(seen: dict[str, set[str]]) -> tuple[bool, str]:
    """Under bf16 autocast the recurrent kernels must get float32 (nmt runs its RNNs outside autocast)."""
    if not seen:
        return False, "no RNN kernel seen in the step"
    figure = "; ".join(f"{op}: {', '.join(sorted(d))}" for op, d in sorted(seen.items()))
    return all(d == {"torch.float32"} for d in seen.values()), figure


# ------------------------------------------------------------------------------------------- running nmt
def train_args(smoke: Smoke, family: str, run_dir: Path, steps: int, *extra: str, cache: str = "cache") -> list[str]:
    """nmt-train overrides: a tiny model of `family` on the toy task, trainer=gpu on CUDA (bf16), else cpu;
    tokenizer and id caches in WORK/<cache>."""
    s = smoke.sizes
    return [f"model={family}", *TINY[family], f"trainer={'gpu' if smoke.cuda else 'cpu'}", "data=toy",
            f"data.corpus.eval_size={s.eval_size}", f"data.cache_dir={smoke.work / cache}",
            f"trainer.max_tokens={s.max_tokens}", f"trainer.max_steps={steps}", f"trainer.log_every={LOG_EVERY}",
            "trainer.valid_every=100000", "trainer.save_every=100000", f"optim.warmup_steps={s.warmup}",
            "logger.progress_bar=false", "logger.probe_sentences=0", "logger.stats_sentences=0",
            *([] if smoke.cuda else ["trainer.num_threads=1"]), f"run_dir={run_dir}", *extra]


def compose(overrides: list[str]):
    from nmt.cli.errors import compose_checked
    return compose_checked("train", overrides)


def train_here(overrides: list[str], callbacks=()) -> dict:
    """What nmt-train does, in this process: compose, typed settings, nmt.training.session.train."""
    from nmt.cli.train import run_settings
    from nmt.training.session import train
    return train(run_settings(compose(overrides)), callbacks)


def losses_callback():
    """A Callbacks that keeps every step's loss (device tensors; read once at the end)."""
    from nmt.training.trainer import Callbacks

    class Losses(Callbacks):
        def __init__(self):
            self.values, self.times = [], []

        def on_step(self, trainer, result):
            self.values.append(result["loss"].detach().float())
            self.times.append(time.perf_counter())

        def read(self) -> list[float]:
            import torch
            return torch.stack(self.values).cpu().tolist() if self.values else []
    return Losses()


def child_env() -> dict:
    """Children import nmt from this checkout, whatever the working directory."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def run_child(smoke: Smoke, label: str, cmd: list[str], timeout: float = CHILD_TIMEOUT_S) -> tuple[int, str]:
    """Run cmd to the end; its output goes to smoke.log; -> (exit status, stderr+stdout)."""
    proc = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=timeout)
    keep_output(smoke, label, cmd, proc.stdout + proc.stderr)
    return proc.returncode, proc.stderr + proc.stdout


def keep_output(smoke: Smoke, label: str, cmd: list[str], text: str) -> None:
    with smoke.log_path.open("a") as f:
        f.write(f"\n===== {label}: {' '.join(cmd)}\n{text}\n===== end of {label}\n")


def nmt_train_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "nmt.cli.train", *args]


def this_script(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def peak_note(metrics: dict) -> str:
    return f"{metrics.get('peak_memory_mb', 0):,.0f} MiB ({metrics.get('peak_memory_kind')})"


# ------------------------------------------------------------------------------------------- the rows
def row_train(smoke: Smoke, name: str, family: str) -> tuple[bool, str, dict]:
    """A few hundred (quick: 20) steps of a tiny model: the loss falls, no NaN; bf16 autocast on CUDA."""
    run_dir = smoke.work / name
    overrides = train_args(smoke, family, run_dir, smoke.sizes.steps)
    losses = losses_callback()
    metrics = train_here(overrides, [losses])
    smoke.runs[name], smoke.metrics[name] = (run_dir, overrides), metrics
    values = losses.read()
    if smoke.broken == name:
        values[2] = float("nan")
    ok, figure = judge_train(values, metrics.get("stopped", ""))
    amp = "bf16" if compose(overrides).trainer.amp else "fp32"
    return ok, f"{figure}, {amp}, {metrics['train_tokens_per_s']:,.0f} tgt tok/s", {
        "losses": values, "amp": amp, "train_tokens_per_s": metrics["train_tokens_per_s"],
        "peak_memory": peak_note(metrics)}


def row_lstm_dtype(smoke: Smoke) -> tuple[bool, str, dict]:
    """The dtypes reaching the recurrent kernels in one bf16 train step of the default RNN (nmt's own step)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    from nmt.data.batching import collate
    from nmt.models.build import build_model
    from nmt.training.step import StepParts, train_step

    class RnnDtypes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen: dict[str, set[str]] = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            op = func.overloadpacket.__name__
            if "rnn" in op or "lstm" in op or "gru" in op:
                floats = {str(a.dtype) for a in tree_flatten((args, kwargs))[0]
                          if isinstance(a, torch.Tensor) and a.is_floating_point()}
                self.seen.setdefault(op, set()).update(floats)
            return func(*args, **(kwargs or {}))

    device = torch.device("cuda")
    cfg = compose(train_args(smoke, "rnn", smoke.work / "lstm_dtype", 1))
    model = build_model(cfg.model, 30, 30, 0).to(device).train()
    batch = collate([[5, 6, 7, 8], [9, 10]], [[5, 6], [7, 8, 9]], [0, 1], 0, 1, 2)
    parts = StepParts(net=model, model=model, optimizer=torch.optim.Adam(model.parameters()), pad_id=0,
                      label_smoothing=0.1, clip_grad_norm=1.0, amp=True, device=device, world=1)
    with RnnDtypes() as mode:
        train_step(parts, [batch], batch.n_tgt_tokens)
    ok, figure = judge_lstm_dtypes(mode.seen)
    return ok, figure, {op: sorted(d) for op, d in mode.seen.items()}


def wait_for(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    t0 = time.monotonic()
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"the run to interrupt ended (exit {proc.returncode}) before step {CUT_STEP}")
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"the run to interrupt did not reach step {CUT_STEP} in {timeout:.0f} s")
        time.sleep(0.05)


class ResumeChildren:
    """The resume row's two nmt-train processes, run by a thread from the start (two fresh processes are most of
    the row's time) while this process trains the other rows: the run Ctrl-C'd after step CUT_STEP, then the
    README's `nmt-train trainer.resume=true run_dir=...`. Their own cache dir: no two processes build one cache."""

    def __init__(self, smoke: Smoke):
        self.smoke, self.run_dir = smoke, smoke.work / "resume_cut"
        self.outputs: list[tuple[str, list[str], str]] = []  # (label, command, output) for smoke.log
        self.codes: dict[str, int] = {}
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self.run, name="smoke-resume", daemon=True)
        self.thread.start()

    def run(self) -> None:
        try:
            self.codes["interrupted"] = self.interrupted()
            if self.codes["interrupted"] == 0:
                cmd = nmt_train_cmd("trainer.resume=true", f"run_dir={self.run_dir}")
                proc = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True,
                                      timeout=CHILD_TIMEOUT_S)
                self.outputs.append(("resume: nmt-train trainer.resume=true", cmd, proc.stdout + proc.stderr))
                self.codes["resumed"] = proc.returncode
        except BaseException as e:  # noqa: BLE001 (raised again by join, in the row)
            self.error = e

    def interrupted(self) -> int:
        """nmt-train in a child, paused after step CUT_STEP until this thread sends it SIGINT (Ctrl-C)."""
        marker = self.smoke.work / "resume_at_cut"
        overrides = train_args(self.smoke, "rnn", self.run_dir, RESUME_STEPS, cache="cache_resume")
        cmd = this_script("--child", "--pause-at", str(CUT_STEP), "--marker", str(marker), "--", *overrides)
        with (self.smoke.work / "resume_cut.log").open("w+") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdout=out, stderr=subprocess.STDOUT, text=True)
            try:
                wait_for(marker, proc, CHILD_TIMEOUT_S)
                proc.send_signal(signal.SIGINT)
                return proc.wait(timeout=CHILD_TIMEOUT_S)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                out.seek(0)
                self.outputs.append(("resume: the run interrupted by SIGINT", cmd, out.read()))

    def join(self) -> tuple[dict[str, int], str]:
        """Wait for both; their output goes to smoke.log; -> (exit codes, the resumed run's output)."""
        self.thread.join(3 * CHILD_TIMEOUT_S)
        for label, cmd, text in self.outputs:
            keep_output(self.smoke, label, cmd, text)
        if self.thread.is_alive():
            raise TimeoutError("the interrupted and resumed runs did not end in time (smoke.log)")
        if self.error is not None:
            raise self.error
        return self.codes, self.outputs[-1][2]


def tb_losses(run_dir: Path) -> dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars("train/loss")}


def row_resume(smoke: Smoke) -> tuple[bool, str, dict]:
    """Ctrl-C (SIGINT) a training child after step CUT_STEP (not a multiple of log_every), resume it with the
    README's command, and compare with an uninterrupted run of the same config (trained here)."""
    import torch
    codes, out = (smoke.resume or ResumeChildren(smoke)).join()
    if codes.get("interrupted") != 0 or codes.get("resumed") != 0:
        raise RuntimeError(f"exit status of the interrupted run {codes.get('interrupted')}, of the resumed run "
                           f"{codes.get('resumed')}; 0 expected (smoke.log)")
    ref_dir, cut_dir = smoke.work / "resume_ref", smoke.work / "resume_cut"
    train_here(train_args(smoke, "rnn", ref_dir, RESUME_STEPS, cache="cache_resume"))
    load = lambda d, step: torch.load(d / "checkpoints" / f"step_{step}.pt", weights_only=False,  # noqa: E731
                                      map_location="cpu")
    at_cut, ref, cut = load(cut_dir, CUT_STEP)["progress"], load(ref_dir, RESUME_STEPS), load(cut_dir, RESUME_STEPS)
    dw = max(float((t.float() - cut["model"][k].float()).abs().max()) for k, t in ref["model"].items())
    ref_tb, cut_tb = tb_losses(ref_dir), tb_losses(cut_dir)
    dl = max((abs(v - cut_tb.get(s, math.inf)) for s, v in ref_tb.items()), default=math.inf)
    found = re.search(r"resumed from \S+ \(step (\d+)", out)
    ok, figure = judge_resume(not smoke.cuda, dw, dl, int(found.group(1)) if found else -1,
                              at_cut["stopped"], len(at_cut["log_window"]))
    return ok, figure, {"stopped_at_cut": at_cut["stopped"], "unlogged_at_cut": len(at_cut["log_window"]),
                        "max_weight_diff": dw, "max_loss_diff": dl, "ref_losses": ref_tb, "resumed_losses": cut_tb}


def row_beam(smoke: Smoke) -> tuple[bool, str, dict]:
    """Beam 5 and greedy on the toy test split with each trained run: BLEU and sentences/s."""
    import nmt
    from nmt.models.build import build_corpus
    from nmt.scoring import corpus_scores
    figures, details, ok = [], {}, True
    for name in ("train_rnn", "train_transformer"):
        if name not in smoke.runs:
            return False, f"{name} did not train (its row failed or was not run)", details
        run_dir, overrides = smoke.runs[name]
        cfg = compose(overrides)
        test = build_corpus(cfg.data.corpus).load(cfg.data.splits.test)
        src, refs = list(test["src"]), list(test["tgt"])
        model = nmt.load(run_dir, checkpoint="best", device="cuda" if smoke.cuda else "cpu")
        for beam in (5, 1):
            t0 = time.perf_counter()
            hyps = model.translate(src, beam_size=beam)
            speed = len(src) / (time.perf_counter() - t0)
            bleu = corpus_scores(hyps, refs)["bleu"]
            details[f"{name}_beam{beam}"] = {"bleu": bleu, "sentences_per_s": speed, "sentences": len(hyps)}
            ok &= len(hyps) == len(src) and math.isfinite(bleu)
        b5, b1 = details[f"{name}_beam5"], details[f"{name}_beam1"]
        figures.append(f"{name[6:]}: beam 5 BLEU {b5['bleu']:.1f} at {b5['sentences_per_s']:,.0f} sent/s "
                       f"(greedy {b1['bleu']:.1f}, {b1['sentences_per_s']:,.0f})")
    return ok, f"{'; '.join(figures)}; {len(src)} sentences", details


def row_compile(smoke: Smoke) -> tuple[bool, str, dict]:
    """trainer.compile=true on the Transformer: inductor on CUDA, aot_eager on CPU; dynamo's counters."""
    import torch
    from torch._dynamo.utils import counters

    import nmt.training.step as step_mod
    import nmt.training.trainer as trainer_mod
    shapes, real_batch, real_net = set(), step_mod.compile_batch, trainer_mod.CompiledNet

    def recording(b, *args, **kwargs):
        shapes.add((tuple(b.src.shape), tuple(b.tgt_in.shape)))
        return real_batch(b, *args, **kwargs)
    backend = "inductor" if smoke.cuda else "aot_eager"
    torch._dynamo.reset()
    counters.clear()
    losses = losses_callback()
    with patched(step_mod, "compile_batch", recording), \
            patched(trainer_mod, "CompiledNet", lambda net: real_net(net, backend=backend)):
        t0 = time.perf_counter()
        train_here(train_args(smoke, "transformer", smoke.work / "compile", smoke.sizes.compile_steps,
                              "trainer.compile=true"), [losses])
    values = losses.read()
    graphs, breaks = counters["stats"]["unique_graphs"], dict(counters["graph_break"])
    torch._dynamo.reset()
    ok, figure = judge_compile(graphs, breaks, len(shapes), values)
    first = losses.times[0] - t0 if losses.times else math.nan
    return ok, f"{figure}, {backend}; first step {first:.1f} s after start", {
        "graphs": graphs, "graph_breaks": breaks, "batch_shapes": len(shapes), "losses": values}


@contextlib.contextmanager
def patched(owner, name: str, value) -> Iterator[None]:
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


def row_prefetch(smoke: Smoke) -> tuple[bool, str, dict]:
    """trainer.prefetch=2 on CUDA: every batch copied by the prefetch thread on a side stream, non-blocking; how
    long the step waited for it; losses against trainer.prefetch=0."""
    import torch

    import nmt.data.prefetch as prefetch
    from nmt.data.batching import Batch
    copies, waits, real_to, real_get = [], [], Batch.to, prefetch.Worker.get

    def to(self, device, non_blocking=False):
        if threading.current_thread().name == "nmt-prefetch":
            stream = torch.cuda.current_stream()
            copies.append(non_blocking and stream != torch.cuda.default_stream(stream.device))
        return real_to(self, device, non_blocking)

    def get(self):
        t0 = time.perf_counter()
        item = real_get(self)
        waits.append(time.perf_counter() - t0)
        return item
    runs = {}
    for depth in (2, 0):
        losses = losses_callback()
        with patched(Batch, "to", to), patched(prefetch.Worker, "get", get):
            train_here(train_args(smoke, "transformer", smoke.work / f"prefetch{depth}", smoke.sizes.steps,
                                  f"trainer.prefetch={depth}"), [losses])
        runs[depth] = losses.read()
    diff = max(abs(a - b) for a, b in zip(runs[2], runs[0]))
    side = sum(copies)
    figure = (f"{side} of {len(copies)} batches copied non-blocking on a side stream; the step waited "
              f"{1e3 * sum(waits) / max(len(waits), 1):.2f} ms per batch; max |dloss| vs prefetch=0: {diff:.2e}")
    ok = len(copies) >= smoke.sizes.steps and side == len(copies) and all(map(math.isfinite, runs[2]))
    return ok, figure, {"copies": len(copies), "side_stream": side, "mean_wait_s": sum(waits) / max(len(waits), 1),
                        "max_loss_diff_vs_prefetch0": diff}


def row_peak_memory(smoke: Smoke) -> tuple[bool, str, dict]:
    """metrics.json's peak_memory_mb of the train rows: the CUDA allocator's peak, per run."""
    import torch
    trained = {name: m for name, m in smoke.metrics.items()}
    if not trained:
        return False, "no train row ran", {}
    figures = [f"{name[6:]} {peak_note(m)}" for name, m in trained.items()]
    ok = all(m.get("peak_memory_kind") == "cuda_max_allocated" and m.get("peak_memory_mb", 0) > 0
             for m in trained.values())
    process = torch.cuda.max_memory_allocated() / 2**20
    return ok, f"{'; '.join(figures)}; this process {process:,.0f} MiB", {
        **{n: peak_note(m) for n, m in trained.items()}, "process_max_allocated_mib": process}


NCCL_CHECK = """import os, torch, torch.distributed as dist
torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
dist.init_process_group("nccl")
x = torch.ones(4, device="cuda")
dist.all_reduce(x)
v = torch.cuda.nccl.version()
print("NCCL_OK", dist.get_backend(), ".".join(map(str, v)) if isinstance(v, tuple) else v, float(x.sum()), flush=True)
dist.destroy_process_group()
"""


def row_torchrun(smoke: Smoke) -> tuple[bool, str, dict]:
    """torchrun --standalone --nproc_per_node=1: an NCCL all_reduce, then nmt-train to metrics.json."""
    script = smoke.work / "nccl_check.py"
    script.write_text(NCCL_CHECK)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    rc, out = run_child(smoke, "torchrun: NCCL all_reduce", [*torchrun, str(script)])
    nccl = next((ln.split() for ln in out.splitlines() if ln.startswith("NCCL_OK")), None)
    run_dir, steps = smoke.work / "torchrun", TORCHRUN_STEPS
    rc2, out2 = run_child(smoke, "torchrun: nmt-train", [*torchrun, "-m", "nmt.cli.train",
                                                         *train_args(smoke, "rnn", run_dir, steps)])
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    ok = rc == 0 and nccl is not None and nccl[1] == "nccl" and float(nccl[3]) == 4.0 \
        and rc2 == 0 and metrics.get("steps") == steps
    figure = (f"all_reduce on {nccl[1]} {nccl[2]}: {nccl[3]}" if nccl else f"NCCL check exit {rc}") + \
        f"; nmt-train exit {rc2}, {metrics.get('steps', 0)} of {steps} steps, test BLEU " \
        f"{metrics.get('test', {}).get('bleu', math.nan):.1f}"
    return ok, figure, {"nccl": nccl, "nmt_rc": rc2, "nmt_steps": metrics.get("steps")}


def row_oom(smoke: Smoke) -> tuple[bool, str, dict]:
    """A real CUDA OOM: the child's allocator capped at OOM_CAP_MIB, one batch of the whole toy corpus."""
    run_dir = smoke.work / "oom"
    overrides = train_args(smoke, "transformer", run_dir, 5, *OOM_MODEL, f"trainer.max_tokens={OOM_MAX_TOKENS}")
    rc, out = run_child(smoke, "oom", this_script("--child", "--cap-mib", str(OOM_CAP_MIB), "--", *overrides))
    written = sorted(p.name for p in (run_dir / "checkpoints").glob("*.pt"))  # none: also when the folder is missing
    ok, figure = judge_oom(rc, out, written)
    return ok, figure, {"rc": rc, "checkpoints": written}


ROWS: dict[str, tuple[str, bool, Callable]] = {  # name -> (what, CUDA only, row function); run in this order
    "train_rnn": ("RNN train steps (bf16 on CUDA)", False, lambda s: row_train(s, "train_rnn", "rnn")),
    "lstm_dtype": ("dtype reaching the LSTM kernels under bf16 autocast", True, row_lstm_dtype),
    "train_transformer": ("Transformer train steps (bf16 on CUDA)", False,
                          lambda s: row_train(s, "train_transformer", "transformer")),
    "resume": ("Ctrl-C then resume vs an uninterrupted run", False, row_resume),
    "beam_decode": ("beam 5 and greedy on the toy test split", False, row_beam),
    "prefetch": ("trainer.prefetch: side-stream copies", True, row_prefetch),
    "peak_memory": ("peak CUDA memory of the train rows", True, row_peak_memory),
    "compile": ("trainer.compile=true, Transformer", False, row_compile),
    "torchrun_nccl": ("torchrun, 1 process: NCCL and nmt-train", True, row_torchrun),
    "oom": ("CUDA out of memory -> user error", True, row_oom),
}


# ------------------------------------------------------------------------------------------- the table
def run_row(smoke: Smoke, row: Row, fn: Callable) -> None:
    """Run one row: PASS / FAIL with its figure; an exception is a FAIL naming it (traceback in smoke.log)."""
    if row.cuda_only and not smoke.cuda:
        row.result = "skipped: no CUDA"
        return
    print(f"[gpu_smoke] {row.name}: {row.what} ...", flush=True)
    log.info("===== row %s", row.name)
    t0 = time.perf_counter()
    try:
        ok, row.figure, row.details = fn(smoke)
        if smoke.broken == row.name and ok:
            ok, row.figure = False, f"injected failure (--break {row.name}); {row.figure}"
        row.result = "PASS" if ok else "FAIL"
    except Exception as e:  # noqa: BLE001 (a crash is this row's FAIL, the next rows still run)
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        row.result, row.figure = "FAIL", f"{type(e).__name__}: {first}"
        log.error("row %s failed:\n%s", row.name, traceback.format_exc())
    row.seconds = round(time.perf_counter() - t0, 1)
    print(f"[gpu_smoke] {row.name}: {row.result} ({row.seconds} s) {row.figure}", flush=True)


def environment(cuda: bool) -> dict:
    import torch
    env = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "device": torch.cuda.get_device_name(0) if cuda else f"cpu ({platform.machine()})",
           "cudnn": torch.backends.cudnn.version() if cuda else None,
           "wheel_install_s": os.environ.get("NMT_SMOKE_INSTALL_S")}  # seconds, measured by gpu_smoke.sh
    from importlib.metadata import PackageNotFoundError, version
    for name in PACKAGES:
        try:
            env[name] = version(name)
        except PackageNotFoundError:
            env[name] = None
    try:
        env["revision"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                         text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        env["revision"] = None
    return env


def markdown(env: dict, rows: list[Row], total_s: float) -> str:
    lines = ["# nmt GPU smoke test", "",
             f"{env['device']}, torch {env['torch']} (CUDA {env['cuda']}, cuDNN {env['cudnn']}), "
             f"Python {env['python']}, nmt {env['revision'] or 'unknown revision'}, {env['date']}; "
             f"wheels installed in {env['wheel_install_s'] or 'n/a'} s; total {total_s:.0f} s",
             "", "packages: " + ", ".join(f"{k} {env[k]}" for k in PACKAGES),
             "", "| row | what | result | figure | s |", "|---|---|---|---|---|"]
    for r in rows:
        cells = [r.name, r.what, r.result, r.figure, f"{r.seconds:.1f}"]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    failed = [r.name for r in rows if r.result == "FAIL"]
    lines += ["", f"{len(failed)} failed: {', '.join(failed)} (tracebacks and logs in smoke.log)" if failed
              else "no row failed"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Every row in turn; the table on stdout and in OUT; 1 if a row failed."""
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    import tempfile
    work = args.work or Path(tempfile.mkdtemp(prefix="nmt_smoke_"))
    work.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "smoke.log"
    log_path.write_text("")
    logging.basicConfig(level=logging.INFO, filename=log_path, format="[%(asctime)s %(name)s] %(message)s",
                        datefmt="%H:%M:%S", force=True)
    t0 = time.perf_counter()
    import torch  # after the arguments: --help stays fast
    cuda = torch.cuda.is_available()
    smoke = Smoke(args.out, work, QUICK if args.quick else FULL, cuda, args.broken, log_path)
    rows = [Row(name, what, cuda_only) for name, (what, cuda_only, _) in ROWS.items()
            if args.rows is None or name in args.rows]
    if any(r.name == "resume" for r in rows):
        smoke.resume = ResumeChildren(smoke)
    env = environment(cuda)
    for row in rows:
        run_row(smoke, row, ROWS[row.name][2])
        report = write_report(smoke, env, rows, time.perf_counter() - t0)  # a run cut short keeps the rows done
    print("\n" + markdown(env, rows, report["total_s"]), flush=True)
    return 1 if report["failed"] else 0


def write_report(smoke: Smoke, env: dict, rows: list[Row], total: float) -> dict:
    """OUT/smoke.json and OUT/smoke.md of the rows so far (the others say "not run")."""
    report = {"environment": env, "mode": "quick" if smoke.sizes == QUICK else "full", "sizes": asdict(smoke.sizes),
              "work": str(smoke.work), "total_s": round(total, 1), "rows": [asdict(r) for r in rows],
              "failed": [r.name for r in rows if r.result == "FAIL"]}
    (smoke.out / "smoke.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (smoke.out / "smoke.md").write_text(markdown(env, rows, total))
    return report


# ------------------------------------------------------------------------------------------- child mode
def child_main(argv: list[str]) -> None:
    """nmt-train's own main with a hook: --pause-at N waits after step N for a signal (the resume row's
    Ctrl-C); --cap-mib M caps the CUDA caching allocator at M MiB (the OOM row)."""
    p = argparse.ArgumentParser(prog="gpu_smoke.py --child")
    p.add_argument("--pause-at", type=int, default=0)
    p.add_argument("--marker", type=Path, default=None)
    p.add_argument("--cap-mib", type=int, default=0)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    import torch

    from nmt.cli.train import main as nmt_train
    from nmt.training.trainer import Callbacks
    if args.cap_mib:
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(args.cap_mib * 2**20 / total)

    class PauseAt(Callbacks):
        def on_step(self, trainer, result):
            if trainer.progress.step != args.pause_at:
                return
            args.marker.write_text(str(os.getpid()))
            t0 = time.monotonic()
            while not trainer.signal.received and time.monotonic() - t0 < CHILD_TIMEOUT_S:
                time.sleep(0.01)
    sys.argv = ["nmt-train", *args.overrides]
    nmt_train([PauseAt()] if args.pause_at else [])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child_main(sys.argv[2:])
        sys.exit(0)
    sys.exit(main())
