"""Counting host syncs on CPU (tests/training/test_syncs.py, tests/decoding/test_search.py): the ops that
force a device->host read or have data-dependent shapes, and the Python-level reads of tensors."""
import collections

import torch
from torch.utils._python_dispatch import TorchDispatchMode

SYNC_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique", "_unique2", "unique_dim",
            "unique_consecutive"}
HOST_READS = ("item", "tolist", "cpu", "numpy")


class SyncCounter(TorchDispatchMode):
    """Counts sync ops (SYNC_OPS, boolean-mask indexing) and Python-level host reads of tensors."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()
        self.originals = {m: getattr(torch.Tensor, m) for m in HOST_READS}

    def __enter__(self):
        for name, original in self.originals.items():
            setattr(torch.Tensor, name, self._counted(name, original))
        return super().__enter__()

    def __exit__(self, *exc):
        for name, original in self.originals.items():
            setattr(torch.Tensor, name, original)
        return super().__exit__(*exc)

    def _counted(self, name, original):
        def read(tensor, *args, **kwargs):
            self.counts[f".{name}()"] += 1
            return original(tensor, *args, **kwargs)
        return read

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        op = func.__name__.split(".")[0]
        if op in SYNC_OPS:
            self.counts[op] += 1
        if op.startswith("index") and len(args) > 1 and isinstance(args[1], (list, tuple)) and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1]):
            self.counts["boolean-mask indexing"] += 1
        return func(*args, **(kwargs or {}))
