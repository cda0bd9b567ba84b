"""Run directories: what a finished or running training leaves on disk, and loading it back."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from nmt.common import file_sha256
from nmt.data.tokenizer import SubwordTokenizer
from nmt.models.build import build_model
from nmt.models.seq2seq import Seq2Seq
from nmt.training import checkpoint as ckpt


class RunDirError(RuntimeError):
    """A run directory that cannot be used as asked."""


@dataclass
class TrainedRun:
    cfg: DictConfig
    model: Seq2Seq
    src_tok: SubwordTokenizer
    tgt_tok: SubwordTokenizer
    step: int


def run_meta(cfg: DictConfig, src_tok: SubwordTokenizer, tgt_tok: SubwordTokenizer) -> dict:
    """What must match between a checkpoint and the config that resumes or loads it."""
    return {"model": OmegaConf.to_yaml(cfg.model, resolve=True), "src_vocab": len(src_tok),
            "tgt_vocab": len(tgt_tok), "src_spm": file_sha256(src_tok.model_path)[:16],
            "tgt_spm": file_sha256(tgt_tok.model_path)[:16]}


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """Refuse to train into a directory that holds another run unless resuming it."""
    has_run = any((run_dir / "checkpoints").glob("step_*.pt")) if (run_dir / "checkpoints").is_dir() else False
    if has_run and not resume:
        raise RunDirError(f"run_dir {run_dir} already holds a training run; pass trainer.resume=true to "
                          "continue it, or choose another run_dir")
    if resume and not has_run:
        raise RunDirError(f"trainer.resume=true but {run_dir} has no checkpoints/step_*.pt; set run_dir "
                          "to the directory of the run to continue")


def save_run_files(run_dir: Path, cfg: DictConfig, src_tok: SubwordTokenizer, tgt_tok: SubwordTokenizer) -> None:
    """Resolved config and the sentencepiece models, so evaluate/translate need nothing else."""
    (run_dir / "tokenizer").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src_tok.model_path, run_dir / "tokenizer" / "src.model")
    shutil.copyfile(tgt_tok.model_path, run_dir / "tokenizer" / "tgt.model")
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)


def load_trained(run_dir: Path, which: str, device: torch.device) -> TrainedRun:
    """which = 'best' | 'last' | a checkpoint path."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise RunDirError(f"{run_dir} is not a run directory (no config.yaml); pass run_dir=<outputs/...>")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    src_tok = SubwordTokenizer.load(str(run_dir / "tokenizer" / "src.model"))
    tgt_tok = SubwordTokenizer.load(str(run_dir / "tokenizer" / "tgt.model"))
    if which == "last":
        found = ckpt.load_latest(run_dir / "checkpoints")
        if found is None:
            raise RunDirError(f"no loadable checkpoints/step_*.pt in {run_dir}")
        state = found[1]
    else:
        path = run_dir / "checkpoints" / "best.pt" if which == "best" else Path(which)
        if not path.is_file():
            raise RunDirError(f"checkpoint {path} not found; use checkpoint=best|last|<path>")
        state = ckpt.load(path)
    model = build_model(cfg.model, len(src_tok), len(tgt_tok), tgt_tok.pad_id)
    model.load_state_dict(state["model"])
    step = state.get("step", state.get("progress", {}).get("step", 0))
    return TrainedRun(cfg, model.to(device).eval(), src_tok, tgt_tok, step)
