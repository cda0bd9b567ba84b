"""nmt-explain: does the attention explain the output? Counterfactual weights per slot, one table.

    nmt-explain run_dir=<run> split=valid
Writes <run_dir>/explain.md and explain.json (or out=FILE and FILE.json) and prints the table.
"""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from nmt.alignment.explain import ExplainSettings, explain, explain_markdown
from nmt.cli.common import config_dir
from nmt.common import atomic_write_text, pick_device, setup_logging, write_json
from nmt.evaluation.evaluate import DecodeSettings
from nmt.training.run import load_trained


def run(cfg: DictConfig) -> dict:
    setup_logging()
    device = pick_device(cfg.device)
    trained = load_trained(Path(cfg.run_dir), cfg.checkpoint, device)
    if cfg.split not in trained.cfg.data.splits:
        raise ValueError(f"split={cfg.split} is not one of the run's data.splits ({', '.join(trained.cfg.data.splits)})")
    pairs = instantiate(trained.cfg.data.corpus).load(trained.cfg.data.splits[cfg.split])
    pairs = pairs.select(range(min(cfg.max_sentences, len(pairs))))
    d = cfg.decode
    decode = DecodeSettings(d.beam_size, d.length_penalty, d.max_len_a, d.max_len_b, d.max_sentences)
    settings = ExplainSettings(list(cfg.counterfactuals), cfg.seed, cfg.gradient, cfg.chunk)
    result = explain(trained.model, trained.src_tok.encode(list(pairs["src"])), list(pairs["tgt"]), trained.tgt_tok,
                     settings, decode, device)
    table = explain_markdown(result, settings.counterfactuals)
    out = Path(cfg.out) if cfg.out is not None else Path(cfg.run_dir) / "explain.md"
    atomic_write_text(out, table)
    write_json(out.with_suffix(".json"), result)
    sys.stdout.write(table)
    return result


@hydra.main(config_path=config_dir(), config_name="explain", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
