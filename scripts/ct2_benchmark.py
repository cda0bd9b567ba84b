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

int8's speed depends on the CPU: the report names the CPU's features (AVX2, AVX-512, VNNI, from
/proc/cpuinfo) and what CTranslate2 chose for the int8 model (its ISA, its 8-bit GEMM backend, whether it
uses Intel MKL and the compute type it settled on, read from its own CT2_VERBOSE=1 log in a child process),
with the CT2_* variables that steer that choice (CT2_USE_MKL, CT2_FORCE_CPU_ISA, ...) where set.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
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


ISA_FLAGS = {"AVX2": ("avx2",), "AVX-512": ("avx512f",), "VNNI": ("avx512_vnni", "avx_vnni"),
             "AMX": ("amx_int8",)}  # feature -> /proc/cpuinfo flags, any of which has it
CT2_CHOICES = ("Selected ISA", "GEMM_S8 backend", "Use Intel MKL", "Selected compute type")  # CT2_VERBOSE lines


def cpu_isa(cpuinfo: str = "/proc/cpuinfo") -> dict:
    """{feature: True | False} for the first CPU's flags, or {} where /proc/cpuinfo is not there."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return {}
    found = re.search(r"^flags\s*:(.*)$", text, flags=re.M)
    flags = set(found.group(1).split()) if found else set()
    return {name: any(f in flags for f in names) for name, names in ISA_FLAGS.items()}


def ct2_int8_choice(model_dir: Path) -> dict:
    """What CTranslate2 picks for `model_dir` loaded with compute_type=int8 on this CPU: {CT2_CHOICES key: value},
    the supported compute types and the CT2_* variables set. Read from its CT2_VERBOSE=1 log (no Python API
    reports the backend), in a child process so that this process's own CTranslate2 logging stays as it is."""
    import ctranslate2
    load = "import sys, ctranslate2; ctranslate2.Translator(sys.argv[1], device='cpu', compute_type='int8')"
    out = subprocess.run([sys.executable, "-c", load, str(model_dir)], env={**os.environ, "CT2_VERBOSE": "1"},
                         capture_output=True, text=True, timeout=300)
    log = out.stdout + out.stderr
    choice = {key: m.group(1).strip() for key in CT2_CHOICES
              for m in [re.search(rf"{re.escape(key)}: (.*)$", log, flags=re.M)] if m}
    return {**choice, "supported": sorted(ctranslate2.get_supported_compute_types("cpu")),
            "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("CT2_")}}


def hardware_line(report: dict) -> str:
    """One sentence: the CPU's features and CTranslate2's int8 choice."""
    isa = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in report["cpu_isa"].items()) or "unknown"
    ct2 = report["ct2_int8"]
    chosen = "; ".join(f"{k} {ct2.get(k, 'not reported')}" for k in CT2_CHOICES)
    env = ", ".join(f"{k}={v}" for k, v in ct2["env"].items()) or "no CT2_* variable set"
    return (f"CPU features: {isa}. CTranslate2 int8 on it: {chosen} (supported: {', '.join(ct2['supported'])}; "
            f"{env}).")


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
    lines.append(f"\n{hardware_line(report)}")
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
        int8_choice = ct2_int8_choice(Path(tmp) / "int8")
    import ctranslate2
    report = {"args": vars(args), "sentences": n, "results": results, "cpu": cpu_name(), "torch": torch.__version__,
              "ctranslate2": ctranslate2.__version__, "load_before": load_before, "load_after": loadavg(),
              "cpu_isa": cpu_isa(), "ct2_int8": int8_choice}
    print(markdown(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    if args.md:
        Path(args.md).write_text(markdown(report))
    return report


if __name__ == "__main__":
    main()
