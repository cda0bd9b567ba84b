"""The attention pages (docs/attention/) stay true: their >>> examples run and print what the
prose says, every config they name composes, every link and image exists, every code name they
link resolves, and scripts/tour_pages.py fills and resets their tour blocks."""
from __future__ import annotations

import doctest
import importlib
import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch
from helpers import compose_cfg

from nmt.models.build import build_model

REPO = Path(__file__).resolve().parents[2]
PAGES_DIR = REPO / "docs" / "attention"
PAGES = sorted(PAGES_DIR.glob("*.md"))
TYPE_PAGES = ["global.md", "local.md", "hard.md", "self.md", "coverage.md"]
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
CODE_LINK = re.compile(r"\[`([A-Za-z_][\w.]*)`\]\(([^)\s#]+\.py)\)")
CHOICE = re.compile(r"(?<![\w./])(\+?(?:model/attention|model|experiment|tour))=([A-Za-z_]\w*)")
FENCE = re.compile(r"```(\w*)\n(.*?)```", re.S)
GROUPS = {"model/attention", "model", "experiment", "tour"}


def page_ids(pages):
    return [p.name for p in pages]


def test_every_page_exists():
    assert {p.name for p in PAGES} >= {"README.md", *TYPE_PAGES}


# --- the worked examples ------------------------------------------------------------------------

def run_examples(path: Path) -> doctest.TestResults:
    """Every ```python block of a page, in order and sharing one namespace, as a doctest."""
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    globs: dict = {}
    try:
        for i, (lang, body) in enumerate(FENCE.findall(path.read_text())):
            if lang != "python":
                continue
            test = parser.get_doctest(body, globs, f"{path.name}[block {i}]", str(path), 0)
            runner.run(test, clear_globs=False)
            globs = test.globs  # DocTest copies its globals: carry them to the next block
    finally:
        torch.set_printoptions(profile="default")
    return runner.summarize(verbose=False)


@pytest.mark.parametrize("name", TYPE_PAGES)
def test_worked_examples_print_what_the_page_says(name):
    result = run_examples(PAGES_DIR / name)
    assert result.attempted >= 8, f"{name}: expected a worked example in ```python >>> blocks"
    assert result.failed == 0, f"{name}: {result.failed} example(s) print something else (see above)"


# --- configs ------------------------------------------------------------------------------------

def commands(text: str) -> list[list[str]]:
    """The overrides of every nmt-train / nmt.cli.train command in a page's ```bash blocks
    (sweep lists a,b,c -> their first value; hydra.* and -m left out)."""
    found = []
    for lang, body in FENCE.findall(text):
        if lang != "bash":
            continue
        for line in body.splitlines():
            line = line.split("#", 1)[0]
            m = re.search(r"(?:nmt-train|nmt\.cli\.train)\s(.*)", line)
            if not m:
                continue
            args = [a for a in m.group(1).split() if "=" in a and not a.startswith(("hydra.", "-"))]
            found.append([a.split(",")[0] if "[" not in a else a for a in args])
    return found


def named_choices() -> set[tuple[str, str]]:
    return {(g, n) for p in PAGES for g, n in CHOICE.findall(p.read_text())}


def test_the_pages_name_configs():
    groups = {g.lstrip("+") for g, _ in named_choices()}
    assert {"model/attention", "model", "experiment", "tour"} <= groups


def override_sets() -> list[tuple[str, ...]]:
    """Every config choice the pages name (alone) and every command they show, once each."""
    sets = {tuple(c) for p in PAGES for c in commands(p.read_text())}
    in_commands = {o for c in sets for o in c}
    sets |= {(f"{g}={n}",) for g, n in named_choices() if f"{g}={n}" not in in_commands}
    return sorted(sets)


@pytest.mark.parametrize("overrides", override_sets(), ids=" ".join)
def test_every_config_and_command_in_the_pages_composes(overrides):
    cfg = compose_cfg([*overrides, "trainer=cpu"])
    build_model(cfg.model, 60, 60, 0)


def test_every_tour_run_composes_and_has_a_config_file():
    exp = (REPO / "configs" / "experiment" / "tour.yaml").read_text()
    runs = re.search(r"\+tour:\s*([\w,]+)", exp).group(1).split(",")
    assert {p.stem for p in (REPO / "configs" / "tour").glob("*.yaml")} == set(runs)
    tour_pages = load_tour_pages()
    assert set(tour_pages.ALL_RUNS) == set(runs)
    assert {s.run for shows in tour_pages.PAGE_RUNS.values() for s in shows} == set(runs)
    for run in runs:
        cfg = compose_cfg(["+experiment=tour", f"+tour={run}", "trainer=cpu"])
        assert cfg.trainer.max_steps == cfg.trainer.valid_every == cfg.trainer.save_every
        build_model(cfg.model, 60, 60, 0)


# --- links, images, code names ------------------------------------------------------------------

def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.+)$", path.read_text(), re.M)}


@pytest.mark.parametrize("page", PAGES, ids=page_ids(PAGES))
def test_every_link_and_image_exists(page):
    for bang, _, target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        assert path.exists(), f"{page.name}: {'image' if bang else 'link'} {target} does not exist"
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path), f"{page.name}: no heading #{anchor} in {file or page.name}"


@pytest.mark.parametrize("page", PAGES, ids=page_ids(PAGES))
def test_every_repository_path_in_backticks_exists(page):
    for path in re.findall(r"`((?:nmt|configs|scripts|docs|tests)/[\w./-]+)`", page.read_text()):
        assert (REPO / path).exists(), f"{page.name}: `{path}` does not exist"


def module_of(page: Path, target: str) -> str:
    rel = (page.parent / target).resolve().relative_to(REPO)
    return ".".join(rel.with_suffix("").parts)


@pytest.mark.parametrize("page", PAGES, ids=page_ids(PAGES))
def test_every_linked_code_name_exists(page):
    links = CODE_LINK.findall(page.read_text())
    for name, target in links:
        module = importlib.import_module(module_of(page, target))
        obj = module
        for part in name.split("."):
            assert hasattr(obj, part), f"{page.name}: `{name}` not found in {target}: renamed or moved?"
            obj = getattr(obj, part)
    if page.name in TYPE_PAGES:
        assert len(links) >= 4, f"{page.name}: link the code of each equation"


def test_a_renamed_function_fails_the_name_check(monkeypatch):
    import nmt.attention.local_attention as local
    monkeypatch.delattr(local.LocalAttention, "centres")
    with pytest.raises(AssertionError, match="LocalAttention.centres"):
        test_every_linked_code_name_exists(PAGES_DIR / "local.md")


# --- the fill script ----------------------------------------------------------------------------

def load_tour_pages():
    """scripts/tour_pages.py as a module (registered first: its dataclasses look themselves up)."""
    if "tour_pages" not in sys.modules:
        spec = importlib.util.spec_from_file_location("tour_pages", REPO / "scripts" / "tour_pages.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["tour_pages"] = module
        spec.loader.exec_module(module)
    return sys.modules["tour_pages"]


@pytest.mark.parametrize("page", PAGES, ids=page_ids(PAGES))
def test_every_page_has_one_tour_block(page):
    text = page.read_text()
    assert text.count("<!-- tour:results -->") == 1 and text.count("<!-- /tour:results -->") == 1


def fake_run(sweep: Path, num: int, name: str, slots: dict[str, dict], extra: dict | None = None) -> Path:
    run = sweep / f"{num}_{name}"
    (run / ".hydra").mkdir(parents=True)
    (run / "attention").mkdir()
    (run / ".hydra" / "overrides.yaml").write_text(f"- +tour={name}\n- +experiment=tour\n")
    (run / ".hydra" / "config.yaml").write_text("seed: 1234\n")
    (run / "config.yaml").write_text("trainer:\n  device: cpu\n  num_threads: 0\n")
    metrics = {"parameters": 2467904, "steps": 600, "stopped": "max_steps", "best_valid_bleu_greedy": 21.5,
               "train_tokens_per_s": 4321.0, "decode_sentences_per_s": 98.76, "wall_minutes": 3.5,
               "test": {"bleu": 23.456, "chrf": 45.0}, "attention_stats": slots, **(extra or {})}
    (run / "metrics.json").write_text(json.dumps(metrics))
    for slot in slots:
        (run / "attention" / f"probe0_{slot}.png").write_bytes(b"\x89PNG fake " + slot.encode())
    return run


def test_tour_pages_fills_the_blocks_and_resets_them(tmp_path, monkeypatch):
    tp = load_tour_pages()
    pages = tmp_path / "docs" / "attention"
    shutil.copytree(PAGES_DIR, pages, ignore=shutil.ignore_patterns("tour_*.png"))
    monkeypatch.setattr(tp, "PAGES", pages)
    monkeypatch.setattr(tp, "IMAGES", pages / "images")
    monkeypatch.setattr(tp, "REPO", tmp_path)
    sweep = tmp_path / "multirun" / "tour" / "2026-01-01_00-00-00"
    stats = {"entropy": 1.234, "eos_mass": 0.1, "monotonicity": 0.9}
    fake_run(sweep, 0, "global_general", {"cross": stats})
    local_p = fake_run(sweep, 3, "local_p", {"cross": {**stats, "centre_error": 1.5, "coverage_under": 0.25}})
    (local_p / "alignment.json").write_text(json.dumps({"selections": {"cross": {"aer": 0.321}}}))
    fake_run(sweep, 6, "transformer", {f"{p}.{i}.{k}": stats for p, k in
                                       [("enc", "self"), ("dec", "self"), ("dec", "cross")] for i in (0, 1)})

    tp.main([str(sweep.parent), "--machine", "test box"])  # the folder: its newest sweep is used

    glob = (pages / "global.md").read_text()
    assert "| global_general | `cross` | 1.234 | 0.100 | 0.900 | – | – | – | not scored |" in glob
    assert "| global_general | 2,467,904 | 600 | max_steps | 23.46 |" in glob
    assert "`nmt-train +experiment=tour +tour=global_general`" in glob and "test box" in glob
    assert "Not in this sweep: bahdanau." in glob
    assert (pages / "images" / "tour_global_general_cross.png").read_bytes() == b"\x89PNG fake cross"
    assert "| local_p | `cross` | 1.234 | 0.100 | 0.900 | 1.500 | 0.250 | – | 0.321 |" in (pages / "local.md").read_text()
    self_page = (pages / "self.md").read_text()
    assert "tour_transformer_enc_1_self.png" in self_page and "enc_0_self" not in self_page  # the last layer
    summary = (pages / "README.md").read_text()
    assert "| transformer |" in summary and "The whole sweep took" in summary
    for page in pages.glob("*.md"):  # what the fill wrote still passes the link check
        for bang, _, target in LINK.findall(page.read_text()):
            if bang:
                assert (page.parent / target).is_file(), target
    filled = {p.name: p.read_text() for p in pages.glob("*.md")}
    tp.main([str(sweep), "--machine", "test box"])  # a second fill changes nothing
    assert filled == {p.name: p.read_text() for p in pages.glob("*.md")}

    tp.main(["--reset"])
    for page in pages.glob("*.md"):
        text, original = page.read_text(), (PAGES_DIR / page.name).read_text()
        assert tp.MARKER.sub("", text) == tp.MARKER.sub("", original)  # the prose is untouched
        block = tp.MARKER.search(text).group(2)
        assert block == (tp.PLACEHOLDER_README if page.name == "README.md" else tp.PLACEHOLDER)
    assert not list((pages / "images").glob("tour_*.png"))
