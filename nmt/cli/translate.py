"""nmt-translate: translate lines from stdin (or a file) with a trained run; one output line per input line."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from nmt.cli.common import config_dir
from nmt.common import pick_device, setup_logging
from nmt.data.corpus import read_lines
from nmt.decoding import DecodeSettings, translate_lines
from nmt.logging.explorer import save_translation_explorer
from nmt.training.run_dir import load_trained


def read_input(source: str) -> list[str]:
    """input=- reads stdin, else the file (UTF-8, one sentence per line)."""
    if source == "-":
        return [line.rstrip("\n") for line in sys.stdin]
    return read_lines(source, "input")


@hydra.main(config_path=config_dir(), config_name="translate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    setup_logging()
    device = pick_device(cfg.device)
    trained = load_trained(Path(cfg.run_dir), cfg.checkpoint, device)
    decode = DecodeSettings(**OmegaConf.to_container(cfg.decode))
    result = translate_lines(trained.model, trained.src_tok, trained.tgt_tok, read_input(cfg.input), decode, device)
    if cfg.attention_png is not None:
        from nmt.logging.heatmaps import save_translation_pngs  # matplotlib only when asked for
        save_translation_pngs(Path(cfg.attention_png), trained, result, device)
    if cfg.explorer is not None:
        save_translation_explorer(Path(cfg.explorer), trained, result, device)
    sys.stdout.write("".join(line + "\n" for line in result.lines))


if __name__ == "__main__":
    main()
