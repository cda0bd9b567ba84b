"""nmt-translate on bad input: invalid UTF-8 on stdin says what input=FILE says; a line far longer than
training saw is cut to decode.max_input_tokens pieces with a warning naming the line and the key."""
import io
import os
import subprocess
import sys

import pytest
import torch
from helpers import compose_cfg, tiny_model, toy_cfg
from omegaconf import OmegaConf

from nmt.cli.translate import read_input
from nmt.data.corpus import CorpusError
from nmt.decoding import DecodeSettings, translate_lines
from helpers import train

BAD = "Ein Hund läuft.\nK\u00e4se\n".encode("utf-8").replace("K\u00e4se".encode("utf-8"), b"K\xe4se")  # latin-1 ä


def stdin_of(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def test_invalid_utf8_on_stdin_gives_the_same_error_as_a_file(tmp_path, monkeypatch):
    (tmp_path / "in.txt").write_bytes(BAD)
    with pytest.raises(CorpusError) as from_file:
        read_input(str(tmp_path / "in.txt"))
    stdin_of(monkeypatch, BAD)
    with pytest.raises(CorpusError) as from_stdin:
        read_input("-")
    assert str(from_stdin.value).startswith("standard input (input=-), line 2: bytes b'\\xe4' are not valid UTF-8")
    assert str(from_stdin.value) == str(from_file.value).replace(str(tmp_path / "in.txt"), "standard input (input=-)")


def test_stdin_lines_split_on_newline_only(monkeypatch):
    stdin_of(monkeypatch, "a\u2028b\r\n\nc\rd\n".encode("utf-8"))  # U+2028 and a lone \r stay inside their line
    assert read_input("-") == ["a\u2028b", "", "c\rd"]


class Words:
    """A whitespace tokenizer over 26 ids with sentencepiece's special-id layout (pad 0, bos 2, eos 3)."""
    pad_id, unk_id, bos_id, eos_id = 0, 1, 2, 3

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [[4 + len(w) % 26 for w in t.split()] for t in texts]

    def decode(self, ids) -> list[str]:
        return [" ".join(f"w{i}" for i in seq) for seq in ids]


def settings(**changes) -> DecodeSettings:
    decode = OmegaConf.to_container(compose_cfg(["run_dir=x"], "translate").decode)
    return DecodeSettings(**{**decode, **changes})


def test_default_cap_is_near_the_training_max_len():
    train_max_len = compose_cfg([], "train").data.max_len
    assert train_max_len <= settings().max_input_tokens <= 2 * train_max_len
    with pytest.raises(ValueError, match="decode.max_input_tokens must be >= 1, got 0"):
        settings(max_input_tokens=0)


def test_a_long_line_is_cut_with_a_warning_naming_line_and_key(caplog):
    model = tiny_model([], src_vocab=30, tgt_vocab=30)
    lines = ["a bb ccc", "", "x " * 5000, "dd e"]
    with caplog.at_level("WARNING"):
        out = translate_lines(model, Words(), Words(), lines, settings(max_input_tokens=8, beam_size=2),
                              torch.device("cpu"))
    assert len(out.lines) == 4 and out.lines[1] == "" and out.decoded == [0, 2, 3]
    assert [len(s) for s in out.src_ids] == [3, 8, 2]  # line 3 cut to 8 pieces, the others untouched
    assert max(len(t) for t in out.hyp.tokens) <= 1.5 * 8 + 10  # output bounded by the cut input
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == ["input line 3 has 5000 source pieces, more than decode.max_input_tokens=8: translating only "
                      "its first 8 pieces (the rest of the line is dropped); split the line, or raise "
                      "decode.max_input_tokens"]


def test_many_long_lines_warn_five_times_then_count(caplog):
    model = tiny_model([], src_vocab=30, tgt_vocab=30)
    with caplog.at_level("WARNING"):
        translate_lines(model, Words(), Words(), ["a " * 20] * 7, settings(max_input_tokens=4, beam_size=1),
                        torch.device("cpu"))
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 6 and warned[4].startswith("input line 5 has 20")
    assert warned[5] == "2 more input lines were cut to decode.max_input_tokens=4 pieces"


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("translate_input")
    train(toy_cfg(tmp / "run", tmp / "cache", ["trainer.max_steps=2", "trainer.valid_every=2",
                                                 "trainer.num_threads=1", "logger.probe_sentences=0"]))
    return tmp / "run"


def translate_cli(run_dir, stdin: bytes, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nmt.cli.translate", f"run_dir={run_dir}", "device=cpu", *args],
                          input=stdin, capture_output=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_cli_bad_stdin_and_a_long_line(toy_run):
    bad = translate_cli(toy_run, b"w1 w2\nw3 \xe4\n")
    err = bad.stderr.decode()
    assert bad.returncode != 0 and "standard input (input=-), line 2: bytes b'\\xe4' are not valid UTF-8" in err
    assert "TypeError" not in err and not bad.stdout
    long = translate_cli(toy_run, ("w1 w2 w3\n" + "w4 w5 " * 20000 + "\n").encode(), "decode.beam_size=5")
    assert long.returncode == 0, long.stderr.decode()[-2000:]
    lines = long.stdout.decode().split("\n")
    assert len(lines) == 3  # two lines out, and the final newline
    assert "input line 2 has 80000 source pieces, more than decode.max_input_tokens=128" in long.stderr.decode()
    # decoded from the cut input: at most max_len_a * (128 + eos) + max_len_b = 1.5 * 129 + 10 pieces, each word
    # one piece or more (uncut, the limit would be 120,011 and the beam search would take hours)
    assert len(lines[1].split()) <= int(1.5 * 129 + 10)


@pytest.mark.parametrize("nbest", [0, 6])
def test_nbest_outside_one_to_beam_size_names_both_keys(nbest):
    """decode.nbest=N needs N finished hypotheses from a beam of decode.beam_size (5 by default)."""
    with pytest.raises(ValueError, match=rf"decode.nbest must be between 1 and decode.beam_size=5, got {nbest}"):
        settings(nbest=nbest, beam_size=5)
    assert settings(nbest=5, beam_size=5).nbest == 5
