"""nmt-align and nmt-explain on a real (tiny, toy) run directory, through their run(cfg) functions."""
import json

import pytest
import torch
from helpers import compose_cfg, job_cfg
from hydra.utils import instantiate
from omegaconf import OmegaConf
from toy_alignment import gold_alignment

from nmt.alignment.explain import explain_run
from nmt.alignment.pipeline import align_run
from nmt.alignment.links import format_pharaoh, read_gold
from nmt.runs.trained import load_trained

SELECTIONS = ["dec.0.cross:h0", "dec.0.cross:h1", "dec.0.cross:mean", "dec.1.cross:h0", "dec.1.cross:h1",
              "dec.1.cross:mean", "all:mean"]


@pytest.fixture(scope="module")
def toy_files(toy_run, tmp_path_factory):
    """The run's toy test split as src/tgt files and its exact gold alignment as a 1-based Pharaoh file."""
    run_dir, cfg = toy_run
    tmp = tmp_path_factory.mktemp("files")
    corpus = instantiate(cfg.data.corpus)
    pairs = corpus.load("test")
    (tmp / "src.txt").write_text("\n".join(pairs["src"]) + "\n")
    (tmp / "tgt.txt").write_text("\n".join(pairs["tgt"]) + "\n")
    one_based = ["".join(format_pharaoh({(i + 1, j + 1) for i, j in sure})) for sure, _ in gold_alignment(corpus, "test")]
    (tmp / "gold.align").write_text("\n".join(one_based) + "\n")
    return tmp, len(pairs)


def align_cfg(run_dir, files, *overrides):
    return job_cfg([f"run_dir={run_dir}", f"src={files / 'src.txt'}", f"tgt={files / 'tgt.txt'}", *overrides],
                       "align")


def test_align_scores_every_selection_and_writes_pharaoh(toy_run, toy_files, tmp_path):
    files, n = toy_files
    result = align_run(align_cfg(toy_run[0], files, f"gold={files / 'gold.align'}", "gold_one_based=true",
                                     f"out={tmp_path / 'out.align'}", f"scores={tmp_path / 's.json'}", "select=best"))
    assert list(result["scores"]) == SELECTIONS
    assert all(0.0 <= s[k] <= 1.0 for s in result["scores"].values() for k in ("aer", "aer_pick", "aer_held_out"))
    best = min(result["scores"], key=lambda k: result["scores"][k]["aer_pick"])  # chosen on the odd-numbered pairs
    assert result["selection"] == best
    written = read_gold(tmp_path / "out.align", "pharaoh", n, one_based=False)
    src = (files / "src.txt").read_text().splitlines()
    for links, line in zip(written, src):  # argmax: exactly one link per target word (copy: same length)
        assert sorted(j for _, j in links.sure) == list(range(len(line.split())))
    assert json.loads((tmp_path / "s.json").read_text()) == result["scores"]


def test_align_bad_gold_names_the_line(toy_run, toy_files, tmp_path):
    files, n = toy_files
    lines = (files / "gold.align").read_text().splitlines()
    lines[3] = lines[3] + " 40-1"
    (tmp_path / "bad.align").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"bad.align, line 4: link 40-1 is beyond the sentence pair"):
        align_run(align_cfg(toy_run[0], files, f"gold={tmp_path / 'bad.align'}", "gold_one_based=true"))


def test_align_own_output_and_unknown_selection(toy_run, toy_files, tmp_path):
    files, n = toy_files
    cfg = align_cfg(toy_run[0], files, "tgt=null", "decode.beam_size=1", f"out={tmp_path / 'own.align'}")
    assert align_run(cfg)["selection"] == "dec.1.cross:mean"
    assert len((tmp_path / "own.align").read_text().splitlines()) == n
    with pytest.raises(ValueError, match="select='dec.7.cross' is not a selection"):
        align_run(align_cfg(toy_run[0], files, "select=dec.7.cross"))


def test_explain_writes_one_table_with_every_slot(toy_run, tmp_path):
    out = tmp_path / "explain.md"
    cfg = job_cfg([f"run_dir={toy_run[0]}", "split=valid", "max_sentences=8", f"out={out}"], "explain")
    result = explain_run(cfg)
    slots = {"enc.0.self", "enc.1.self", "dec.0.self", "dec.0.cross", "dec.1.self", "dec.1.cross"}
    assert set(result["slots"]) == slots
    for slot, r in result["slots"].items():
        for cf in ("uniform", "permute", "zero_top"):
            assert 0.0 <= r[cf]["tvd"] <= 1.0 and 0.0 <= r[cf]["flip"] <= 1.0
        assert ("tau_grad" in r and "tau_loo" in r) == slot.endswith("cross")
    table = out.read_text()
    assert table.count("\n| ") == len(slots) and "| dec.1.cross |" in table
    assert json.loads(out.with_suffix(".json").read_text())["sentences"] == 8


def test_compare_with_gold_adds_aer_columns(toy_run, toy_files):
    import nmt.cli.compare as compare_cli
    files, _ = toy_files
    sweep = toy_run[0].parent
    compare_cli.main([str(sweep), "--samples", "10", "--gold", str(files / "gold.align"), "--gold-one-based"])
    md = (sweep / "comparison.md").read_text()
    assert "| AER | AER held-out | best AER held-out (selection) |" in md and "not an oracle figure" in md
    scores = align_run(align_cfg(toy_run[0], files, f"gold={files / 'gold.align'}", "gold_one_based=true"))["scores"]
    best = min(scores, key=lambda k: scores[k]["aer_pick"])  # chosen on the other half
    last = scores["dec.1.cross:mean"]
    assert f"| {last['aer']:.3f} | {last['aer_held_out']:.3f} | {scores[best]['aer_held_out']:.3f} ({best}) |" in md


def test_translate_and_run_dir_explorers(toy_run, toy_files, tmp_path):
    import re

    from nmt.decoding import DecodeSettings, translate_lines
    from nmt.inspection.explorer import save_translation_explorer, write_run_explorer
    from nmt.runs.trained import load_trained
    files, _ = toy_files
    lines = (files / "src.txt").read_text().splitlines()[:3]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n")
    cfg = compose_cfg([f"run_dir={toy_run[0]}", "decode.beam_size=1"], "translate")
    trained = load_trained(toy_run[0], "best", torch.device("cpu"))
    result = translate_lines(trained.model, trained.src_tok, trained.tgt_tok, lines,
                             DecodeSettings(**OmegaConf.to_container(cfg.decode)), torch.device("cpu"))
    save_translation_explorer(tmp_path / "x.html", trained, result, torch.device("cpu"))
    for page, n in ((tmp_path / "x.html", 3), (write_run_explorer(toy_run[0]), 2)):  # probe_sentences=2
        data = json.loads(re.search(r'type="application/json">(.*?)</script>', page.read_text(), re.S).group(1))
        assert len(data["probes"]) == n
        assert set(data["probes"][0]["slots"]) == {"enc.0.self", "enc.1.self", "dec.0.self", "dec.0.cross",
                                                   "dec.1.self", "dec.1.cross"}


def test_output_changes_of_many_hooks_equal_each_hook_alone(toy_run):
    """Several (slot, counterfactual) hooks share one baseline pass per batch: each result equals that hook
    measured alone, an identity hook changes nothing, and uniform weights move the output."""
    from nmt.alignment.counterfactual import make_hook
    from nmt.alignment.explain import batches, output_changes
    trained = load_trained(toy_run[0], "best", torch.device("cpu"))
    tok, model = trained.tgt_tok, trained.model.eval()
    lines = ["a b c d", "e f g"] * 3
    data = batches(trained.src_tok.encode(lines), tok.encode(lines), tok, 4, "cpu")
    cross = model.attention_modules()["dec.1.cross"]
    hooks = {("dec.1.cross", "same"): (cross, lambda w, allowed: w),
             ("dec.1.cross", "uniform"): (cross, make_hook("uniform", 0)),
             ("dec.1.cross", "permute"): (cross, make_hook("permute", 5))}
    together = output_changes(model, data, tok.pad_id, hooks)
    # (with a hook the module takes its explicit path instead of the fused kernel: equal up to rounding)
    assert together[("dec.1.cross", "same")] == {"tvd": pytest.approx(0.0, abs=1e-6), "flip": 0.0}
    assert together[("dec.1.cross", "uniform")]["tvd"] > 0
    alone = output_changes(model, data, tok.pad_id, {("dec.1.cross", "permute"): (cross, make_hook("permute", 5))})
    assert alone[("dec.1.cross", "permute")] == together[("dec.1.cross", "permute")]
