"""nmt-score: the model's log-probability of given translations (forced decoding), one JSON line per pair.

As fairseq-generate --score-reference and sockeye-score do: each target is teacher-forced through the model
and every target piece, and the final eos, is scored. Per input line i:

    {"line": i, "logprob": sum_t log p(y_t | y_<t, x), "score": logprob / (|y| + 1),
     "tokens": [piece, ..., "</s>"], "token_logprobs": [log p(y_1 | x), ..., log p(</s> | y, x)]}

`score` is length-normalised by the number of scored tokens (pieces + eos), so it compares sentences of
different lengths; `logprob` is the plain total (compare candidates for the same source with either).
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from nmt.common import atomic_write_text, pick_device
from nmt.data.corpus import read_lines
from nmt.decoding.forced import check_line_aligned, forced_batches, reference_log_probs
from nmt.runs.trained import load_trained


@dataclass
class ScoreJob:
    """nmt-score's settings: mirrors configs/score.yaml (built by nmt.cli.common.job)."""
    run_dir: str
    checkpoint: str              # best | last | a name in checkpoints/ (avg_last5) | a checkpoint path
    device: str
    src: str                     # source sentences, one per line
    tgt: str                     # their translations to score, line-aligned with src
    out: str | None              # JSON lines file; None: standard output
    chunk: int                   # pairs per forced-decoding pass

    def __post_init__(self):
        if self.chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {self.chunk}")


@torch.no_grad()
def score_pairs(model, src_ids: list[list[int]], tgt_ids: list[list[int]], pad_id: int, bos_id: int, eos_id: int,
                device, chunk: int) -> list[dict]:
    """Force-decode each (src, tgt) pair (ids without bos/eos) -> per pair, in input order,
    {"line", "logprob", "score", "token_logprobs"}: len(tgt) + 1 log-probs, the last one eos's."""
    model.eval()
    rows = []
    for b in forced_batches(src_ids, tgt_ids, pad_id, bos_id, eos_id, chunk, device):
        logp = reference_log_probs(model, b, pad_id).cpu()  # (B, T), 0 on padding
        for i, row in zip(b.indices.tolist(), logp.tolist()):
            token_logprobs = row[: len(tgt_ids[i]) + 1]  # the pieces, then eos
            total = math.fsum(token_logprobs)
            rows.append({"line": i, "logprob": total, "score": total / len(token_logprobs),
                         "token_logprobs": token_logprobs})
    return rows


def score_lines(trained, src_lines: list[str], tgt_lines: list[str], device, chunk: int) -> list[dict]:
    """score_pairs on text, with each target's pieces ("tokens", ending in "</s>") beside its log-probs."""
    check_line_aligned(src_lines, tgt_lines)
    tok = trained.tgt_tok
    tgt_ids = tok.encode(tgt_lines)
    rows = score_pairs(trained.model, trained.src_tok.encode(src_lines), tgt_ids, tok.pad_id, tok.bos_id,
                       tok.eos_id, device, chunk)
    return [{"line": r["line"], "logprob": r["logprob"], "score": r["score"],
             "tokens": tok.pieces(ids) + ["</s>"], "token_logprobs": r["token_logprobs"]}
            for r, ids in zip(rows, tgt_ids)]


def score_run(job: ScoreJob) -> list[dict]:
    """nmt-score: read src/tgt (UTF-8, split on \\n only), score every pair, write JSON lines to job.out or
    stdout (nothing is written when the input is refused)."""
    src, tgt = read_lines(job.src, "src"), read_lines(job.tgt, "tgt")
    check_line_aligned(src, tgt)  # before the model loads: bad input fails fast
    device = pick_device(job.device)
    trained = load_trained(Path(job.run_dir), job.checkpoint, device)
    rows = score_lines(trained, src, tgt, device, job.chunk)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if job.out is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(job.out, text)
    return rows
