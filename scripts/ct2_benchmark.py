"""nmt vs its CTranslate2 export (float32 and int8): beam-search sentences/s and BLEU on one split, side by side.

    NMT_DATA_DIR=../shared/data python scripts/ct2_benchmark.py runs/self --threads 2 --md ct2.md --out ct2.json

The run must be a Transformer (nmt-export's condition). The script exports the run's checkpoint twice (float32
and int8) into a temporary directory, then decodes the split with each engine `--repeats` times, the engines
interleaved within every repeat so that a change of machine load touches all three alike, with the same
beam, batch size, maximum output length and thread count. Reported: the median sentences/s over the repeats,
the ratio to nmt, and the sacreBLEU of each engine's output (identical in every repeat: decoding is
deterministic).

One difference is by design, not by the export: nmt's beam ranks finished hypotheses by GNMT's length
penalty ((5 + |Y|) / 6)^alpha, CTranslate2 by |Y|^alpha (its `length_penalty`), so the beam outputs can
differ slightly even in float32. Greedy outputs are compared in tests/runs/test_export.py.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import sacrebleu
import torch

from bench_common import cpu_name, fmt, loadavg  # scripts/, beside this file

import nmt
from nmt.runs.export import ExportJob, export_run


def nmt_engine(model, lines: list[str], beam: int, batch: int):
    """A callable translating `lines` with nmt's own beam search (the Python API's translate)."""
    return lambda: model.translate(lines, beam_size=beam, max_sentences=batch)


def ct2_engine(model_dir: Path, compute_type: str, lines: list[str], beam: int, batch: int, threads: int,
               decode: dict):
    """A callable translating `lines` with a CTranslate2 Translator over the exported model."""
    import ctranslate2
    import sentencepiece as spm
    src = spm.SentencePieceProcessor(model_file=str(model_dir / "src.model"))
    tgt = spm.SentencePieceProcessor(model_file=str(model_dir / "tgt.model"))
    translator = ctranslate2.Translator(str(model_dir), device="cpu", compute_type=compute_type,
                                        inter_threads=1, intra_threads=threads)
    pieces = [src.encode(line, out_type=str) for line in lines]

    def run():
        # nmt's max output length a * |x| + b (|x| with eos) as CTranslate2's decoding_length; the batch in
        # sentences like decode.max_sentences
        results = translator.translate_batch(
            pieces, beam_size=beam, max_batch_size=batch, length_penalty=decode["length_penalty"],
            max_decoding_length=int(decode["max_len_a"] * (max(map(len, pieces)) + 1) + decode["max_len_b"]))
        return [tgt.decode(r.hypotheses[0]) for r in results]
    return run


def timed(run) -> tuple[float, list[str]]:
    start = time.perf_counter()
    out = run()
    return time.perf_counter() - start, out


def measure(engines: dict, n: int, refs: list[str], repeats: int) -> dict:
    """Every engine once per repeat (interleaved); median sentences/s and BLEU per engine."""
    seconds = {name: [] for name in engines}
    outputs = {}
    for _ in range(repeats):
        for name, run in engines.items():
            s, outputs[name] = timed(run)
            seconds[name].append(s)
    base = n / statistics.median(seconds["nmt"])
    return {name: {"sent_per_s": round(n / statistics.median(s), 1), "vs_nmt": round(n / statistics.median(s) / base, 2),
                   "seconds": [round(x, 3) for x in s], "bleu": round(sacrebleu.corpus_bleu(outputs[name], [refs]).score, 2)}
            for name, s in seconds.items()}


def markdown(report: dict) -> str:
    a = report["args"]
    lines = [f"| engine, beam {a['beam']}, {a['split']} ({report['sentences']} sentences) | sent/s | vs nmt | BLEU |",
             "|---|---|---|---|"]
    lines += [f"| {name} | {r['sent_per_s']:,} | {r['vs_nmt']:.2f}x | {r['bleu']:.2f} |" for name, r in report["results"].items()]
    lines.append(f"\n{report['cpu']} (torch {report['torch']}, ctranslate2 {report['ctranslate2']}), {a['threads']} thread(s), batches of {a['batch']} sentences, median of "
                 f"{a['repeats']} interleaved repeats; load average {fmt(report['load_before'], '.2f')} before, "
                 f"{fmt(report['load_after'], '.2f')} after.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--checkpoint", default="best")
    ap.add_argument("--split", default="test")
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64, help="sentences per batch (nmt's decode.max_sentences)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-sentences", type=int, default=0, help="0 = the whole split")
    ap.add_argument("--out", help="JSON report")
    ap.add_argument("--md", help="Markdown table")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = nmt.load(args.run_dir, checkpoint=args.checkpoint, device="cpu")
    split = model.trained.load_split(args.split)
    n = len(split) if args.max_sentences <= 0 else min(args.max_sentences, len(split))
    lines, refs = list(split["src"][:n]), list(split["tgt"][:n])
    decode = model.decode_settings(beam_size=args.beam).__dict__
    load_before = loadavg()
    with tempfile.TemporaryDirectory() as tmp:
        engines = {"nmt": nmt_engine(model, lines, args.beam, args.batch)}
        for quantization in ("float32", "int8"):
            out = export_run(ExportJob(args.run_dir, args.checkpoint, "ctranslate2", quantization, f"{tmp}/{quantization}"))
            engines[f"ctranslate2 {quantization}"] = ct2_engine(out, quantization, lines, args.beam, args.batch,
                                                                 args.threads, decode)
        results = measure(engines, n, refs, args.repeats)
    import ctranslate2
    report = {"args": vars(args), "sentences": n, "results": results, "cpu": cpu_name(), "torch": torch.__version__,
              "ctranslate2": ctranslate2.__version__, "load_before": load_before, "load_after": loadavg()}
    print(markdown(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    if args.md:
        Path(args.md).write_text(markdown(report))
    return report


if __name__ == "__main__":
    main()
