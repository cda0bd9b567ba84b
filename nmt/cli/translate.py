"""nmt-translate: translate lines from stdin (or a file) with a trained run; one output line per input line."""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import hydra
from omegaconf import DictConfig
from torch import Tensor

from nmt.alignment.extract import links_from_matrix, piece_words, word_matrix
from nmt.alignment.links import format_pharaoh
from nmt.cli.common import config_dir, decode_settings, run_dir_list
from nmt.cli.errors import precheck, user_errors
from nmt.common import pick_device, setup_logging
from nmt.data.corpus import numbered_stream, read_lines
from nmt.decoding import DecodeSettings, Translations, nbest_lines, translate_lines
from nmt.decoding.rows import RowSelection, resolve_selection
from nmt.inspection.explorer import save_translation_explorer
from nmt.runs.trained import TrainedRun, load_runs
from nmt.training.align_loss import AlignLossSettings, align_spec

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
    decode = supervised_selection(decode_settings(cfg), trained)
    result = translate_lines(trained.model, trained.src_tok, trained.tgt_tok, read_input(cfg.input), decode, device)
    if cfg.attention_png is not None:
        from nmt.inspection.heatmaps import save_translation_pngs  # matplotlib only when asked for
        save_translation_pngs(Path(cfg.attention_png), trained, result, device)
    if cfg.explorer is not None:
        save_translation_explorer(Path(cfg.explorer), trained, result, device)
    sys.stdout.write("".join(line + "\n" for line in output_lines(result, trained, decode)))


def output_lines(result: Translations, trained: TrainedRun, decode: DecodeSettings) -> list[str]:
    """One line per input (`index ||| text ||| score` per output with decode.nbest > 1), each followed by
    ` ||| ` and its alignment with decode.alignment=hard|soft (alignment_text)."""
    aligned = None
    if decode.alignment != "none":
        keep, src_tok, tgt_tok = resolve_selection(decode.selection, trained.model), trained.src_tok, trained.tgt_tok
        aligned = [[alignment_text(keep.reduce(rows), printed_words(src_tok, src), printed_words(tgt_tok, out),
                                   decode.alignment) for rows, out in zip(per_input, outs)]
                   for src, per_input, outs in zip(result.src_ids, result.hyp.rows, result.hyp.nbest)]
    if decode.nbest > 1:
        return nbest_lines(result, trained.tgt_tok, len(result.lines), aligned)
    if aligned is None:
        return result.lines
    links = [""] * len(result.lines)  # an empty input line: an empty output and no links
    for k, i in enumerate(result.decoded):
        links[i] = aligned[k][0]
    return [f"{line} ||| {text}" for line, text in zip(result.lines, links)]


def alignment_text(rows: Tensor, src_words: list[int], out_words: list[int], kind: str) -> str:
    """One output's alignment from its kept rows (|Y|, S) (tokens + eos over the source pieces) and the printed
    word of every source and output piece (printed_words): W[j, i] sums source word i's pieces and averages
    output word j's (nmt.alignment.extract.word_matrix). hard: Pharaoh "i-j" (source word i, output word j,
    0-based; the argmax i of every output word), sorted by j; soft: per output word its weights over the source
    words, "w,w,..." with 4 decimals, words separated by spaces. The eos row links nothing; no words: ""."""
    if not src_words or not out_words:
        return ""
    W = word_matrix(rows[: len(out_words)].float(), src_words, out_words)  # (Tw, Sw)
    if kind == "hard":
        return format_pharaoh(links_from_matrix(W, None))
    return " ".join(",".join(f"{w:.4f}" for w in row) for row in W.tolist())


def printed_words(tok, ids: list[int]) -> list[int]:
    """The whitespace word of the printed line each piece of `ids` belongs to: pieces grouped at "▁"
    (nmt.alignment.extract.piece_words); a group that prints nothing (bos, a lone "▁": the line shows a space at
    most) joins the next word, or the previous one at the end; [] when the line has no word."""
    groups = piece_words(tok.pieces(ids))
    shown = [False] * (max(groups, default=-1) + 1)
    for g, text in zip(groups, tok.decode([[i] for i in ids])):  # each piece alone, as the line prints it
        shown[g] |= bool(text.strip())
    real = [g for g, s in enumerate(shown) if s]  # the groups the line shows, in order
    if not real:
        return []
    joined = [next((k for k, r in enumerate(real) if r >= g), len(real) - 1) for g in range(len(shown))]
    return [joined[g] for g in groups]


def supervised_selection(decode: DecodeSettings, trained: TrainedRun) -> DecodeSettings:
    """decode.selection=auto reads the supervised head when the run was trained with trainer.align_loss (its
    slot and head, nmt.training.align_loss.align_spec), else stays auto (the last layer, heads averaged)."""
    values = trained.config.values.get("trainer", {}).get("align_loss")
    if decode.selection != "auto" or not decode.keeps_rows() or not values:
        return decode
    resolve_selection("auto", trained.model)  # an ensemble or a model without cross-attention: refused here
    values = {"centre_weight": 0.0, **values}  # a run stored before centre_weight existed trained without it
    spec = align_spec(AlignLossSettings(**values), trained.model)
    if spec is None:
        return decode
    heads = getattr(trained.model.attention_modules()[spec.slot], "num_heads", 1)
    return replace(decode, selection=f"{spec.slot}:h{spec.head}" if heads > 1 else str(spec.slot))


if __name__ == "__main__":
    main()
