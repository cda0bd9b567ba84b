"""Loggers: TensorBoard scalars/images/hparams and run summaries (only the trainer calls these).

matplotlib is imported only when heatmaps are drawn (nmt.logging.heatmaps).
"""
from nmt.logging.stats import attention_stats
from nmt.logging.writer import (Probe, ProbeSettings, RunLogger, attention_label, peak_memory, reset_peak_memory,
                                run_hparams, to_probe)

__all__ = ["Probe", "ProbeSettings", "RunLogger", "attention_label", "attention_stats", "peak_memory",
           "reset_peak_memory", "run_hparams", "to_probe"]
