"""The console scripts end to end on a slice of real Multi30k: train, checkpoint, evaluate, translate."""
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU, CHRF

TRAIN = ["model.encoder.emb_size=32", "model.encoder.hidden_size=32", "model.decoder.emb_size=32",
         "model.decoder.hidden_size=32", "data.tokenizer.vocab_size=400", "trainer.max_steps=12",
         "trainer.valid_every=6", "trainer.log_every=3", "trainer.max_tokens=600", "decode.beam_size=2",
         "trainer.valid_max_sentences=20", "logger.progress_bar=false", "optim.warmup_steps=2"]


def slice_multi30k(src_root: Path, dst_root: Path, n: dict) -> Path:
    (dst_root / "multi30k").mkdir(parents=True)
    for split, count in n.items():
        for lang in ("de", "en"):
            with gzip.open(src_root / "multi30k" / f"{split}.{lang}.gz", "rt", encoding="utf-8") as f:
                lines = [next(f) for _ in range(count)]
            with gzip.open(dst_root / "multi30k" / f"{split}.{lang}.gz", "wt", encoding="utf-8") as f:
                f.writelines(lines)
    return dst_root


def cli(module: str, *args: str, stdin: str | None = None, env=None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", f"nmt.cli.{module}", *args], input=stdin, text=True,
                          capture_output=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def trained_run(multi30k_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    root = slice_multi30k(multi30k_root, tmp / "data", {"train": 400, "val": 40, "test_2016_flickr": 30})
    env = {**os.environ, "NMT_CACHE_DIR": str(tmp / "cache")}
    run_dir = tmp / "run"
    cli("train", f"data.root={root}", f"run_dir={run_dir}", *TRAIN, env=env)
    return run_dir, root, env


def test_train_writes_checkpoints_metrics_and_events(trained_run):
    run_dir, _, _ = trained_run
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("step_*.pt")) == ["step_12.pt", "step_6.pt"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 12 and len(metrics["history"]) == 2
    assert metrics["test"]["bleu_signature"].startswith("nrefs:1|case:mixed")
    assert len((run_dir / "test.beam.hyp.txt").read_text().splitlines()) == 30
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))


def test_evaluate_prints_scores_and_writes_hypotheses(trained_run):
    run_dir, root, env = trained_run
    out = cli("evaluate", f"run_dir={run_dir}", "split=test", "decode.beam_size=2", env=env).stdout
    result = json.loads(out[out.index("{"):])
    assert result["sentences"] == 30 and "tok:13a" in result["bleu_signature"]
    hyps = Path(result["hypotheses"]).read_text().splitlines()
    with gzip.open(root / "multi30k" / "test_2016_flickr.en.gz", "rt", encoding="utf-8") as f:
        refs = f.read().splitlines()
    assert len(hyps) == 30 and (result["bleu"], result["chrf"]) == pytest.approx(
        (BLEU().corpus_score(hyps, [refs]).score, CHRF().corpus_score(hyps, [refs]).score), abs=0.005)  # 2 decimals
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert result["bleu"] == metrics["test"]["bleu"]  # same checkpoint, beam and data as the final eval


def test_translate_keeps_order_and_empty_lines(trained_run):
    """Output line i is the translation of input line i: the same lines in reverse order give the same
    outputs in reverse order (the search sorts the lines by length, so both orders are decoded alike and
    a line's output written to another line's place would show); an empty line stays empty in its place."""
    run_dir, _, env = trained_run
    text = ["Eine Frau mit einem roten Hut sitzt auf einer Bank vor einem großen Haus und liest ein Buch.",
            "", "Ein Hund.", "Zwei Männer spielen Fußball im Park.", "Ein Kind springt ins Wasser."]

    def translate(lines: list[str]) -> list[str]:
        out = cli("translate", f"run_dir={run_dir}", "decode.beam_size=2", stdin="".join(f"{x}\n" for x in lines),
                  env=env).stdout
        return out.split("\n")[:-1]

    forward = translate(text)
    assert len(forward) == 5 and forward[1] == ""
    assert len({forward[i] for i in (0, 2, 3, 4)}) >= 3  # outputs differ: a mix-up of lines would show
    assert translate(text[::-1]) == forward[::-1]


def test_refuses_a_run_dir_holding_another_run(trained_run):
    run_dir, root, env = trained_run
    proc = subprocess.run([sys.executable, "-m", "nmt.cli.train", f"data.root={root}", f"run_dir={run_dir}",
                           *TRAIN], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode != 0 and "trainer.resume=true" in proc.stdout + proc.stderr


def test_translate_nbest_lists_hypotheses_best_first(trained_run):
    """decode.nbest=N: `index ||| text ||| score` lines, up to N per input, scores falling, the first
    hypothesis the 1-best output; an empty input line keeps its index."""
    run_dir, _, env = trained_run
    text = "Ein Hund läuft im Schnee.\n\nZwei Männer spielen Fußball.\n"
    best = cli("translate", f"run_dir={run_dir}", "decode.beam_size=3", stdin=text, env=env).stdout.split("\n")
    out = cli("translate", f"run_dir={run_dir}", "decode.beam_size=3", "decode.nbest=3", stdin=text, env=env).stdout
    rows = [line.split(" ||| ") for line in out.splitlines()]
    assert all(len(r) == 3 for r in rows)
    by_input = {i: [(t, float(s)) for j, t, s in rows if int(j) == i] for i in range(3)}
    assert [int(r[0]) for r in rows] == sorted(int(r[0]) for r in rows)
    assert by_input[1] == [("", 0.0)]
    for i in (0, 2):
        assert 2 <= len(by_input[i]) <= 3 and by_input[i][0][0] == best[i]
        scores = [s for _, s in by_input[i]]
        assert scores == sorted(scores, reverse=True) and len({t for t, _ in by_input[i]}) == len(scores)


def test_translate_with_sampling_writes_one_sample_per_line(trained_run):
    """decode.sampling=topp: one drawn output per input line (an empty line stays empty); decode.seed
    decides the draws: the same seed gives the same lines, another seed other lines."""
    run_dir, _, env = trained_run
    text = "Ein Hund läuft im Schnee.\n\nZwei Männer spielen Fußball.\nEine Frau liest ein Buch.\n"
    sample = ["decode.beam_size=1", "decode.sampling=topp", "decode.topp=1.0", "decode.temperature=1.5"]

    def lines(seed: int) -> list[str]:
        return cli("translate", f"run_dir={run_dir}", *sample, f"decode.seed={seed}", stdin=text,
                   env=env).stdout.split("\n")[:-1]
    first = lines(1)
    assert len(first) == 4 and first[1] == "" and all(first[i] for i in (0, 2, 3))
    assert lines(1) == first
    assert lines(2) != first
