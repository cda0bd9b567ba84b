"""nmt.alloc.tune_allocator: freed 64 MB tensors stop being faulted in again at every allocation."""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = 2 * 64 * 2**20 // 4096  # pages of the two 64 MB tensors of one cycle
WARMUP, MEASURED = 8, 11  # cycles left out, cycles judged by their median

# A fresh process (allocator settings are process-wide), tuned at its start or not: minor page
# faults of each cycle that allocates, fills and frees two 64 MB tensors (the size of the default
# RNN's logits). A tuned heap needs a few cycles to settle (freed blocks coalesce), and a loaded
# machine can fault a whole tensor in once more in any cycle (seen: 16,384 faults in one cycle of a
# fresh clone's CI run, 2 cores, other jobs running), so the first WARMUP cycles are left out and the
# MEDIAN of the others is judged: one stray cycle cannot fail the test, while an allocator that
# returns memory faults in every cycle and still fails it.
# The probe turns transparent huge pages off for itself (prctl PR_SET_THP_DISABLE), so a fault is one 4 KiB
# page whatever /sys/kernel/mm/transparent_hugepage says (with THP, a 64 MB tensor faults in ~32 huge
# pages, not 16,384 small ones), and runs in an environment without MALLOC_* / GLIBC_TUNABLES, which would
# tune glibc before the test does.
PROBE = """
import ctypes, json, resource, sys
assert ctypes.CDLL(None, use_errno=True).prctl(41, 1, 0, 0, 0) == 0, "prctl(PR_SET_THP_DISABLE) failed"
from nmt.alloc import tune_allocator
applied = tune_allocator() if sys.argv[1] == "tuned" else None
import torch
faults = []
for _ in range(int(sys.argv[2])):
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.empty(16 * 2**20).fill_(1.0)
    y = (x * 2).sum()
    del x
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
print(json.dumps({"applied": applied, "faults": faults}))
"""


def clean_env() -> dict:
    """This environment without the variables that configure glibc's allocator."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}


def cycle_faults(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode, str(WARMUP + MEASURED)], cwd=ROOT, env=clean_env(),
                         capture_output=True, text=True, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_memory_is_reused_without_page_faults():
    default, tuned = cycle_faults("default"), cycle_faults("tuned")
    assert tuned["applied"] is True
    default_faults, tuned_faults = default["faults"][WARMUP:], tuned["faults"][WARMUP:]
    assert statistics.median(default_faults) > 0.9 * PAGES, default_faults  # glibc's default: mmapped afresh
    assert statistics.median(tuned_faults) < 0.01 * PAGES, tuned_faults  # tuned: freed memory reused


def test_no_glibc_changes_nothing(monkeypatch):
    import nmt.alloc
    monkeypatch.setattr(nmt.alloc.platform, "libc_ver", lambda: ("", ""))
    assert nmt.alloc.tune_allocator() is False
