"""The training loop: steps, validation, checkpoints, resume. Only the trainer talks to loggers."""
from __future__ import annotations

import logging
import signal
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from nmt.data.batching import Batch, BatchIterator
from nmt.data.prefetch import Prefetcher
from nmt.data.tokenizer import SubwordTokenizer
from nmt.decoding import DecodeSettings, decode_texts
from nmt.decoding.inspect import probe_maps
from nmt.scoring import corpus_scores
from nmt.tracking import RunLogger
from nmt.models.seq2seq import Seq2Seq
from nmt.runs import checkpoint as ckpt
from nmt.training.align_loss import AlignLossSettings, align_spec
from nmt.training.distributed import Decision, DistInfo
from nmt.training.loss import label_smoothed_loss, perplexity
from nmt.training.optim import OptimSettings, Scheduler, build_optimizer
from nmt.training.step import CompiledNet, StepParts, coverage_spec, train_step

log = logging.getLogger(__name__)


@dataclass
class TrainSettings:
    """Mirrors configs/trainer/*.yaml."""
    device: str
    max_tokens: int
    accum_steps: int
    max_steps: int
    max_epochs: int
    max_time_s: float
    amp: bool
    tf32: bool
    valid_every: int
    save_every: int
    valid_max_sentences: int
    valid_beam_size: int
    log_every: int
    patience: int
    keep_last: int
    resume: bool
    num_threads: int
    max_nonfinite: int
    compile: bool
    prefetch: int
    align_loss: AlignLossSettings
    coverage_loss: float   # See et al. 2017's coverage loss weight (0 = off): nmt.training.step.coverage_loss_sum

    def __post_init__(self):
        if isinstance(self.align_loss, dict):  # TrainSettings(**a plain trainer node)
            self.align_loss = AlignLossSettings(**self.align_loss)
        for key in ("max_tokens", "accum_steps", "max_steps", "max_epochs", "valid_every", "save_every",
                    "log_every", "keep_last", "patience", "max_nonfinite", "valid_beam_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"trainer.{key} must be >= 1, got {getattr(self, key)}")
        for key in ("valid_max_sentences", "num_threads", "prefetch"):
            if getattr(self, key) < 0:
                raise ValueError(f"trainer.{key} must be >= 0 (0 = all / torch's default / off), "
                                 f"got {getattr(self, key)}")
        if self.max_time_s <= 0:
            raise ValueError(f"trainer.max_time_s must be > 0 seconds, got {self.max_time_s}")
        if self.coverage_loss < 0:
            raise ValueError(f"trainer.coverage_loss must be >= 0 (0 = off), got {self.coverage_loss}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"trainer.device must be one of auto, cpu, cuda, cuda:N; got {self.device!r}")


@dataclass
class Progress:
    """Plain counters saved in every checkpoint (so a resumed run continues exactly)."""
    step: int = 0
    epoch: int = 0
    elapsed_s: float = 0.0   # wall time, validation included
    train_s: float = 0.0     # time inside training steps only (for tokens/s)
    tokens: int = 0
    best_bleu: float = -1.0
    best_step: int = 0
    best_elapsed_s: float = 0.0
    bad_validations: int = 0
    nonfinite_in_row: int = 0
    stopped: str = ""
    log_window: list = field(default_factory=list)  # per-step scalars not yet logged (exact resume)
    history: list = field(default_factory=list)


@dataclass
class ValidData:
    batches: list[Batch]          # for the teacher-forced loss
    src_ids: Sequence[list[int]]   # for decoding (a memory-mapped id column indexes like a list)
    refs: list[str]               # raw references for sacreBLEU


@dataclass
class TrainerParts:
    """Everything the trainer works with besides its settings (built by nmt.training.session)."""
    model: Seq2Seq
    batches: BatchIterator        # iterable of Batch, resumable (state_dict, set_epoch)
    valid: ValidData
    src_tok: SubwordTokenizer
    tgt_tok: SubwordTokenizer
    run_dir: Path
    logger: RunLogger
    meta: dict                    # what a checkpoint must match (nmt.runs.run_dir.run_meta)
    dist: DistInfo
    device: torch.device
    progress_bar: bool
    callbacks: Sequence[Callbacks] = ()   # scripts/scale_benchmark.py times steps through one


class StepOutOfMemory(RuntimeError):
    """A training step ran out of device memory: the user's batch settings, said in one line (nmt.cli.errors)."""


class Callbacks:
    """Hooks into the loop (override what you need): the timing and memory probes of the benchmarks plug in
    here instead of patching the Trainer. Called on every rank."""

    def on_start(self) -> None:
        """Before the data is prepared (nmt.training.session.train)."""

    def on_step(self, trainer: Trainer, result: dict) -> None:
        """After each optimiser step; result: loss, nll, grad_norm, lr (device tensors: no sync), tokens."""

    def on_validation(self, trainer: Trainer, result: dict) -> None:
        """After each validation on rank 0 (loss, ppl, bleu, chrf, ter, hyps, tokens, p_gen: None without a pointer)."""

    def on_end(self, trainer: Trainer) -> None:
        """When fit() returns, whatever stopped it."""


class Trainer:
    def __init__(self, parts: TrainerParts, settings: TrainSettings, optim: OptimSettings,
                 decode: DecodeSettings):
        self.parts, self.settings, self.optim_settings = parts, settings, optim
        self.model, self.run_dir, self.logger = parts.model, Path(parts.run_dir), parts.logger
        self.dist, self.device = parts.dist, parts.device
        net = (torch.nn.parallel.DistributedDataParallel(self.model, device_ids=[self.device.index]
               if self.device.index is not None else None) if self.dist.world > 1 else self.model)
        if settings.compile:  # docs/benchmark.md "Compile": graph breaks, recompile bound, CPU speed
            net = CompiledNet(net)
        self.optimizer = build_optimizer(self.model, optim, self.device)
        self.scheduler = Scheduler(self.optimizer, optim)
        self.step_parts = StepParts(net, self.model, self.optimizer, parts.tgt_tok.pad_id, optim.label_smoothing,
                                    optim.clip_grad_norm, settings.amp, self.device, self.dist.world,
                                    compiled=settings.compile, align=align_spec(settings.align_loss, self.model),
                                    coverage=coverage_spec(settings.coverage_loss, self.model))
        self.progress = Progress()
        # the training batches, built trainer.prefetch ahead by a thread (0: in the loop); checkpoints save
        # the state of the batches consumed (nmt.data.prefetch)
        self.batches = (Prefetcher(parts.batches, settings.prefetch, self.device) if settings.prefetch
                        else parts.batches)
        self.window: list[dict] = []  # step results since the last log line
        self.train_summary = ""  # "loss .. ppl .. lr .. tok/s" of the last log_train, shown on validation lines
        self.last_align_loss: float | None = None  # train/align_loss of the last log_train (supervision on)
        # trainer.valid_beam_size, and a search even when decode.sampling draws: early stopping reads this BLEU
        self.valid_decode = replace(decode, beam_size=settings.valid_beam_size, sampling="none")
        self.signal = StopOnSignal()  # entered by fit(); idle (nothing received) before
        # non-finite steps, on the device: [current streak, longest streak, skipped] since the last read
        self.nonfinite = torch.zeros(3, dtype=torch.long, device=self.device)
        self.worst_nonfinite = 0  # the longest streak read so far (read_nonfinite, at log intervals)

    # ---------------------------------------------------------------- one step
    def step(self, micro: list[Batch], total: int, align_total: int = 0) -> dict:
        """One optimiser step (nmt.training.step.train_step) plus the schedule and the counters; align_total:
        the global batch's linked target rows (alignment supervision)."""
        p = self.progress
        lr = self.scheduler.step(p.step + 1)
        try:
            out = train_step(self.step_parts, micro, total, align_total)
        except torch.OutOfMemoryError:  # raised before any write: the checkpoints on disk stay the last good ones
            raise StepOutOfMemory(self.oom_message(micro)) from None
        streak = torch.where(out["applied"], 0, self.nonfinite[0] + 1)  # () on the device: no host sync
        self.nonfinite = torch.stack([streak, torch.maximum(self.nonfinite[1], streak),
                                      self.nonfinite[2] + (~out["applied"]).long()])
        p.step += 1
        p.tokens += total
        extra = [k for k in ("align_sum", "coverage_sum") if k in out]  # the optional loss terms' sums
        sums = torch.stack([out["loss_sum"], out["nll_sum"], *(out[k] for k in extra)])
        if self.dist.world > 1:  # the logged loss is the global batch's, as in single-process training
            torch.distributed.all_reduce(sums)
        result = {"loss": sums[0] / total, "nll": sums[1] / total, "grad_norm": out["grad_norm"], "lr": lr,
                  "tokens": total}
        if "align_sum" in out:  # mean alignment loss per linked row (nmt.training.align_loss)
            result["align_loss"] = sums[2 + extra.index("align_sum")] / max(align_total, 1)
        if "coverage_sum" in out:  # mean coverage loss per target token (See et al. 2017, Eq. 12)
            result["coverage_loss"] = sums[2 + extra.index("coverage_sum")] / total
        for callback in self.parts.callbacks:
            callback.on_step(self, result)
        return result

    def oom_message(self, micro: list[Batch]) -> str:
        """One line: where, the largest micro-batch's shapes, and the two keys that shrink it."""
        s, big = self.settings, max(micro, key=lambda b: b.src.numel() + b.tgt_in.numel())
        return (f"out of memory on {self.device} in training step {self.progress.step + 1} (rank {self.dist.rank}), "
                f"largest of {len(micro)} micro-batch(es): src {tuple(big.src.shape)}, tgt {tuple(big.tgt_in.shape)} "
                f"(sentences, tokens); lower trainer.max_tokens (now {s.max_tokens}) and raise trainer.accum_steps "
                f"(now {s.accum_steps}) by the same factor to keep the batch; nothing of this step was saved")

    # ---------------------------------------------------------------- validation
    @torch.no_grad()
    def validation_loss(self) -> tuple[float, float | None]:
        """Teacher-forced NLL per target token, and copy attention's mean p_gen over the same tokens (None without
        a pointer): 1 - p_gen is the share of the probability that copying gives the references' tokens."""
        self.model.eval()
        loss = ntok = gen = 0.0
        for b in self.parts.valid.batches:
            b = b.to(self.device)
            out, _ = self.model(b.src, b.src_lengths, b.tgt_in)
            _, nll = label_smoothed_loss(out.logits, b.tgt_out, self.parts.tgt_tok.pad_id, 0.0)
            loss, ntok = loss + float(nll), ntok + b.n_tgt_tokens
            if out.p_gen is not None:  # (B, T)
                gen += float(out.p_gen[b.tgt_out != self.parts.tgt_tok.pad_id].sum())
        return loss / max(ntok, 1), (gen / max(ntok, 1) if out.p_gen is not None else None)

    def validate(self) -> dict:
        """Val loss/ppl (teacher forcing) and BLEU/chrF/TER of greedy output."""
        valid = self.parts.valid
        nll, p_gen = self.validation_loss()
        n = self.settings.valid_max_sentences or len(valid.src_ids)
        texts, hyp = decode_texts(self.model, valid.src_ids[:n], self.parts.tgt_tok, self.valid_decode, self.device)
        scores = corpus_scores(texts, valid.refs[:n])
        self.model.train()
        return {"loss": nll, "ppl": perplexity(nll), **scores, "hyps": texts, "tokens": hyp.tokens, "p_gen": p_gen}

    def validation_decision(self) -> Decision:
        """Rank 0: validate, record and log the result; the decision asks every rank for a checkpoint (best.pt
        too when BLEU improved) and hands every rank's plateau schedule the BLEU (DistInfo.agree)."""
        result = self.validate()
        self.record(result)
        improved = self.track_best(result)
        for callback in self.parts.callbacks:
            callback.on_validation(self, result)
        stop = self.progress.bad_validations >= self.settings.patience
        return Decision(f"early stopping: no BLEU gain in {self.settings.patience} validations" if stop else "",
                        "best" if improved else "step", result["bleu"])

    def follow(self, decision: Decision) -> None:
        """Every rank: take rank 0's decision (the same lr schedule on every rank, every rank's RNG saved)."""
        self.progress.stopped = decision.stopped
        if decision.bleu is not None:
            self.scheduler.validation(decision.bleu)  # plateau: lower the lr after bad validations
        if decision.save:
            self.save(best=decision.save == "best")

    def record(self, result: dict) -> None:
        """History, TensorBoard scalars and attention, the console line."""
        p, keys = self.progress, ("loss", "ppl", "bleu", "chrf", "ter")
        p.history.append({"step": p.step, "elapsed_s": round(p.elapsed_s, 1), **{k: result[k] for k in keys}})
        self.logger.scalars({f"valid/{k}": result[k] for k in (*keys, "p_gen")}, p.step)  # p_gen None: skipped
        self.log_attention(result.get("tokens", []))

    def track_best(self, result: dict) -> bool:
        """Early-stopping bookkeeping; the best greedy output goes to valid.hyp.txt. True if improved."""
        p = self.progress
        improved = result["bleu"] > p.best_bleu
        if improved:
            p.best_bleu, p.best_step, p.best_elapsed_s, p.bad_validations = result["bleu"], p.step, p.elapsed_s, 0
            (self.run_dir / "valid.hyp.txt").write_text("\n".join(result["hyps"]) + "\n")
        else:
            p.bad_validations += 1
        log.info("step %d valid: bleu %.2f chrf %.2f ppl %.2f%s%s", p.step, result["bleu"], result["chrf"],
                 result["ppl"], " (best)" if improved else f" ({p.bad_validations}/{self.settings.patience} no gain)",
                 f" | train: {self.train_summary}" if self.train_summary else "")
        return improved

    @torch.no_grad()
    def log_attention(self, tokens: list[list[int]]) -> None:
        """attn_stats/* of the first stats_sentences validation outputs and heatmaps of the probes'
        own output (greedy = these tokens, or beam search with logger.probe_beam)."""
        cfg, valid, tgt_tok = self.logger.probes, self.parts.valid, self.parts.tgt_tok
        if cfg is None or not self.logger.enabled:
            return
        n_stats, n_probe = min(cfg.stats_sentences, len(tokens)), min(cfg.probe_sentences, len(valid.src_ids))
        own = cfg.probe_beam == self.valid_decode.beam_size and n_probe <= len(tokens)  # probes' output: tokens
        src_tok, step = self.parts.src_tok, self.progress.step
        try:
            probes, maps = probe_maps(self.model, valid.src_ids, tokens, src_tok, tgt_tok, self.device,
                                      n_probe if own else 0, n_stats)
            self.logger.attention_stats([(m.maps, m.centres) for m in maps], step)
            if not own and n_probe:
                settings = replace(self.valid_decode, beam_size=cfg.probe_beam)
                out = decode_texts(self.model, valid.src_ids[:n_probe], tgt_tok, settings, self.device)[1].tokens
                probes, _ = probe_maps(self.model, valid.src_ids, out, src_tok, tgt_tok, self.device, n_probe, 0)
            if not probes:
                return
            self.logger.attention_images(probes, step)
            self.logger.probe_texts(probes, list(valid.refs[:n_probe]), step)
        finally:
            self.model.train()

    # ---------------------------------------------------------------- checkpoints
    def read_nonfinite(self) -> None:
        """The one host read of the non-finite counters (at log intervals and checkpoints): warn about
        skipped updates, keep the streak for the stop rule and the checkpoint."""
        streak, longest, skipped = self.nonfinite.tolist()
        self.progress.nonfinite_in_row, self.worst_nonfinite = streak, max(self.worst_nonfinite, longest)
        if skipped:
            log.warning("%d update(s) skipped for a non-finite loss or gradient before step %d (%d in a row now)",
                        skipped, self.progress.step, streak)
        self.nonfinite = torch.tensor([streak, streak, 0], device=self.device)

    def state(self, rngs: list[dict]) -> dict:
        """The checkpoint; `rngs`: every rank's RNG states in rank order (DistInfo.gather)."""
        self.read_nonfinite()
        self.progress.log_window = [{k: float(v) for k, v in w.items()} for w in self.window]
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "sampler": self.batches.state_dict(),
                "progress": asdict(self.progress), "rng": rngs, "meta": self.parts.meta}

    def save(self, best: bool = False) -> bool:
        """Called on every rank (each hands rank 0 its RNG states); rank 0 writes. Atomic writes; a failed
        write (disk full, ...) keeps the previous checkpoints and says so."""
        rngs = self.dist.gather(ckpt.rng_state(self.device))
        if not self.dist.main:
            return True
        state, ok, step = self.state(rngs), True, self.progress.step
        ckpt_dir = self.run_dir / "checkpoints"
        writes = [lambda: ckpt.save_step(state, ckpt_dir, step, self.settings.keep_last)]
        if best:
            writes.append(lambda: ckpt.atomic_save({"model": state["model"], "meta": self.parts.meta, "step": step},
                                                   ckpt_dir / "best.pt"))
        for write in writes:
            try:
                write()
            except OSError as e:
                kept = [p.name for p in ckpt.step_checkpoints(ckpt_dir)] + (
                    ["best.pt"] if (ckpt_dir / "best.pt").exists() else [])
                log.error("checkpoint write at step %d failed (%s); previous checkpoints kept intact: %s",
                          step, e, kept or "none")
                ok = False
        return ok

    def restore(self, state: dict) -> None:
        """Continue exactly: weights, optimiser, schedule, data position, early stopping, RNGs."""
        check_meta(state["meta"], self.parts.meta)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.batches.load_state_dict(state["sampler"])
        self.progress = Progress(**{**state["progress"], "stopped": ""})
        # on the device, as step() makes them: log_train stacks these with the next steps' results
        self.window = [{k: torch.tensor(v, device=self.device) for k, v in w.items()}
                       for w in self.progress.log_window]
        streak = self.progress.nonfinite_in_row
        self.nonfinite = torch.tensor([streak, streak, 0], device=self.device)
        ckpt.set_rng_state(state["rng"], self.dist.rank, self.dist.world, self.device)  # rank r: its own

    # ---------------------------------------------------------------- the loop
    def fit(self) -> Progress:
        """Train until max_steps / max_epochs / max_time_s / early stopping / SIGTERM or SIGINT."""
        # console log lines go through tqdm.write: printed above the bar, not overwritten by it
        try:
            with self.signal, logging_redirect_tqdm():
                return self._fit()
        finally:
            for callback in self.parts.callbacks:
                callback.on_end(self)

    def _fit(self) -> Progress:
        p = self.progress
        self.model.train()
        if p.step >= self.settings.max_steps:
            p.stopped = "max_steps"
        bar = BudgetBar(self.settings, self.steps_per_epoch(), p, enabled=self.parts.progress_bar)
        while not p.stopped:
            self.batches.set_epoch(p.epoch)
            self.run_epoch(bar)
            if not p.stopped:
                p.epoch += 1
                if p.epoch >= self.settings.max_epochs:
                    p.stopped = "max_epochs"
        bar.close()
        if self.interrupted:
            return p
        last = p.history[-1]["step"] if p.history else -1
        final = self.validation_decision() if self.dist.main and last != p.step else Decision()
        self.follow(self.dist.agree(replace(final, stopped=p.stopped)))  # the stop reason stays
        log.info("training stopped (%s) at step %d", p.stopped, p.step)
        return p

    def steps_per_epoch(self) -> int:
        """Optimiser steps in one epoch: batches / (accum_steps * world), remainder dropped."""
        return len(self.batches) // (self.settings.accum_steps * self.dist.world)

    def run_epoch(self, bar: "BudgetBar") -> None:
        """Iterate the rest of this epoch (a resumed sampler yields only the remaining batches).

        A global batch is accum_steps * world consecutive batches; rank r trains on its slice. The
        iteration is closed however the loop ends (a stop, an exception): a prefetch thread ends with it.
        """
        micro, t0, k, p = [], time.perf_counter(), self.settings.accum_steps, self.progress
        with closing(iter(self.batches)) as batches:
            for batch in batches:
                micro.append(batch)
                if len(micro) < k * self.dist.world:
                    continue
                total, align_total = sum(b.n_tgt_tokens for b in micro), sum(b.n_align_rows for b in micro)
                self.window.append(self.step(micro[self.dist.rank * k: (self.dist.rank + 1) * k], total, align_total))
                micro = []
                now = time.perf_counter()
                p.elapsed_s += now - t0
                p.train_s += now - t0
                bar.update(p)
                if p.step % self.settings.log_every == 0:
                    self.read_nonfinite()
                    self.log_train(self.window)
                    bar.train(self.train_summary)
                    self.window = []
                if self.check_stop(bar):
                    return
                t0 = time.perf_counter()

    @property
    def interrupted(self) -> bool:
        return self.progress.stopped.startswith(("interrupted", "non-finite"))

    def check_stop(self, bar: "BudgetBar") -> bool:
        """Rank 0 validates and decides (stop, checkpoint, the plateau schedule's BLEU); every rank follows."""
        decision = self.main_checks(bar) if self.dist.main else Decision()
        self.follow(self.dist.agree(decision))
        return bool(self.progress.stopped)

    def main_checks(self, bar: "BudgetBar") -> Decision:
        """Validation, periodic checkpoints and every stopping rule; called after each step on rank 0."""
        p, s = self.progress, self.settings
        if self.signal.received or self.worst_nonfinite >= s.max_nonfinite:
            return Decision(f"interrupted by {self.signal.received}" if self.signal.received else
                            f"non-finite loss/gradient in {self.worst_nonfinite} steps in a row: lower optim.lr, "
                            "check the data, or disable trainer.amp", "step")
        decision = Decision(save="step" if p.step % s.save_every == 0 else "")
        if p.step % s.valid_every == 0:
            t = time.perf_counter()
            decision = self.validation_decision()
            p.elapsed_s += time.perf_counter() - t
            bar.best(p.best_bleu)
        if not decision.stopped and p.step >= s.max_steps:
            decision = replace(decision, stopped="max_steps")
        if not decision.stopped and p.elapsed_s >= s.max_time_s:
            decision = replace(decision, stopped="max_time_s")
        return decision

    def log_train(self, window: list[dict]) -> None:
        """Sync once per log_every steps: mean loss/ppl/grad norm, lr, tokens/s."""
        if not window:
            return
        mean = lambda key: float(torch.stack([torch.as_tensor(w[key]) for w in window]).mean())  # noqa: E731
        loss, nll, norm = mean("loss"), mean("nll"), mean("grad_norm")
        tok_s = self.progress.tokens / max(self.progress.train_s, 1e-9)
        aligned = {f"train/{k}": mean(k) for k in ("align_loss", "coverage_loss") if k in window[-1]}
        self.logger.scalars({"train/loss": loss, "train/ppl": perplexity(nll), "train/grad_norm": norm,
                             "train/lr": float(window[-1]["lr"]), "train/tokens_per_s": tok_s,
                             "train/epoch": self.progress.epoch, **aligned}, self.progress.step)
        self.last_align_loss = aligned.get("train/align_loss")  # metrics.json's train_align_loss
        self.train_summary = (f"loss {loss:.3f} ppl {perplexity(nll):.2f} lr {float(window[-1]['lr']):.2e} "
                              f"{tok_s:.0f} tok/s")
        if self.dist.main:  # one line per step, not one per rank
            log.info("step %d train: %s", self.progress.step, self.train_summary)  # console and train.log


class BudgetBar:
    """A tqdm bar over the budget that will actually stop the run: max_steps, max_epochs (in steps)
    or max_time_s (steps at the measured pace), whichever comes first; its label names which."""

    def __init__(self, settings: TrainSettings, steps_per_epoch: int, progress: Progress, enabled: bool):
        self.settings, self.steps_per_epoch = settings, max(steps_per_epoch, 1)
        self.bar = tqdm(total=self.budget(progress)[0], initial=progress.step, disable=not enabled,
                        dynamic_ncols=True, desc="train")
        self.postfix = {"train": "", "best": ""}  # what the bar shows after its counts

    def budget(self, p: Progress) -> tuple[int, str]:
        """(the step at which the run will stop, the limit that decides it)."""
        settings = self.settings
        limits = {"max_steps": settings.max_steps, "max_epochs": settings.max_epochs * self.steps_per_epoch}
        if p.step and p.elapsed_s > 0:  # time left at this pace (validation included)
            limits["max_time_s"] = p.step + int((settings.max_time_s - p.elapsed_s) * p.step / p.elapsed_s)
        name = min(limits, key=limits.get)
        return max(limits[name], p.step), name

    def update(self, p: Progress) -> None:
        total, name = self.budget(p)
        if total != self.bar.total:
            self.bar.total = total
            self.bar.set_description(f"train (to {name})")
        self.bar.update(p.step - self.bar.n)

    def train(self, summary: str) -> None:
        self.show("train", summary)

    def best(self, bleu: float) -> None:
        self.show("best", f"best bleu {bleu:.2f}")

    def show(self, key: str, text: str) -> None:
        self.postfix[key] = text
        self.bar.set_postfix_str(" | ".join(v for v in self.postfix.values() if v))

    def close(self) -> None:
        self.bar.close()


class StopOnSignal:
    """SIGTERM/SIGINT set a flag; the loop finishes the current step, checkpoints and returns."""

    received = ""  # the signal's name once one came

    def __enter__(self) -> "StopOnSignal":
        self.received = ""
        self.previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        return self

    def _handle(self, signum, frame) -> None:
        if self.received:  # a second signal: stop now
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        log.warning("%s received: finishing this step, writing a checkpoint, then printing the resume command "
                    "(a second signal stops at once)", self.received)

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def check_meta(saved: dict, current: dict) -> None:
    """Refuse a checkpoint of another model or vocabulary, naming what differs."""
    diffs = [f"{k}: checkpoint {saved.get(k)!r} vs config {current.get(k)!r}" for k in ckpt.meta_differs(saved, current)]
    if diffs:
        raise ckpt.CheckpointError("checkpoint does not match this run's config:\n  " + "\n  ".join(diffs))
