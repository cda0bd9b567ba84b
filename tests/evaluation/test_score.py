"""nmt-score on a tiny RNN trained on the copy task: each line's log-probability is the teacher-forced
log-softmax of its target pieces and eos, computed here one sentence at a time; a shuffled target scores lower
than the true one; bad input is refused as nmt-align refuses it, and nothing is written."""
import json
import random
import sys

import pytest
import torch
import torch.nn.functional as F
from helpers import compose_cfg, job_cfg
from trained_toy import copy_task_run

from nmt.alignment.pipeline import align_run
from nmt.cli import score as score_cli
from nmt.cli.common import job
from nmt.data.corpus import CorpusError
from nmt.evaluation.score import ScoreJob, score_run
from nmt.runs.trained import load_trained

SRC = ["w1 w2 w3", "w4", "w5 w6 w7 w1 w2", "", "w3 w3 w0 w7"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return copy_task_run(tmp_path_factory)[0]


def write(path, lines) -> str:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def score_job(run_dir, *overrides: str) -> ScoreJob:
    return job(ScoreJob, compose_cfg([f"run_dir={run_dir}", "device=cpu", *overrides], "score"))


def independent_logprobs(trained, src: str, tgt: str) -> list[float]:
    """log p of each target piece and eos: one unpadded sentence through model(...), log_softmax, pick."""
    s_tok, t_tok = trained.src_tok, trained.tgt_tok
    src_ids = s_tok.encode([src])[0] or [s_tok.eos_id]
    tgt_ids = t_tok.encode([tgt])[0]
    src_t = torch.tensor([src_ids])
    tgt_in = torch.tensor([[t_tok.bos_id, *tgt_ids]])
    with torch.no_grad():
        logits = trained.model(src_t, torch.tensor([len(src_ids)]), tgt_in)[0].logits  # (1, T, V)
    logp = F.log_softmax(logits[0].double(), dim=-1)  # (T, V)
    return [float(logp[t, y]) for t, y in enumerate([*tgt_ids, t_tok.eos_id])]


def test_score_is_the_sum_of_teacher_forced_log_softmax(run_dir, tmp_path):
    tgt = list(SRC)  # the copy task: the reference is the source
    out = tmp_path / "scores.jsonl"
    score_run(score_job(run_dir, f"src={write(tmp_path / 's', SRC)}", f"tgt={write(tmp_path / 't', tgt)}",
                        f"out={out}", "chunk=2"))  # batches of 2 with padding
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    trained = load_trained(run_dir, "best", torch.device("cpu"))
    assert [r["line"] for r in rows] == list(range(len(SRC)))
    for r, s, t in zip(rows, SRC, tgt):
        expected = independent_logprobs(trained, s, t)
        assert r["tokens"] == trained.tgt_tok.pieces(trained.tgt_tok.encode([t])[0]) + ["</s>"]
        assert r["token_logprobs"] == pytest.approx(expected, abs=1e-4)
        assert r["logprob"] == pytest.approx(sum(expected), abs=1e-4)
        assert r["score"] == pytest.approx(sum(expected) / len(expected), abs=1e-4)
    assert rows[3]["tokens"] == ["</s>"]  # an empty target scores eos alone


def test_a_shuffled_target_scores_lower_than_the_true_one(run_dir, tmp_path):
    rng = random.Random(0)
    src = [" ".join(f"w{rng.randrange(8)}" for _ in range(rng.randint(4, 6))) for _ in range(20)]
    src = [s for s in src if len(set(s.split())) > 1]  # a shuffle changes it
    shuffled = []
    for s in src:
        words = s.split()
        while " ".join(words) == s:
            rng.shuffle(words)
        shuffled.append(" ".join(words))
    files = [f"src={write(tmp_path / 's', src)}"]
    true = score_run(score_job(run_dir, *files, f"tgt={write(tmp_path / 't', src)}", f"out={tmp_path / 'a'}"))
    wrong = score_run(score_job(run_dir, *files, f"tgt={write(tmp_path / 'u', shuffled)}", f"out={tmp_path / 'b'}"))
    assert len(src) >= 15
    assert all(a["logprob"] > b["logprob"] for a, b in zip(true, wrong))
    assert all(a["score"] > -0.1 for a in true)  # the model has learnt to copy: near-certain of the truth


def test_line_count_mismatch_is_the_same_error_as_nmt_align(run_dir, tmp_path):
    src, tgt = write(tmp_path / "s", SRC), write(tmp_path / "t", SRC[:3])
    out = tmp_path / "out.jsonl"
    with pytest.raises(CorpusError) as scored:
        score_run(score_job(run_dir, f"src={src}", f"tgt={tgt}", f"out={out}"))
    with pytest.raises(CorpusError) as aligned:
        align_run(job_cfg([f"run_dir={run_dir}", f"src={src}", f"tgt={tgt}", "device=cpu"], "align"))
    assert str(scored.value) == str(aligned.value) == ("5 source lines but 3 target lines; the files must be "
                                                       "line-aligned")
    assert not out.exists()


def run_main(args, monkeypatch, capsys) -> tuple[int, str, str]:
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(sys, "argv", ["nmt-score", *args])
    code = 0
    try:
        score_cli.main()
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_prints_json_lines_and_names_bad_input_in_one_line(run_dir, tmp_path, monkeypatch, capsys):
    src, tgt = write(tmp_path / "s", SRC[:2]), write(tmp_path / "t", SRC[:2])
    code, out, err = run_main([f"run_dir={run_dir}", f"src={src}", f"tgt={tgt}", "device=cpu"], monkeypatch, capsys)
    assert code in (0, None) and [json.loads(line)["line"] for line in out.splitlines()] == [0, 1]
    (tmp_path / "bad").write_bytes(b"w1 w2\nw3 \xe4\n")
    code, out, err = run_main([f"run_dir={run_dir}", f"src={src}", f"tgt={tmp_path / 'bad'}", "device=cpu",
                               f"out={tmp_path / 'o'}"], monkeypatch, capsys)
    assert code == 1 and "Traceback" not in err and not out and not (tmp_path / "o").exists()
    assert err.startswith(f"nmt-score: {tmp_path / 'bad'}, line 2: bytes b'\\xe4' are not valid UTF-8")
    code, out, err = run_main([f"run_dir={run_dir}", f"src={src}", f"tgt={tgt}", "chunk=0"], monkeypatch, capsys)
    assert code == 1 and err == "nmt-score: chunk must be >= 1, got 0\n"
