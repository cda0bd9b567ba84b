"""nmt-translate: translate lines from stdin (or a file) with a trained run; one output line per input line."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from nmt.cli.common import config_dir
from nmt.common import pick_device, setup_logging
from nmt.evaluation.evaluate import DecodeSettings, decode_texts
from nmt.training.run import load_trained


def read_lines(source: str) -> list[str]:
    if source == "-":
        return [line.rstrip("\n") for line in sys.stdin]
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"input={source} not found; pass input=<file> or pipe text to stdin")
    return path.read_text(encoding="utf-8").splitlines()


def run(cfg: DictConfig) -> list[str]:
    """Empty input lines give empty output lines; order is kept."""
    setup_logging()
    device = pick_device(cfg.device)
    trained = load_trained(Path(cfg.run_dir), cfg.checkpoint, device)
    lines = read_lines(cfg.input)
    keep = [i for i, line in enumerate(lines) if line.strip()]
    src_ids = trained.src_tok.encode([lines[i] for i in keep])
    decode = DecodeSettings(cfg.beam_size, cfg.length_penalty, cfg.max_len_a, cfg.max_len_b, cfg.max_sentences)
    texts, hyp = decode_texts(trained.model, src_ids, trained.tgt_tok, decode, device)
    out = [""] * len(lines)
    for i, text in zip(keep, texts):
        out[i] = text
    if cfg.attention_png is not None:
        write_attention_pngs(Path(cfg.attention_png), trained, src_ids, hyp.tokens, keep, device)
    if cfg.explorer is not None:
        write_translation_explorer(Path(cfg.explorer), trained, src_ids, hyp.tokens, device)
    sys.stdout.write("".join(line + "\n" for line in out))
    return out


def write_attention_pngs(directory: Path, trained, src_ids: list[list[int]], tokens: list[list[int]],
                         lines: list[int], device) -> None:
    """One PNG per translated sentence, every slot (rows) and head (columns) of the model's own output:
    <directory>/sent<NNNN>.png, NNNN the 0-based input line."""
    from nmt.logging.heatmaps import save_sentence_maps  # matplotlib only when asked for
    from nmt.decoding.inspect import output_maps
    from nmt.training.trainer import to_probe
    directory.mkdir(parents=True, exist_ok=True)
    maps = output_maps(trained.model, src_ids, tokens, trained.tgt_tok, device)
    for line, sentence in zip(lines, maps):
        save_sentence_maps(directory / f"sent{line:04d}.png", to_probe(sentence, trained.src_tok, trained.tgt_tok),
                           title=f"line {line}")


def write_translation_explorer(path: Path, trained, src_ids: list[list[int]], tokens: list[list[int]], device) -> None:
    """One explorer.html page (nmt.logging.explorer) with every translated sentence as a probe."""
    from nmt.decoding.inspect import output_maps
    from nmt.logging.explorer import local_half_width, write_explorer
    from nmt.training.trainer import to_probe
    maps = output_maps(trained.model, src_ids, tokens, trained.tgt_tok, device)
    probes = [to_probe(m, trained.src_tok, trained.tgt_tok) for m in maps]
    write_explorer(path, probes, "nmt-translate: attention of the translations", local_half_width(trained.cfg.model))


@hydra.main(config_path=config_dir(), config_name="translate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
