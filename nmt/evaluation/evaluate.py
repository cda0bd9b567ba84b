"""Score a trained run on a split with sacreBLEU (behind nmt-evaluate)."""
from __future__ import annotations

from pathlib import Path

import torch

from nmt.common import write_json
from nmt.decoding import DecodeSettings, decode_texts
from nmt.scoring import corpus_scores
from nmt.runs.trained import checkpoint_label, load_runs


def evaluate_run(run_dir: Path | list, split: str, checkpoint: str, decode: DecodeSettings, device: torch.device,
                 data_root: str | None) -> dict:
    """Decode `split` (a run's train/valid/test, or a corpus split name) with a checkpoint of the run
    (best | last | a name in checkpoints/, e.g. avg_last5 | path); writes <split>.<checkpoint name, or
    ckpt for a path>.beam<K>.hyp.txt and .scores.json into the run dir.

    data_root replaces the data.root stored in the run (e.g. on another machine), for every corpus kind.
    A list of run dirs is an ensemble (load_runs): its files go to the first run's dir, named
    <split>.ensemble<M>.<checkpoint>.beam<K>.*
    """
    trained = load_runs(run_dir, checkpoint, device, data_root)
    runs = [run_dir] if isinstance(run_dir, (str, Path)) else list(run_dir)
    run_dir = Path(runs[0])
    split_name = trained.config.data.split_name(split)
    ds = trained.load_split(split)
    texts, _ = decode_texts(trained.model, trained.src_tok.encode(ds["src"]), trained.tgt_tok, decode, device)
    scores = corpus_scores(texts, ds["tgt"])
    ensemble = f"ensemble{len(runs)}." if len(runs) > 1 else ""
    stem = f"{split}.{ensemble}{checkpoint_label(checkpoint)}.beam{decode.beam_size}"
    (run_dir / f"{stem}.hyp.txt").write_text("\n".join(texts) + "\n")
    result = {"runs": [str(r) for r in runs], "split": split, "corpus_split": split_name, "sentences": len(texts), "step": trained.step,
              "beam_size": decode.beam_size, **scores, "hypotheses": str(run_dir / f"{stem}.hyp.txt")}
    write_json(run_dir / f"{stem}.scores.json", result)
    return result
