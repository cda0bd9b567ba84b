"""TensorBoard writer (scalars, attention images, hparams) and run summaries (JSON, peak memory)."""
from __future__ import annotations

import math
import resource
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from nmt.attention.slot import Slot
from nmt.decoding.inspect import Probe
from nmt.inspection.probe_text import probe_markdown
from nmt.runs.trained import attention_label
from nmt.tracking.stats import attention_stats


@dataclass
class ProbeSettings:
    """Mirrors the attention keys of configs/logger/tensorboard.yaml."""
    probe_sentences: int   # first N validation sentences: heatmaps at every validation, final PNGs
    probe_beam: int        # 1 = the greedy validation output; > 1 = beam search for the probes
    stats_sentences: int   # first N validation outputs give attn_stats/* (0 = none)
    attention_slots: str   # all | cross: which slots become TensorBoard images

    def __post_init__(self):
        if self.attention_slots not in ("all", "cross"):
            raise ValueError(f"logger.attention_slots must be one of all, cross; got {self.attention_slots!r}")
        for key in ("probe_sentences", "stats_sentences"):
            if getattr(self, key) < 0:
                raise ValueError(f"logger.{key} must be >= 0, got {getattr(self, key)}")
        if self.probe_beam < 1:
            raise ValueError(f"logger.probe_beam must be >= 1, got {self.probe_beam}")


class RunLogger:
    """TensorBoard under <run_dir>/tb; `purge_step` drops events a resumed run redoes.

    `probes` says which attention the trainer should decode and hand over (None: none).
    """

    def __init__(self, run_dir: Path, tensorboard: bool, purge_step: int | None = None,
                 probes: ProbeSettings | None = None):
        self.run_dir, self.probes = Path(run_dir), probes
        self.tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=purge_step) if tensorboard else None

    @property
    def enabled(self) -> bool:
        return self.tb is not None

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Non-finite values (an undefined statistic) are skipped."""
        if self.tb is None:
            return
        for name, value in values.items():
            if value is not None and math.isfinite(value):
                self.tb.add_scalar(name, value, step)

    def attention_images(self, probes: list[Probe], step: int) -> int:
        """Heatmaps `attention/probe<i>/<slot>/head<h>`; returns how many were logged."""
        if self.tb is None or not probes:
            return 0
        from nmt.inspection.heatmaps import figure_rgb, map_figure, slot_labels  # matplotlib only when used
        n = 0
        for i, probe in enumerate(probes):
            for slot, maps in probe.maps.items():
                if self.probes is not None and self.probes.attention_slots == "cross" and not Slot(slot).is_cross:
                    continue
                x, y = slot_labels(slot, probe.src_pieces, probe.out_pieces)
                for h in range(maps.shape[0]):
                    fig = map_figure(maps[h], x, y, f"probe {i}  {slot}  head {h}", probe.centres.get(slot))
                    self.tb.add_image(f"attention/probe{i}/{slot}/head{h}", figure_rgb(fig), step, dataformats="HWC")
                    n += 1
        return n

    def probe_texts(self, probes: list[Probe], references: list[str], step: int) -> int:
        """Text `probes/probe<i>`: source, reference, output and the word alignment read off the last layer's
        cross-attention (heads averaged), so the translation is read beside its map; with copy attention also
        whether each output piece was copied or generated (p_gen_markdown). Returns how many."""
        if self.tb is None:
            return 0
        for i, (probe, ref) in enumerate(zip(probes, references)):
            p_gen = probe.p_gen  # (T_out,) for copy attention, else None
            text = probe_markdown(probe, ref) + ("" if p_gen is None else "  \n" + p_gen_markdown(probe.out_pieces, p_gen))
            self.tb.add_text(f"probes/probe{i}", text, step)
        return min(len(probes), len(references))

    def attention_stats(self, sentences: list, step: int) -> dict[str, dict[str, float]]:
        """[(maps, centres)] per sentence -> scalars attn_stats/<slot>/<stat>; returns the statistics."""
        stats = attention_stats(sentences)
        self.scalars({f"attn_stats/{slot}/{k}": v for slot, s in stats.items() for k, v in s.items()}, step)
        return stats

    def hparams(self, hparams: dict, metrics: dict[str, float], step: int) -> None:
        """HParams plugin entries in this run's own event file (not a sub-run, unlike add_hparams)."""
        if self.tb is None:
            return
        from torch.utils.tensorboard.summary import hparams as hparams_summaries
        metrics = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}
        writer = self.tb._get_file_writer()
        for summary in hparams_summaries({k: _hparam_value(v) for k, v in hparams.items()}, metrics):
            writer.add_summary(summary, step)
        self.scalars(metrics, step)

    def flush(self) -> None:
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def p_gen_markdown(pieces: list[str], p_gen: torch.Tensor) -> str:
    """Copied or generated, per output piece (copy attention): pieces (T,) with p_gen (T,), the probability of
    generating (See et al. 2017, Eq. 8); a piece with p_gen < 0.5 was mostly copied from the source."""
    marks = [f"{piece}:{'copied' if g < 0.5 else 'generated'} {g:.2f}" for piece, g in zip(pieces, p_gen.tolist())]
    return "**copied or generated** (p_gen): `" + " ".join(marks) + "`"


def _hparam_value(v):
    """HParams accept bool/int/float/str: everything else (None, lists) becomes its string."""
    return v if isinstance(v, (bool, int, float, str)) else str(v)


def _short(target: str) -> str:
    return target.rsplit(".", 1)[-1]


def flatten(tree: dict, prefix: str) -> dict:
    """Nested config -> {"prefix.a.b": leaf}; `_target_` leaves become the class name."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out.update(flatten(value, name))
        else:
            out[name] = _short(value) if key == "_target_" else value
    return out


def run_hparams(cfg: dict, parameters: int) -> dict:
    """What TensorBoard's HParams dashboard filters runs by (cfg: the resolved train config)."""
    data, trainer = cfg["data"], cfg["trainer"]
    hp = {"attention": attention_label(cfg["model"]), "family": cfg["model"]["family"], "seed": cfg["seed"],
          "parameters": parameters, "data": f"{_short(data['corpus']['_target_'])} {data['src_lang']}-"
          f"{data['tgt_lang']}"}
    hp.update(flatten(cfg["model"], "model"))
    hp.update(flatten(cfg["optim"], "optim"))
    hp.update({f"trainer.{k}": trainer[k] for k in ("max_tokens", "accum_steps", "max_steps", "max_time_s",
                                                    "device")})
    hp["decode.beam_size"] = cfg["decode"]["beam_size"]
    if "align_loss" in trainer:  # runs trained before supervised alignment existed have none
        hp.update(flatten(trainer["align_loss"], "trainer.align_loss"))
    return hp


def reset_peak_memory(device: torch.device) -> None:
    """Start a job's peak-memory window: CUDA allocator peak, or Linux's peak RSS (VmHWM) on CPU."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # "5" resets the peak resident set size (proc(5), clear_refs); not everywhere allowed
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_memory(device: torch.device) -> dict:
    """-> {"peak_memory_mb", "peak_memory_kind"}: cuda_max_allocated | cpu_peak_rss (VmHWM since
    reset_peak_memory) | cpu_max_rss_process (getrusage: the whole process, other jobs included)."""
    if device.type == "cuda":
        return {"peak_memory_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
                "peak_memory_kind": "cuda_max_allocated"}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return {"peak_memory_mb": round(int(line.split()[1]) / 1024, 1), "peak_memory_kind": "cpu_peak_rss"}
    except OSError:
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return {"peak_memory_mb": round(kb / 1024, 1), "peak_memory_kind": "cpu_max_rss_process"}
