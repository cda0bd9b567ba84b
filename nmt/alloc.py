"""C allocator settings for training on CPU: stop glibc from handing memory back every step.

PyTorch's CPU tensors come from malloc. glibc serves a block above its mmap threshold (at most
32 MiB) with a fresh mmap and unmaps it on free, and trims the heap top back to the OS once more
than M_TRIM_THRESHOLD is free there. A training step allocates and frees the same large
activations (the default RNN's logits alone are ~2,000 tokens x 8,000 words x 4 B = 64 MB) every
step, so every step faults all of them in again: ~80,000 minor page faults per step of
`scripts/benchmark.py --models rnn-luong` on a 2-core CPU, ~0.2 s of kernel time per step
(docs/gpu_race.md, "CPU page faults").
"""
from __future__ import annotations

import ctypes
import platform

# mallopt(3) parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


def tune_allocator(trim_threshold: int = 1 << 30) -> bool:
    """Keep freed memory in the process: no mmap-served blocks, heap trimmed only above `trim_threshold` bytes.

    Both settings are needed: a block above 32 MiB (the largest mmap threshold glibc accepts) is
    always mmapped unless mmap is off (M_MMAP_MAX = 0), and with mmap off the freed heap top is
    trimmed (and faulted in again) unless the trim threshold exceeds one step's working set.
    The cost is that up to `trim_threshold` bytes of freed memory stay resident.
    Call once at process start, before training. Returns False where there is no glibc
    (macOS, musl, Windows): nothing changes there. The same effect without code, for any
    process: MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<bytes> in the environment.
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1
