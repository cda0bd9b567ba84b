"""nmt-average: one checkpoint whose weights are the mean of a run's N newest step checkpoints.

Averaging the last checkpoints of a run (Vaswani et al. 2017, Sec. 6.1: "averaging the last 5
checkpoints") smooths the noise of the final updates. The result, checkpoints/avg_last<N>.pt, holds what
best.pt holds (model weights, meta, step; no optimiser), so `checkpoint=avg_last<N>` works wherever
`checkpoint=best` does (nmt.runs.trained.load_trained).

Only `last=N` exists: a run keeps one best.pt, not the N best, and the step checkpoints kept
(trainer.keep_last) are the newest, not the best validated ones.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from nmt.runs import checkpoint as ckpt
from nmt.runs.config import RunConfig
from nmt.runs.run_dir import RunDirError

log = logging.getLogger(__name__)


@dataclass
class AverageJob:
    """nmt-average's settings: mirrors configs/average.yaml (built by nmt.cli.common.job)."""
    run_dir: str
    last: int                    # average the newest `last` loadable checkpoints/step_*.pt

    def __post_init__(self):
        if self.last < 1:
            raise ValueError(f"last must be >= 1, got {self.last}")


def newest_states(run_dir: Path, n: int) -> list[tuple[Path, dict]]:
    """The n newest loadable step checkpoints as (path, {"model", "meta", "step"}), newest first (a corrupt
    one is skipped with a warning); fewer than n is refused, naming how many there are and the
    trainer.keep_last that keeps enough."""
    found = []
    for path in ckpt.step_checkpoints(run_dir / "checkpoints"):
        try:
            state = ckpt.load(path)
        except ckpt.CheckpointError as e:
            log.warning("%s -- not averaged", e)
            continue
        # the optimiser state (twice the weights with Adam) is dropped at once: n models are held, not n states
        found.append((path, {"model": state["model"], "meta": state["meta"], "step": state["progress"]["step"]}))
        if len(found) == n:
            return found
    names = f" ({', '.join(p.name for p, _ in found)})" if found else ""
    fewer = f"pass last={len(found)} or fewer, and " if found else ""
    raise ckpt.CheckpointError(
        f"last={n} needs {n} loadable step checkpoints, but {run_dir / 'checkpoints'} has {len(found)}{names}; "
        f"this run kept {_keep_last(run_dir)}: {fewer}train future runs with trainer.keep_last>={n}")


def _keep_last(run_dir: Path) -> str:
    """trainer.keep_last from the run's config.yaml, for the refusal message."""
    trainer = RunConfig.load(run_dir / "config.yaml").values.get("trainer", {})
    return f"trainer.keep_last={trainer.get('keep_last', '?')}"


def check_same_model(states: list[tuple[Path, dict]]) -> None:
    """Every checkpoint has the newest one's meta (model config, vocabulary sizes, tokenizer hashes) and
    parameter names; the error names the file and what differs."""
    (newest, first), *rest = states
    for path, state in rest:
        meta, ref = state["meta"], first["meta"]
        diffs = [f"{k}: {path.name} {_short(meta.get(k))} vs {newest.name} {_short(ref.get(k))}"
                 for k in ckpt.meta_differs(meta, ref)]
        if set(state["model"]) != set(first["model"]):
            diffs.append(f"parameters: {sorted(set(state['model']) ^ set(first['model']))}")
        if diffs:
            raise ckpt.CheckpointError(f"cannot average {path.name} with {newest.name}: another model\n  "
                                       + "\n  ".join(diffs))


def _short(value, width: int = 60) -> str:
    """repr cut to `width` characters (meta["model"] is the whole model config as YAML)."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def average_weights(models: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of floating-point tensors (summed in float64, then cast back to their dtype);
    integer and bool buffers are the first (newest) model's."""
    first = models[0]
    out = {}
    for name, tensor in first.items():
        if not tensor.is_floating_point():
            out[name] = tensor.clone()
            continue
        total = torch.zeros(tensor.shape, dtype=torch.float64)
        for model in models:
            total += model[name].double()
        out[name] = (total / len(models)).to(tensor.dtype)
    return out


def average_run(job: AverageJob) -> Path:
    """Write <run>/checkpoints/avg_last<N>.pt atomically: {"model", "meta", "step" (the newest's),
    "averaged_steps"}; nothing is written when the checkpoints are refused."""
    run_dir = Path(job.run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise RunDirError(f"run_dir={run_dir} is not a run directory (no config.yaml); pass the directory "
                          "nmt-train wrote")
    states = newest_states(run_dir, job.last)
    check_same_model(states)
    steps = [state["step"] for _, state in states]
    out = run_dir / "checkpoints" / f"avg_last{job.last}.pt"
    ckpt.atomic_save({"model": average_weights([state["model"] for _, state in states]),
                      "meta": states[0][1]["meta"], "step": steps[0], "averaged_steps": steps}, out)
    log.info("averaged %s into %s", ", ".join(p.name for p, _ in states), out)
    return out
