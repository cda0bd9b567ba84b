"""nmt: neural machine translation with pluggable attention (global, local, hard, self)."""

__version__ = "0.1.0"
