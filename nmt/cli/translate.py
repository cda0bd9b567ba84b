"""nmt-translate: translate lines from stdin (or a file) with a trained run; one output line per input line."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from nmt.cli.common import config_dir, decode_settings, run_dir_list
from nmt.cli.errors import precheck, user_errors
from nmt.common import pick_device, setup_logging
from nmt.data.corpus import numbered_stream, read_lines
from nmt.decoding import nbest_lines, translate_lines
from nmt.inspection.explorer import save_translation_explorer
from nmt.runs.trained import load_runs

PROG = "nmt-translate"


def read_input(source: str) -> list[str]:
    """input=- reads stdin, else the file: UTF-8, one sentence per line, split on \\n only; invalid
    UTF-8 names the line and the bytes either way (nmt.data.corpus.numbered_stream / read_lines)."""
    if source == "-":  # the bytes, not sys.stdin's text: its locale decoding would let bad bytes through
        return [line for _, line in numbered_stream(sys.stdin.buffer, "standard input (input=-)")]
    return read_lines(source, "input")


def main() -> None:
    precheck(PROG, "translate")
    run()


@hydra.main(config_path=config_dir(), config_name="translate", version_base="1.3")
def run(cfg: DictConfig) -> None:
    setup_logging()
    with user_errors(PROG):
        translate(cfg)


def translate(cfg: DictConfig) -> None:
    device = pick_device(cfg.device)
    run_dirs = run_dir_list(cfg.run_dir)
    if not isinstance(run_dirs, str) and len(run_dirs) > 1 and (cfg.attention_png or cfg.explorer):
        raise ValueError("attention_png= and explorer= draw one model's attention; an ensemble "
                         f"(run_dir={cfg.run_dir}) has one map per model: pass a single run_dir for the maps")
    trained = load_runs(run_dirs, cfg.checkpoint, device)
    decode = decode_settings(cfg)
    result = translate_lines(trained.model, trained.src_tok, trained.tgt_tok, read_input(cfg.input), decode, device)
    if cfg.attention_png is not None:
        from nmt.inspection.heatmaps import save_translation_pngs  # matplotlib only when asked for
        save_translation_pngs(Path(cfg.attention_png), trained, result, device)
    if cfg.explorer is not None:
        save_translation_explorer(Path(cfg.explorer), trained, result, device)
    lines = result.lines if decode.nbest == 1 else nbest_lines(result, trained.tgt_tok, len(result.lines))
    sys.stdout.write("".join(line + "\n" for line in lines))


if __name__ == "__main__":
    main()
