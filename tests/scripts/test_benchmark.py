"""scripts/benchmark.py in a tiny CPU configuration: report keys and table, no timing assertions."""
from __future__ import annotations

import json
import math

import pytest

MODELS = ["rnn-luong", "transformer"]
NUMBERS = ["params", "train_tgt_tok_s", "train_tok_s", "step_ms", "greedy_sent_s", "beam_sent_s",
           "greedy_out_len", "beam_out_len", "batch_sentences", "batch_tgt_tokens"]


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("benchmark")


@pytest.fixture(scope="module")
def run(bench, tmp_path_factory):
    """One tiny run of both models with a fake JoeyNMT summary (keys as run_joey.py writes them)."""
    tmp = tmp_path_factory.mktemp("bench")
    joey = tmp / "summary_transformer_small.json"
    joey.write_text(json.dumps({"config": ".peer/configs/transformer_small.yaml", "gpu": "NVIDIA H100",
                                "avg_trg_tokens_per_s_excl_valid": 1000.0, "test_phase_s": 20.0}))
    argv = ["--tiny", "--models", ",".join(MODELS), "--device", "cpu", "--threads", "1",
            "--max-tokens", "200", "--steps", "2", "--warmup", "1", "--decode-sentences", "6",
            "--decode-batch", "4", "--peak-flops", "1e12", "--joeynmt-json", str(joey),
            "--out", str(tmp / "bench.json"), "--md", str(tmp / "bench.md")]
    report = bench.main(argv)
    return report, tmp


def test_json_has_machine_info_and_positive_figures(run):
    report, tmp = run
    assert json.loads((tmp / "bench.json").read_text()) == report
    machine = report["machine"]
    assert machine["device_type"] == "cpu" and machine["torch"] and machine["cpu_count"] >= 1
    assert list(report["results"]) == MODELS
    for name, r in report["results"].items():
        for key in NUMBERS:
            assert isinstance(r[key], (int, float)) and r[key] > 0 and math.isfinite(r[key]), (name, key)
        assert r["peak_mem_mib"] >= 0 and r["mem_kind"].startswith("cpu")


def test_decoding_runs_to_the_length_limit(bench, run):
    """eos is held back until max_len_a * S + max_len_b = S + 1 tokens (defaults), beam and greedy alike."""
    report = run[0]
    sources = [s for s, _ in bench.synthetic_pairs(6, report["settings"]["vocab"], report["settings"]["seed"] + 1)]
    expected = sum(len(s) + 1 for s in sources) / len(sources)
    for r in report["results"].values():
        assert r["greedy_out_len"] == pytest.approx(expected) and r["beam_out_len"] == pytest.approx(expected)


def test_mfu_only_for_transformers(run):
    results = run[0]["results"]
    assert results["rnn-luong"]["mfu"] is None and results["rnn-luong"]["flops_per_tgt_tok"] is None
    t = results["transformer"]
    assert t["flops_per_tgt_tok"] > 6 * t["params"] * 0.5  # 6N-ish per token, N including the generator
    assert t["mfu"] == pytest.approx(t["flops_per_tgt_tok"] * t["train_tgt_tok_s"] / 1e12)


def test_transformer_flops_match_a_count_of_the_matmuls(bench):
    """transformer_flops against torch's FlopCounterMode over one training step (forward + backward) of one
    unpadded pair with S = T = L: F(2L) - 2 F(L) isolates the quadratic (attention) part, which must match
    exactly; the linear part may exceed the count only by the biases and norms the formula counts as
    weights (6N per token), a few per cent at d = 32."""
    from argparse import Namespace

    from torch.utils.flop_counter import FlopCounterMode

    from nmt.data.batching import collate
    from nmt.models.build import build_model
    cfg = bench.model_config("transformer", Namespace(override=[]), True)
    model = build_model(cfg.model, 50, 50, bench.PAD_ID).train()

    def both(L: int) -> tuple[float, float]:
        """(counted, formula) training FLOPs of one pair of L source and L target tokens (eos included)."""
        b = collate([[5] * L], [[6] * (L - 1)], [0], bench.PAD_ID, 2, 3)
        with FlopCounterMode(display=False) as counter:
            out, _ = model(b.src, b.src_lengths, b.tgt_in)
            out.logits.sum().backward()
        return counter.get_total_flops(), bench.transformer_flops(model, cfg, [b]) * L

    (c1, f1), (c2, f2) = both(20), both(40)
    assert f2 - 2 * f1 == pytest.approx(c2 - 2 * c1, rel=1e-9)  # 2 b L^2: QK^T and AV of every layer
    assert 1.0 <= (2 * f1 - f2 / 2) / (2 * c1 - c2 / 2) < 1.1  # a L: the dense matmuls, generator included


def test_markdown_lists_every_model_with_joey_ratios(run, capsys):
    report, tmp = run
    table = (tmp / "bench.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert "tok/s ÷ Joey" in rows[0]
    assert [r.split("|")[1].strip() for r in rows[1:]] == MODELS
    transformer = rows[2].split("|")
    ratio = report["results"]["transformer"]["train_tgt_tok_s"] / 1000.0
    assert transformer[-3].strip() == f"{ratio:.2f}"
    assert rows[1].split("|")[-3].strip() == "n/a"  # no JoeyNMT summary for rnn-luong
    assert report["joeynmt"]["transformer"]["beam_sent_s"] == pytest.approx(2014 / 20.0)


def test_joey_explicit_name_and_unknown_config(bench, tmp_path, capsys):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"config": "mine.yaml", "avg_trg_tokens_per_s_excl_valid": 5.0}))
    assert bench.load_joey([str(path)]) == {}
    assert "unknown JoeyNMT config" in capsys.readouterr().err
    joey = bench.load_joey([f"rnn-bahdanau={path}"])
    assert joey["rnn-bahdanau"]["tgt_tok_s"] == 5.0 and joey["rnn-bahdanau"]["beam_sent_s"] is None


def test_unknown_model_is_rejected(bench):
    with pytest.raises(SystemExit):
        bench.parse_args(["--models", "rnn-luong,nope"])


def test_every_model_config_composes(bench):
    """Every registered model (default and tiny sizes) composes against the real configs."""
    args = bench.parse_args(["--models", "rnn-luong"])
    for name, (family, _) in bench.MODELS.items():
        for tiny in (False, True):
            assert bench.model_config(name, args, tiny).model.family == family
