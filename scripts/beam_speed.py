"""Beam search on one checkpoint: test BLEU, sacreBLEU's hyp/ref length ratio and sentences/s.

Runs against whichever `nmt` is imported, so the same command measures two versions of the search
on the same checkpoint side by side (issue 19: the beam before and after K live hypotheses):

    git worktree add /tmp/nmt-before 1e223de
    for i in 1 2 3; do
      PYTHONPATH=/tmp/nmt-before python3 scripts/beam_speed.py RUN --out before$i.json
      python3 scripts/beam_speed.py RUN --out after$i.json
    done

It prints one JSON object: the figures, the median of --repeats timed passes, and the nmt file used.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch
from sacrebleu.metrics import BLEU

import nmt.decoding.beam
from nmt.decoding import DecodeSettings, translate_ids
from nmt.runs.trained import load_trained


def settings(beam: int, alpha: float, batch: int) -> DecodeSettings:
    """The run's decode settings for either version of DecodeSettings (fields were added later)."""
    values = {"beam_size": beam, "length_penalty": alpha, "max_len_a": 1.5, "max_len_b": 10, "max_sentences": batch,
              "nbest": 1, "max_input_tokens": 10 ** 6, "sampling": "none", "topk": 1, "topp": 1.0, "temperature": 1.0,
              "seed": 0, "compile": False, "coverage_penalty": 0.0, "alignment": "none", "selection": "auto"}
    return DecodeSettings(**{f.name: values[f.name] for f in dataclasses.fields(DecodeSettings)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--split", default="test")
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    trained = load_trained(args.run_dir, "best", torch.device("cpu"))
    ds = trained.load_split(args.split)
    src_ids = trained.src_tok.encode(ds["src"])
    tok = trained.tgt_tok
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        hyp = translate_ids(trained.model, src_ids, settings(args.beam, args.alpha, args.batch), pad_id=tok.pad_id,
                            bos_id=tok.bos_id, eos_id=tok.eos_id, device=torch.device("cpu"))
        times.append(time.perf_counter() - start)
    bleu = BLEU().corpus_score(tok.decode(hyp.tokens), [ds["tgt"]])
    result = {"bleu": round(bleu.score, 2), "length_ratio": round(bleu.ratio, 4), "sys_len": bleu.sys_len,
              "ref_len": bleu.ref_len, "sentences": len(src_ids), "beam": args.beam, "alpha": args.alpha,
              "sentences_per_s": round(len(src_ids) / statistics.median(times), 2),
              "seconds": [round(t, 2) for t in times], "beam_module": nmt.decoding.beam.__file__}
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
