"""nmt: neural machine translation with pluggable attention (global, local, hard, self).

`nmt.load(run_dir)` returns a trained model for Python and notebooks (nmt.api); importing nmt alone loads
nothing else.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "load":  # imported on first use: `import nmt.data` stays light
        from nmt.api import load
        return load
    raise AttributeError(f"module 'nmt' has no attribute {name!r}")
