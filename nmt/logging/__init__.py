"""Loggers: TensorBoard scalars/images/hparams and run summaries (only the trainer calls these)."""
from nmt.logging.writer import RunLogger, write_json

__all__ = ["RunLogger", "write_json"]
