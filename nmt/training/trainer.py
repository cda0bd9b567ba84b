"""The training loop: train_step, validate, checkpoint, resume. Only the trainer talks to loggers."""
from __future__ import annotations

import contextlib
import logging
import math
import signal
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from tqdm import tqdm

from nmt.data.batching import Batch
from nmt.decoding.inspect import SentenceMaps, output_maps
from nmt.evaluation.evaluate import DecodeSettings, decode_texts
from nmt.evaluation.metrics import corpus_scores
from nmt.logging import Probe, RunLogger
from nmt.models.seq2seq import Seq2Seq
from nmt.training import checkpoint as ckpt
from nmt.training.loss import label_smoothed_loss
from nmt.training.optim import OptimSettings, Scheduler, build_optimizer

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
    valid_every: int
    save_every: int
    valid_max_sentences: int
    log_every: int
    patience: int
    beam_size: int
    length_penalty: float
    max_len_a: float
    max_len_b: int
    keep_last: int
    resume: bool
    num_threads: int
    max_nonfinite: int
    compile: bool

    def __post_init__(self):
        for key in ("max_tokens", "accum_steps", "valid_every", "save_every", "log_every", "keep_last"):
            if getattr(self, key) < 1:
                raise ValueError(f"trainer.{key} must be >= 1, got {getattr(self, key)}")


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
    src_ids: list[list[int]]      # for decoding
    refs: list[str]               # raw references for sacreBLEU


class Trainer:
    def __init__(self, model: Seq2Seq, optim: OptimSettings, settings: TrainSettings, batches, valid,
                 src_tok, tgt_tok, run_dir: Path, logger: RunLogger, meta: dict, progress_bar: bool,
                 dist: DistInfo, device: torch.device):
        self.model, self.s, self.o, self.dist, self.device = model, settings, optim, dist, device
        # the module that trains: DDP all-reduces gradients; self.model is used for everything else
        self.net = (torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.index
                    is not None else None) if dist.world > 1 else model)
        if settings.compile:  # optional: helps Transformers on GPU; RNN step loops compile poorly
            self.net = torch.compile(self.net)
        self.optimizer = build_optimizer(model, optim, self.device)
        self.scheduler = Scheduler(self.optimizer, optim)
        self.batches, self.valid, self.src_tok, self.tgt_tok = batches, valid, src_tok, tgt_tok
        self.run_dir, self.logger, self.meta = Path(run_dir), logger, meta
        self.progress, self.progress_bar = Progress(), progress_bar
        self.window: list[dict] = []  # train_step results since the last log line
        self.decode = DecodeSettings(1, settings.length_penalty, settings.max_len_a, settings.max_len_b, 200)

    # ---------------------------------------------------------------- one step
    def train_step(self, micro: list[Batch], total: int) -> dict[str, torch.Tensor]:
        """One optimiser step over this rank's `accum_steps` micro-batches.

        The loss is normalised by `total`, the target tokens of the whole global batch (all ranks):
        DDP averages gradients over `world` ranks, so each rank scales by world / total and the
        update equals single-process training on the same global batch.
        """
        scale = self.dist.world / total
        loss_sum = nll_sum = torch.zeros((), device=self.device)
        for i, b in enumerate(micro):
            b = b.to(self.device, non_blocking=True)
            sync = self.dist.world == 1 or i == len(micro) - 1  # all-reduce once per step
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.s.amp), \
                    (contextlib.nullcontext() if sync else self.net.no_sync()):
                out, _ = self.net(b.src, b.src_lengths, b.tgt_in)
                loss, nll = label_smoothed_loss(out.hidden, b.tgt_out, self.tgt_tok.pad_id,
                                                self.o.label_smoothing)
                (loss * scale).backward()
            loss_sum, nll_sum = loss_sum + loss.detach(), nll_sum + nll.detach()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.o.clip_grad_norm)
        lr = self.scheduler.step(self.progress.step + 1)
        if torch.isfinite(norm) and torch.isfinite(loss_sum):  # one sync per step: skip bad updates
            self.optimizer.step()
            self.progress.nonfinite_in_row = 0
        else:
            self.progress.nonfinite_in_row += 1
            log.warning("step %d: non-finite loss or gradient, update skipped (%d in a row)",
                        self.progress.step + 1, self.progress.nonfinite_in_row)
        self.optimizer.zero_grad(set_to_none=True)
        self.progress.step += 1
        self.progress.tokens += total
        sums = torch.stack([loss_sum, nll_sum])
        if self.dist.world > 1:  # the logged loss is the global batch's, as in single-process training
            torch.distributed.all_reduce(sums)
        return {"loss": sums[0] / total, "nll": sums[1] / total, "grad_norm": norm, "lr": lr, "tokens": total}

    # ---------------------------------------------------------------- validation
    @torch.no_grad()
    def validation_loss(self) -> float:
        self.model.eval()
        loss = ntok = 0.0
        for b in self.valid.batches:
            b = b.to(self.device)
            out, _ = self.model(b.src, b.src_lengths, b.tgt_in)
            _, nll = label_smoothed_loss(out.hidden, b.tgt_out, self.tgt_tok.pad_id, 0.0)
            loss, ntok = loss + float(nll), ntok + b.n_tgt_tokens
        return loss / max(ntok, 1)

    def validate(self) -> dict:
        """Val loss/ppl (teacher forcing) and BLEU/chrF/TER of greedy output."""
        nll = self.validation_loss()
        n = self.s.valid_max_sentences or len(self.valid.src_ids)
        texts, hyp = decode_texts(self.model, self.valid.src_ids[:n], self.tgt_tok, self.decode, self.device)
        scores = corpus_scores(texts, self.valid.refs[:n])
        self.model.train()
        return {"loss": nll, "ppl": math.exp(min(nll, 50)), **scores, "hyps": texts, "tokens": hyp.tokens}

    def after_validation(self, result: dict) -> bool:
        """Log, early-stopping bookkeeping, best checkpoint. Returns True to stop."""
        p = self.progress
        record = {"step": p.step, "elapsed_s": round(p.elapsed_s, 1),
                  **{k: result[k] for k in ("loss", "ppl", "bleu", "chrf", "ter")}}
        p.history.append(record)
        self.logger.scalars({f"valid/{k}": result[k] for k in ("loss", "ppl", "bleu", "chrf", "ter")}, p.step)
        self.log_attention(result.get("tokens", []))
        self.scheduler.validation(result["bleu"])
        improved = result["bleu"] > p.best_bleu
        if improved:
            p.best_bleu, p.best_step, p.best_elapsed_s, p.bad_validations = result["bleu"], p.step, p.elapsed_s, 0
            (self.run_dir / "valid.hyp.txt").write_text("\n".join(result["hyps"]) + "\n")
        else:
            p.bad_validations += 1
        log.info("step %d valid: bleu %.2f chrf %.2f ppl %.2f%s", p.step, result["bleu"], result["chrf"],
                 result["ppl"], " (best)" if improved else f" ({p.bad_validations}/{self.s.patience} no gain)")
        self.save(best=improved)
        return p.bad_validations >= self.s.patience

    @torch.no_grad()
    def log_attention(self, tokens: list[list[int]]) -> None:
        """attn_stats/* of the first stats_sentences validation outputs and heatmaps of the probes'
        own output (greedy = these tokens, or beam search with logger.probe_beam)."""
        cfg = self.logger.probes
        if cfg is None or not self.logger.enabled:
            return
        n_stats, n_probe = min(cfg.stats_sentences, len(tokens)), min(cfg.probe_sentences, len(self.valid.src_ids))
        try:
            maps = output_maps(self.model, self.valid.src_ids[:n_stats], tokens[:n_stats], self.tgt_tok, self.device)
            self.logger.attention_stats([(m.maps, m.centres) for m in maps], self.progress.step)
            if not n_probe:
                return
            if cfg.probe_beam > 1 or n_stats < n_probe:
                src = self.valid.src_ids[:n_probe]
                settings = replace(self.decode, beam_size=cfg.probe_beam)
                out = decode_texts(self.model, src, self.tgt_tok, settings, self.device)[1].tokens
                maps = output_maps(self.model, src, out, self.tgt_tok, self.device)
            probes = [to_probe(m, self.src_tok, self.tgt_tok) for m in maps[:n_probe]]
            self.logger.attention_images(probes, self.progress.step)
        finally:
            self.model.train()

    # ---------------------------------------------------------------- checkpoints
    def state(self) -> dict:
        self.progress.log_window = [{k: float(v) for k, v in w.items()} for w in self.window]
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "sampler": self.batches.sampler.state_dict(),
                "progress": asdict(self.progress), "rng": ckpt.rng_state(), "meta": self.meta}

    def save(self, best: bool = False) -> bool:
        """Atomic writes; a failed write (disk full, ...) keeps the previous checkpoints and says so."""
        state, ok = self.state(), True
        ckpt_dir = self.run_dir / "checkpoints"
        writes = [lambda: ckpt.save_step(state, ckpt_dir, self.progress.step, self.s.keep_last)]
        if best:
            writes.append(lambda: ckpt.atomic_save(
                {"model": state["model"], "meta": self.meta, "step": self.progress.step}, ckpt_dir / "best.pt"))
        for write in writes:
            try:
                write()
            except OSError as e:
                kept = [p.name for p in ckpt.step_checkpoints(ckpt_dir)] + (
                    ["best.pt"] if (ckpt_dir / "best.pt").exists() else [])
                log.error("checkpoint write at step %d failed (%s); previous checkpoints kept intact: %s",
                          self.progress.step, e, kept or "none")
                ok = False
        return ok

    def restore(self, state: dict) -> None:
        """Continue exactly: weights, optimiser, schedule, data position, early stopping, RNGs."""
        check_meta(state["meta"], self.meta)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.batches.sampler.load_state_dict(state["sampler"])
        self.progress = Progress(**{**state["progress"], "stopped": ""})
        self.window = [{k: torch.tensor(v) for k, v in w.items()} for w in self.progress.log_window]
        ckpt.set_rng_state(state["rng"])

    # ---------------------------------------------------------------- the loop
    def fit(self) -> Progress:
        """Train until max_steps / max_epochs / max_time_s / early stopping / SIGTERM or SIGINT."""
        with StopOnSignal() as self.signal:
            return self._fit()

    def _fit(self) -> Progress:
        self.model.train()
        if self.progress.step >= self.s.max_steps:
            self.progress.stopped = "max_steps"
        bar = tqdm(total=self.s.max_steps, initial=self.progress.step, disable=not self.progress_bar,
                   desc="train", dynamic_ncols=True)
        while not self.progress.stopped:
            self.batches.sampler.set_epoch(self.progress.epoch)
            self.run_epoch(bar)
            if not self.progress.stopped:
                self.progress.epoch += 1
                if self.progress.epoch >= self.s.max_epochs:
                    self.progress.stopped = "max_epochs"
        bar.close()
        if self.interrupted:
            return self.progress
        last = self.progress.history[-1]["step"] if self.progress.history else -1
        if self.dist.main and last != self.progress.step:
            self.after_validation(self.validate())
        log.info("training stopped (%s) at step %d", self.progress.stopped, self.progress.step)
        return self.progress

    def run_epoch(self, bar) -> None:
        """Iterate the rest of this epoch (a resumed sampler yields only the remaining batches).

        A global batch is accum_steps * world consecutive batches; rank r trains on its slice.
        """
        micro, t0, k = [], time.perf_counter(), self.s.accum_steps
        for batch in self.batches:
            micro.append(batch)
            if len(micro) < k * self.dist.world:
                continue
            total = sum(b.n_tgt_tokens for b in micro)
            self.window.append(self.train_step(micro[self.dist.rank * k: (self.dist.rank + 1) * k], total))
            micro = []
            now = time.perf_counter()
            self.progress.elapsed_s += now - t0
            self.progress.train_s += now - t0
            bar.update(1)
            if self.progress.step % self.s.log_every == 0:
                self.log_train(self.window)
                self.window = []
            if self.check_stop(bar):
                return
            t0 = time.perf_counter()

    @property
    def interrupted(self) -> bool:
        return self.progress.stopped.startswith(("interrupted", "non-finite"))

    def check_stop(self, bar) -> bool:
        """Rank 0 validates, checkpoints and decides; every rank follows its decision."""
        if self.dist.main:
            self.main_checks(bar)
        self.progress.stopped = self.dist.agree(self.progress.stopped)
        return bool(self.progress.stopped)

    def main_checks(self, bar) -> None:
        """Validation, periodic checkpoints and every stopping rule; called after each step."""
        p, s = self.progress, self.s
        if self.signal.received or p.nonfinite_in_row >= s.max_nonfinite:
            p.stopped = (f"interrupted by {self.signal.received}" if self.signal.received else
                         f"non-finite loss/gradient in {p.nonfinite_in_row} steps in a row: lower optim.lr, "
                         "check the data, or disable trainer.amp")
            self.save()
            return
        if p.step % s.valid_every == 0:
            t = time.perf_counter()
            stop = self.after_validation(self.validate())
            p.elapsed_s += time.perf_counter() - t
            bar.set_postfix(bleu=p.best_bleu)
            if stop:
                p.stopped = f"early stopping: no BLEU gain in {s.patience} validations"
        elif p.step % s.save_every == 0:
            self.save()
        if not p.stopped and p.step >= s.max_steps:
            p.stopped = "max_steps"
        if not p.stopped and p.elapsed_s >= s.max_time_s:
            p.stopped = "max_time_s"

    def log_train(self, window: list[dict]) -> None:
        """Sync once per log_every steps: mean loss/ppl/grad norm, lr, tokens/s."""
        if not window:
            return
        n = len(window)
        mean = lambda key: float(torch.stack([torch.as_tensor(w[key]) for w in window]).mean())  # noqa: E731
        loss, nll, norm = mean("loss"), mean("nll"), mean("grad_norm")
        tok_s = self.progress.tokens / max(self.progress.train_s, 1e-9)
        self.logger.scalars({"train/loss": loss, "train/ppl": math.exp(min(nll, 50)), "train/grad_norm": norm,
                             "train/lr": float(window[-1]["lr"]), "train/tokens_per_s": tok_s,
                             "train/epoch": self.progress.epoch}, self.progress.step)
        log.debug("step %d loss %.3f (%d steps)", self.progress.step, loss, n)


def to_probe(maps: SentenceMaps, src_tok, tgt_tok) -> Probe:
    """Label a sentence's maps with sentencepiece pieces; the output's final eos is "</s>"."""
    return Probe(src_tok.pieces(maps.src_ids), tgt_tok.pieces(maps.out_ids[:-1]) + ["</s>"], maps.maps,
                 maps.centres)


class StopOnSignal:
    """SIGTERM/SIGINT set a flag; the loop finishes the current step, checkpoints and returns."""

    def __enter__(self) -> "StopOnSignal":
        self.received = ""
        self.previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        return self

    def _handle(self, signum, frame) -> None:
        if self.received:  # a second signal: stop now
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        log.warning("%s received: finishing this step and writing a checkpoint", self.received)

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def check_meta(saved: dict, current: dict) -> None:
    """Refuse a checkpoint of another model or vocabulary, naming what differs."""
    diffs = [f"{k}: checkpoint {saved.get(k)!r} vs config {current.get(k)!r}"
             for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
    if diffs:
        raise ckpt.CheckpointError("checkpoint does not match this run's config:\n  " + "\n  ".join(diffs))
