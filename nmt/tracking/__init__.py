"""Run tracking: the TensorBoard logger (scalars, attention images, probe texts, hparams), peak memory and
the attention statistics (only the trainer calls these). Named `tracking`, not `logging`, so it never reads
as the standard library's module.

matplotlib is imported only when heatmaps are drawn (nmt.inspection.heatmaps).
"""
from nmt.tracking.stats import attention_stats
from nmt.tracking.writer import ProbeSettings, RunLogger, peak_memory, reset_peak_memory, run_hparams

__all__ = ["ProbeSettings", "RunLogger", "attention_stats", "peak_memory", "reset_peak_memory", "run_hparams"]
