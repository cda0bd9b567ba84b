"""One training run from typed settings: `train(run)` is what nmt-train calls (and the tests), with the
RunSettings its entry point made from the composed config once (nmt.cli.train.run_settings).

data -> Trainer (resumed if asked) -> fit -> final beam evaluation of the best
checkpoint -> metrics.json. Every setting was validated before any data is read.
"""
from __future__ import annotations

import fcntl
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from nmt.alignment.supervision import split_piece_links
from nmt.alloc import tune_allocator
from nmt.common import enable_tf32, pick_device, seed_everything, setup_logging, write_json
from nmt.data.batching import BatchIterator
from nmt.data.pipeline import DataBundle, make_batches, prepare_data
from nmt.decoding import DecodeSettings, decode_texts
from nmt.decoding.inspect import probe_maps
from nmt.inspection.explorer import write_run_explorer
from nmt.models.build import build_model, build_corpus
from nmt.runs import checkpoint as ckpt
from nmt.runs.config import DataSettings, RunConfig
from nmt.runs.run_dir import check_run_dir, run_lock, run_meta, save_run_files
from nmt.scoring import corpus_scores
from nmt.tracking import ProbeSettings, RunLogger, attention_stats, peak_memory, reset_peak_memory, run_hparams
from nmt.training.distributed import DistInfo, check_launch, dist_env, init_distributed, shutdown
from nmt.training.optim import OptimSettings
from nmt.training.trainer import Callbacks, Trainer, TrainerParts, TrainSettings, ValidData, check_meta

log = logging.getLogger("nmt.train")


class EvaluationInterrupted(RuntimeError):
    """Ctrl-C during the final evaluation: training is done and checkpointed; a resume finishes it."""


@dataclass(frozen=True)
class RunSettings:
    """Everything a run reads, validated and typed once by its entry point (nmt.cli.train.run_settings):
    one dataclass per settings group, and the resolved config whose model and data nodes the models and
    corpus are built from (and that config.yaml stores)."""
    trainer: TrainSettings
    optim: OptimSettings
    decode: DecodeSettings
    probes: ProbeSettings
    config: RunConfig
    run_dir: Path | None      # None: nmt-train's Hydra picks outputs/<date>/<time> (train() needs one)
    tensorboard: bool
    progress_bar: bool


def load_data(data: DataSettings, supervised: bool) -> DataBundle:
    """The DataBundle; when `supervised` (trainer.align_loss.weight or centre_weight > 0) also the piece links of the kept train
    pairs from data.alignment (a bad file raises AlignmentFileError naming its line; ~2 s for Multi30k's
    29,000 pairs, so they are not cached). With the loss off no batch carries alignment rows."""
    corpus = build_corpus(data.corpus)
    bundle = prepare_data(corpus=corpus, splits=dict(data.splits), tokenizer=data.tokenizer,
                          max_len=data.max_len, cache_dir=data.cache_dir, train_max_tgt_len=data.train_max_tgt_len)
    if supervised and data.alignment is not None:
        bundle.train_links = split_piece_links(data.alignment, corpus, data.split_name("train"), bundle.src_tok,
                                               bundle.tgt_tok, bundle.train_rows)
    return bundle


def batches_for(ds, run: RunSettings, data: DataBundle, shuffle: bool, links=None) -> BatchIterator:
    tok = data.tgt_tok
    return make_batches(ds, run.trainer.max_tokens, shuffle, run.config.seed, tok.pad_id, tok.bos_id, tok.eos_id,
                        links)


def build_trainer(settings: RunSettings, data: DataBundle, device: torch.device,
                  dist: DistInfo, callbacks: Sequence[Callbacks] = ()) -> Trainer:
    """Model, data iterators and logger; restores the latest good checkpoint on resume."""
    run_dir = settings.run_dir
    model = build_model(settings.config.model, len(data.src_tok), len(data.tgt_tok), data.tgt_tok.pad_id).to(device)
    valid = ValidData(list(batches_for(data.valid, settings, data, shuffle=False)), data.valid["src_ids"],
                      data.valid["tgt"])
    found = ckpt.load_latest(run_dir / "checkpoints") if settings.trainer.resume else None
    if settings.trainer.resume and found is None:
        raise ckpt.CheckpointError(f"trainer.resume=true but no loadable checkpoint in {run_dir}/checkpoints")
    meta = run_meta(settings.config.model, data.src_tok, data.tgt_tok)
    if found:  # before the logger writes into the run dir: a refused resume changes nothing
        check_meta(found[1]["meta"], meta)
    purge = found[1]["progress"]["step"] + 1 if found else None
    logger = RunLogger(run_dir, settings.tensorboard and dist.main, purge_step=purge, probes=settings.probes)
    train_batches = batches_for(data.train, settings, data, shuffle=True, links=data.train_links).sharded(
        dist.rank, dist.world, settings.trainer.accum_steps)  # each rank collates only its own batches
    parts = TrainerParts(model, train_batches, valid, data.src_tok,
                         data.tgt_tok, run_dir, logger, meta, dist, device,
                         progress_bar=settings.progress_bar and dist.main, callbacks=callbacks)
    trainer = Trainer(parts, settings.trainer, settings.optim, settings.decode)
    if found:
        trainer.restore(found[1])
        log.info("resumed from %s (step %d, epoch %d)", found[0], trainer.progress.step, trainer.progress.epoch)
    return trainer


def train(settings: RunSettings, callbacks: Sequence[Callbacks] = ()) -> dict:
    """Train, then evaluate the best checkpoint. Returns the metrics written to metrics.json. `callbacks`
    (nmt.training.trainer.Callbacks) see the start, every step, every validation and the end.

    Nothing in the run dir changes before every check has passed (config, run dir, lock, checkpoint
    against config); rank 0 holds the run dir's lock (run_lock) until the end."""
    if settings.run_dir is None:
        raise ValueError("train() needs a run_dir: pass run_dir=<directory> (nmt-train picks one itself)")
    setup_logging()
    tune_allocator()  # glibc keeps freed activations: ~85k -> ~25 page faults per CPU step (nmt/alloc.py)
    seed_everything(settings.config.seed)
    dist = dist_env()
    check_launch(dist, settings.trainer.device, settings.config.data.cache_dir)
    device = pick_device(settings.trainer.device, dist.local_rank)  # under torchrun cuda:LOCAL_RANK
    reset_peak_memory(device)  # metrics.json's peak_memory_mb is this job's (multiruns share a process)
    enable_tf32(device, settings.trainer.tf32)  # CUDA only
    if settings.trainer.num_threads > 0:
        torch.set_num_threads(settings.trainer.num_threads)
    with run_lock(settings.run_dir) if dist.main else nullcontext():
        return train_locked(settings, dist, device, callbacks)


def train_locked(settings: RunSettings, dist: DistInfo, device: torch.device,
                 callbacks: Sequence[Callbacks]) -> dict:
    run_dir = settings.run_dir
    check_run_dir(run_dir, settings.trainer.resume)
    for callback in callbacks:
        callback.on_start()
    supervised = settings.trainer.align_loss.on  # λ or local-p's centre_weight
    # before the process group exists, every rank in turn (cache_lock): the first fills the tokenizer and id
    # caches, the others hit them; no rank waits in a collective (and its timeout) while a large corpus is read
    with cache_lock(Path(settings.config.data.cache_dir)) if dist.world > 1 else nullcontext():
        data = load_data(settings.config.data, supervised)
    init_distributed(dist, device, timeout_s=settings.trainer.max_time_s)  # waits no longer than the run may
    try:
        trainer = build_trainer(settings, data, device, dist, callbacks)
        if dist.main:  # after the checkpoint check in build_trainer
            save_run_files(run_dir, settings.config, data.src_tok, data.tgt_tok)
        log.info("model: %s parameters; run dir %s; rank %d of %d", f"{trainer.model.num_parameters():,}",
                 run_dir, dist.rank, dist.world)
        trainer.fit()
        if not dist.main:
            return {}
        if trainer.interrupted:
            trainer.logger.close()
            return stopped_early(trainer)
        metrics = run_final_evaluation(trainer, data, settings.config, settings.decode)
        trainer.logger.close()
    finally:
        shutdown(dist)
    log.info("test BLEU %.2f (beam %d) | %s", metrics["test"]["bleu"], settings.decode.beam_size,
             metrics["test"]["bleu_signature"])
    return metrics


@contextmanager
def cache_lock(cache_dir: Path) -> Iterator[None]:
    """Hold <cache_dir>/.lock (fcntl.flock, waiting for it): the ranks of a torchrun job read the data one at a
    time, so one builds the tokenizer and id caches and the others load them."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(cache_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def resume_command(run_dir: Path) -> str:
    """The exact command that continues a run: its stored config.yaml holds every other setting."""
    return f"nmt-train trainer.resume=true run_dir={Path(run_dir).resolve()}"


def run_final_evaluation(trainer: Trainer, data: DataBundle, config: RunConfig, decode: DecodeSettings) -> dict:
    """final_evaluation; Ctrl-C there becomes EvaluationInterrupted saying the work is safe."""
    try:
        return final_evaluation(trainer, data, config, decode)
    except KeyboardInterrupt:
        raise EvaluationInterrupted(
            f"interrupted during the final evaluation (training had finished at step {trainer.progress.step}); "
            f"the checkpoints in {trainer.run_dir}/checkpoints are safe. Finish the evaluation (metrics.json) "
            f"with: {resume_command(trainer.run_dir)}") from None


def stopped_early(trainer: Trainer) -> dict:
    """Signal: exit 0 with the resume command. Non-finite losses: the last good state is saved, exit 1."""
    p = trainer.progress
    msg = (f"{p.stopped}: checkpoint of step {p.step} saved in {trainer.run_dir}/checkpoints. Resume with:\n"
           f"  {resume_command(trainer.run_dir)}")
    if p.stopped.startswith("non-finite"):
        raise RuntimeError(msg)
    log.warning(msg)
    return {"stopped": p.stopped, "step": p.step, "valid": {"bleu": p.best_bleu}}


def final_evaluation(trainer: Trainer, data: DataBundle, config: RunConfig, decode: DecodeSettings) -> dict:
    """Best checkpoint, beam search on valid and test; hypotheses, references, final attention PNGs,
    TensorBoard hparams and metrics.json (with decode speed and peak memory)."""
    best_path = trainer.run_dir / "checkpoints" / "best.pt"
    if best_path.is_file():
        trainer.model.load_state_dict(ckpt.load(best_path)["model"])
    else:  # every write of best.pt failed (logged then): evaluate the weights in memory
        log.error("%s missing: evaluating the final weights instead of the best ones", best_path)
    p = trainer.progress
    metrics = {"best_step": p.best_step, "best_valid_bleu_greedy": p.best_bleu, "steps": p.step,
               "epochs": p.epoch, "train_tokens_per_s": round(p.tokens / max(p.train_s, 1e-9), 1),
               "minutes_to_best": round(p.best_elapsed_s / 60, 2), "wall_minutes": round(p.elapsed_s / 60, 2),
               "parameters": trainer.model.num_parameters(), "stopped": p.stopped,
               "history": p.history, "dropped_train_pairs": data.dropped, "beam_size": decode.beam_size}
    if trainer.step_parts.align is not None:  # supervised alignment: the last logged mean loss per linked row
        metrics["train_align_loss"] = trainer.last_align_loss
    tokens = {split: beam_evaluation(trainer, getattr(data, split), split, decode, metrics)
              for split in ("valid", "test")}
    metrics.update(peak_memory(trainer.device))
    metrics["attention_stats"] = final_attention(trainer, data, tokens["valid"])
    final = {"hparams/valid_bleu": metrics["valid"]["bleu"], "hparams/test_bleu": metrics["test"]["bleu"],
             "hparams/test_chrf": metrics["test"]["chrf"], "hparams/test_ter": metrics["test"]["ter"],
             "hparams/best_valid_bleu_greedy": p.best_bleu,
             **({"hparams/train_align_loss": trainer.last_align_loss} if trainer.last_align_loss is not None else {})}
    trainer.logger.hparams(run_hparams(config.values, metrics["parameters"]), final, p.step)
    write_json(trainer.run_dir / "metrics.json", metrics)
    return metrics


def beam_evaluation(trainer: Trainer, ds, split: str, decode: DecodeSettings, metrics: dict) -> list[list[int]]:
    """Decode a split, score it into metrics[split], write <split>.beam.hyp.txt and <split>.ref.txt."""
    start = time.perf_counter()
    texts, hyp = decode_texts(trainer.model, ds["src_ids"], trainer.parts.tgt_tok, decode, trainer.device)
    if split == "test":  # tolist() in the search already synchronised the device
        metrics["decode_sentences_per_s"] = round(len(texts) / (time.perf_counter() - start), 2)
    metrics[split] = corpus_scores(texts, ds["tgt"])
    (trainer.run_dir / f"{split}.beam.hyp.txt").write_text("\n".join(texts) + "\n")
    (trainer.run_dir / f"{split}.ref.txt").write_text("\n".join(ds["tgt"]) + "\n")  # for nmt-compare
    trainer.logger.scalars({f"{split}/{k}_beam": metrics[split][k] for k in ("bleu", "chrf", "ter")},
                           trainer.progress.step)
    return hyp.tokens


def final_attention(trainer: Trainer, data: DataBundle, tokens: list[list[int]]) -> dict:
    """Maps of the final beam output on valid: <run_dir>/attention/probe<i>_<slot>.png, probes.pt
    (redrawn by nmt-compare) and <run_dir>/explorer.html for the probes; statistics of the first stats_sentences."""
    cfg = trainer.logger.probes
    if cfg is None:
        return {}
    n_probe, n_stats = (min(n, len(tokens)) for n in (cfg.probe_sentences, cfg.stats_sentences))
    probes, maps = probe_maps(trainer.model, data.valid["src_ids"], tokens, data.src_tok, data.tgt_tok,
                              trainer.device, n_probe, n_stats)
    if n_probe:
        from nmt.inspection.heatmaps import save_slot_pngs  # matplotlib only when drawing
        for i, probe in enumerate(probes):
            save_slot_pngs(trainer.run_dir / "attention", f"probe{i}", probe)
        torch.save([pr.saved() for pr in probes], trainer.run_dir / "attention" / "probes.pt")
        write_run_explorer(trainer.run_dir)  # <run_dir>/explorer.html from probes.pt
    stats = attention_stats([(m.maps, m.centres) for m in maps])
    return {slot: {k: (round(v, 4) if math.isfinite(v) else None) for k, v in st.items()} for slot, st in stats.items()}
