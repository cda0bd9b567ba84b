"""nmt.alloc.tune_allocator: freed 64 MB tensors stop being faulted in again at every allocation."""
from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = 2 * 64 * 2**20 // 4096  # pages of the two 64 MB tensors of one cycle

# A fresh process (allocator settings are process-wide), tuned at its start or not: minor page
# faults of each cycle that allocates, fills and frees two 64 MB tensors (the size of the default
# RNN's logits). A tuned heap needs a few cycles to settle (freed blocks coalesce), so only the
# last cycles count.
PROBE = """
import json, resource, sys
from nmt.alloc import tune_allocator
applied = tune_allocator() if sys.argv[1] == "tuned" else None
import torch
faults = []
for _ in range(16):
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.empty(16 * 2**20).fill_(1.0)
    y = (x * 2).sum()
    del x
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
print(json.dumps({"applied": applied, "faults": faults}))
"""


def cycle_faults(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_memory_is_reused_without_page_faults():
    default, tuned = cycle_faults("default"), cycle_faults("tuned")
    assert tuned["applied"] is True
    last = slice(-6, None)
    assert min(default["faults"][last]) > 0.9 * PAGES  # glibc's default: every block mmapped afresh
    assert sum(tuned["faults"][last]) / 6 < 0.01 * PAGES


def test_no_glibc_changes_nothing(monkeypatch):
    import nmt.alloc
    monkeypatch.setattr(nmt.alloc.platform, "libc_ver", lambda: ("", ""))
    assert nmt.alloc.tune_allocator() is False
