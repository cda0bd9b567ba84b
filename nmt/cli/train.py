"""nmt-train: compose the Hydra config (configs/train.yaml) and call nmt.training.session.train.

Before Hydra runs (and writes .hydra/ and train.log), the config is composed and checked here, a
resume is turned into the run's own stored config plus the overrides given now, and the run dir's
lock is taken: a refused run writes nothing. Multiruns and Hydra flags go to Hydra unchecked
(train() still checks each job).
"""
from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from nmt.cli.common import config_dir, default_trainer_override, register_resolvers
from nmt.cli.errors import CONFIG_ERRORS, UserError, compose_checked, hydra_flags, newest_runs, user_errors
from nmt.alignment.supervision import check_alignment_file
from nmt.cli.resume import resume_config
from nmt.common import typed
from nmt.decoding import DecodeSettings
from nmt.models.build import build_corpus, build_model, check_labels, check_pointer
from nmt.runs.config import RunConfig
from nmt.runs.run_dir import check_run_dir, check_unlocked, run_lock
from nmt.tracking import ProbeSettings
from nmt.training.optim import OptimSettings
from nmt.training.session import RunSettings, train
from nmt.training.align_loss import align_spec
from nmt.training.distributed import check_launch, dist_env
from nmt.training.trainer import Callbacks, TrainSettings

PROG = "nmt-train"


def resuming(args: list[str]) -> bool:
    return any(re.fullmatch(r"\+*trainer\.resume=(?i:true)", a) for a in args)


def resumed(given: DictConfig, overrides: list[str]) -> DictConfig:
    """The run's stored config.yaml with the overrides given now (nmt.cli.resume.resume_config)."""
    if given.run_dir is None:
        raise UserError(f"trainer.resume=true needs run_dir=<the run to continue>{newest_runs()}")
    stored = Path(given.run_dir) / "config.yaml"
    if not stored.is_file():
        raise UserError(f"trainer.resume=true but run_dir={given.run_dir} holds no run (no config.yaml); "
                        f"set run_dir to the directory of the run to continue{newest_runs()}")
    named = [o.lstrip("+~").split("=", 1)[0] for o in overrides]
    return resume_config(OmegaConf.load(stored), compose_checked("train", []), given, named)


def run_settings(cfg: DictConfig) -> RunSettings:
    """The composed config as the typed settings the library takes, every group validated before any data is
    read: a bad value raises ValueError naming the key, the value and the valid choices. The model is built
    once with an 8-token vocabulary (on the meta device it would be free of memory, but its first use imports
    torch's meta kernels: ~10 s). Data paths become absolute, so the stored config works from any directory."""
    def group(name: str) -> dict:
        return OmegaConf.to_container(cfg[name], resolve=True)
    if cfg.model.family != "transformer" and "self_attention" in cfg.model.decoder:  # nothing resolved yet
        raise ValueError(f"+model/position=... and +model/heads=... set the Transformer's attention slots, but "
                         f"model.family is {cfg.model.family}: use them with model=transformer or +experiment=self")
    config = RunConfig(OmegaConf.to_container(cfg, resolve=True))
    check_launch(dist_env(), cfg.trainer.device, config.data.cache_dir)  # torchrun: device, shared cache dir
    config = config.with_data(config.data.absolute())
    probes = {k: v for k, v in group("logger").items() if k in ProbeSettings.__dataclass_fields__}
    settings = RunSettings(typed(TrainSettings, "trainer", group("trainer")),
                           typed(OptimSettings, "optim", group("optim")), typed(DecodeSettings, "decode", group("decode")), typed(ProbeSettings, "logger", probes),
                           config, None if cfg.run_dir is None else Path(cfg.run_dir),
                           bool(cfg.logger.tensorboard), bool(cfg.logger.progress_bar))
    check_labels(config.model)
    check_pointer(config.model, config.data.tokenizer["joint"])  # copying needs one vocabulary
    align_spec(settings.trainer.align_loss, build_model(config.model, 8, 8, 0))  # slot and head exist
    align = settings.trainer.align_loss
    if align.on and config.data.alignment is None:
        raise ValueError(f"trainer.align_loss.weight={align.weight} / centre_weight={align.centre_weight} needs "
                         "data.alignment=<the Pharaoh file of the training split> (docs/alignment.md); or set both "
                         "weights to 0")
    build_corpus(config.data.corpus)  # corpus arguments; no file is opened until load()
    return settings


def prepare(args: list[str]) -> DictConfig:
    """Compose, resume, check every value and the run dir; nothing is written."""
    cfg = compose_checked("train", args)
    if cfg.trainer.resume:
        cfg = resumed(cfg, args)
    settings = run_settings(cfg)
    data = settings.config.data
    if data.alignment is not None:  # a bad file fails here, naming its line, before the run dir exists
        check_alignment_file(data.alignment, build_corpus(data.corpus), data.split_name("train"))
    if cfg.run_dir is not None:
        if main_rank():
            check_unlocked(Path(cfg.run_dir))
        check_run_dir(Path(cfg.run_dir), cfg.trainer.resume)
    return cfg


def main_rank() -> bool:
    """Not a torchrun worker of rank > 0 (rank 0 holds the run dir's lock for all)."""
    return os.environ.get("RANK", "0") == "0"


def run_hydra(prepared: DictConfig | None, callbacks: Sequence[Callbacks]) -> None:
    """Hydra's run (its output dir, train.log, multirun) around train(); the prepared config wins."""
    @hydra.main(config_path=config_dir(), config_name="train", version_base="1.3")
    def task(cfg: DictConfig) -> float:
        cfg = prepared if prepared is not None else cfg
        if cfg.run_dir is None:  # outputs/<date>/<time>, or a multirun job's sweep subdirectory
            cfg.run_dir = HydraConfig.get().runtime.output_dir
        with user_errors(PROG):
            metrics = train(run_settings(cfg), callbacks)
        return objective(metrics)
    task()


def objective(metrics: dict) -> float:
    """What a multirun's sweeper maximises (the Optuna search, configs/search/default.yaml): the validation BLEU
    of the best checkpoint with the final beam search (decode.*); the best greedy validation BLEU of a run a
    signal stopped early; 0.0 on a torchrun rank > 0 (rank 0 evaluates). Never a test score."""
    return float(metrics.get("valid", {}).get("bleu", 0.0))


def main(callbacks: Sequence[Callbacks] = ()) -> None:
    """nmt-train; `callbacks` (nmt.training.trainer.Callbacks) for scripts that measure a real run."""
    register_resolvers()
    args = sys.argv[1:]
    if not resuming(args):  # a resume keeps the run's own trainer group (in its config.yaml)
        args = default_trainer_override(args, torch.cuda.is_available())
    prepared = None
    if not hydra_flags(args):
        with user_errors(PROG, CONFIG_ERRORS):
            prepared = prepare(args)
    if prepared is not None and prepared.trainer.resume:
        args = [*args, "hydra.output_subdir=null"]  # keep the run's .hydra/overrides.yaml: its first command
    sys.argv = [sys.argv[0], *args]
    hold = prepared is not None and prepared.run_dir is not None and main_rank()
    with user_errors(PROG, CONFIG_ERRORS), run_lock(Path(prepared.run_dir)) if hold else nullcontext():
        run_hydra(prepared, callbacks)


if __name__ == "__main__":
    main()
