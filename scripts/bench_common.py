"""What scripts/benchmark.py and scripts/gpu_race.py share: tiny model sizes, device peak FLOP/s,
JoeyNMT summary figures, machine facts and number formatting. Standard library only, so a script
that drives nmt through its CLI need not import torch.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

# Tiny sizes for tests (seconds on CPU), per model family, as Hydra overrides of configs/train.yaml
_TINY_TRANSFORMER = [f"model.{p}.{k}" for p in ("encoder", "decoder")
                     for k in ("ff_size=64", "num_layers=1", "self_attention.num_heads=2")]
TINY = {
    "rnn": ["model.encoder.emb_size=16", "model.encoder.hidden_size=16", "model.decoder.emb_size=32",
            "model.decoder.hidden_size=32"],
    "transformer": ["model.encoder.d_model=32", *_TINY_TRANSFORMER, "model.decoder.cross_attention.num_heads=2"],
    "hybrid": ["model.encoder.d_model=32", "model.encoder.ff_size=64", "model.encoder.num_layers=1",
               "model.encoder.self_attention.num_heads=2", "model.decoder.emb_size=32",
               "model.decoder.hidden_size=32"],
}

# dense bf16 peak FLOP/s by device-name substring, first match wins (NVIDIA datasheets)
PEAK_BF16_FLOPS = (("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200", 989e12),
                   ("A100", 312e12))

# JoeyNMT's test phase (run_joey.py) decodes Multi30k val + test_2016_flickr with beam 5
JOEY_TEST_SENTENCES = 1014 + 1000


def peak_flops_for(device_name: str | None) -> float | None:
    """Peak dense bf16 FLOP/s of a GPU named like nvidia-smi / torch name it; None if unknown."""
    if not device_name:
        return None
    return next((f for key, f in PEAK_BF16_FLOPS if key in device_name), None)


def joey_speeds(summary: dict) -> dict:
    """{tgt_tok_s, beam_sent_s} of a run_joey.py summary.

    tgt_tok_s: avg_trg_tokens_per_s_excl_valid (target tokens / training time without validation).
    beam_sent_s: JOEY_TEST_SENTENCES / test_phase_s, an approximation: the phase also loads
    best.ckpt and scores; None when the summary has no test phase.
    """
    test_s = summary.get("test_phase_s")
    return {"tgt_tok_s": summary["avg_trg_tokens_per_s_excl_valid"],
            "beam_sent_s": JOEY_TEST_SENTENCES / test_s if test_s else None}


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs, None when either is missing or theirs is 0."""
    return ours / theirs if ours is not None and theirs else None


def fmt(x, spec: str) -> str:
    """format(x, spec), "n/a" for None."""
    return "n/a" if x is None else format(x, spec)


def loadavg() -> float | None:
    """1-minute load average (other processes on a shared CPU distort every figure)."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
