"""explorer.html: data and markup in Python, and the page itself in headless Chromium (CDP over a pipe):
it loads with no console error and no network request, and selecting another head changes the picture."""
import base64
import json
import os
import re

import pytest
import torch
from cdp import Browser, find_browser
from helpers import raised

from nmt.inspection.explorer import ProbeLabels, explorer_html, write_explorer
from nmt.decoding.inspect import Probe


def probe() -> Probe:
    """Two-layer model maps: dec.1.cross head 0 is the diagonal, head 1 the anti-diagonal (visibly different)."""
    torch.manual_seed(0)
    eye, flip = torch.eye(4), torch.eye(4).flip(-1)
    maps = {"enc.0.self": torch.softmax(torch.randn(2, 4, 4), -1), "dec.0.self": torch.softmax(torch.randn(2, 4, 4), -1),
            "dec.0.cross": torch.softmax(torch.randn(2, 4, 4), -1), "dec.1.cross": torch.stack([eye, flip])}
    return Probe(["▁Ein", "▁Hund", "▁läuft", "."], ["▁A", "▁dog", "▁runs", "</s>"], maps)


def numbered(n: int) -> ProbeLabels:
    return ProbeLabels("input line", [str(i + 1) for i in range(n)], [None] * n)


def page_data(html: str) -> dict:
    return json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>', html, re.S).group(1))


def test_page_inlines_tokens_maps_and_alignments():
    html = explorer_html([probe()], "demo </script> title", names=numbered(1))
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html
    data = page_data(html)
    p = data["probes"][0]
    assert data["title"] == "demo </script> title"  # escaped inside the page, intact after parsing
    assert p["src_words"] == ["Ein", "Hund", "läuft."] and p["out_words"] == ["A", "dog", "runs"]
    assert p["slots"]["dec.1.cross"]["heads"][1][0] == [0.0, 0.0, 0.0, 1.0]
    # head 0 diagonal: A-Ein, dog-Hund, runs-läuft. ; head 1 anti-diagonal: A <- "." (word 2), dog <- läuft.
    assert p["alignments"]["dec.1.cross:h0"] == [[0, 0], [1, 1], [2, 2]]
    assert p["alignments"]["dec.1.cross:h1"] == [[1, 2], [2, 0], [2, 1]]


def test_local_window_is_drawn_from_centres():
    p = Probe(["▁a", "▁b", "▁c"], ["▁x", "▁y", "</s>"], {"cross": torch.full((1, 3, 3), 1 / 3)},
              {"cross": torch.tensor([0.5, 1.25, 2.0])}, {"cross": 1})
    page = explorer_html([p], "t", names=numbered(1))
    window = page_data(page)["probes"][0]["slots"]["cross"]["window"]
    assert window == {"half_width": 1, "centres": [0.5, 1.25, 2.0]}


def test_a_window_comes_from_the_probe_not_from_a_config():
    """A sliding-window self-attention slot (no centres: the query position is the centre) gets its window;
    a slot without a declared window gets none."""
    maps = {"enc.0.self": torch.full((1, 3, 3), 1 / 3), "dec.0.cross": torch.full((1, 3, 3), 1 / 3)}
    p = Probe(["▁a", "▁b", "▁c"], ["▁x", "▁y", "</s>"], maps, {}, {"enc.0.self": 2})
    slots = page_data(explorer_html([p], "t", names=numbered(1)))["probes"][0]["slots"]
    assert slots["enc.0.self"]["window"] == {"half_width": 2, "centres": [0.0, 1.0, 2.0]}
    assert "window" not in slots["dec.0.cross"]


def browser_or_skip() -> str:
    binary = find_browser()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed: CI must run `apt-get install -y chromium` (see .ci/run)")
        pytest.skip("chromium not installed (apt-get install -y chromium); this test fails instead when CI=true")
    return binary


def test_explorer_in_headless_chromium(tmp_path):
    binary = browser_or_skip()
    page = write_explorer(tmp_path / "explorer.html", [probe(), probe()], "demo",
                          names=numbered(2))
    url = page.resolve().as_uri() + "#probe=0&slot=dec.1.cross&head=0"
    browser = Browser(binary, str(tmp_path / "profile"), 1000, 800)
    try:
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.command(f"{domain}.enable")
        browser.command("Page.navigate", {"url": url})
        browser.wait_for("Page.loadEventFired")
        first = browser.command("Page.captureScreenshot", {"format": "png"})["data"]
        state = browser.command("Runtime.evaluate", {"expression": "document.getElementById('head-1').click();"
                                                     " location.hash + ' ' + document.querySelectorAll('rect.cell').length",
                                                     "returnByValue": True})["result"]["value"]
        second = browser.command("Page.captureScreenshot", {"format": "png"})["data"]
        hover = [browser.command("Runtime.evaluate", {"expression": f"document.querySelector('{label}')"
                                                      ".dispatchEvent(new MouseEvent('mouseenter'));"
                                                      " [document.querySelectorAll('rect.dim').length,"
                                                      " document.getElementById('info').textContent]",
                                                      "returnByValue": True})["result"]["value"]
                 for label in ("text.query", "text.key")]
    finally:
        browser.close()
    (tmp_path / "first.png").write_bytes(base64.b64decode(first))
    errors = [e for e in browser.events if e.get("method") in ("Runtime.exceptionThrown",)
              or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert errors == []
    requests = [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"]
    assert all(u.startswith(page.resolve().as_uri()) for u in requests), requests  # the page itself only
    assert state == "#probe=0&slot=dec.1.cross&head=1 16"  # 4 x 4 cells of the selected head
    assert first != second  # diagonal vs anti-diagonal
    # hovering output token "▁A" dims the 3 other rows (12 cells) and lists its source weights (head 1: on ".");
    # hovering source token "▁Ein" dims the 3 other columns and lists who attends it (only "</s>")
    assert hover == [[12, "▁A attends: ▁Ein 0.00  ▁Hund 0.00  ▁läuft 0.00  . 1.00"],
                     [12, "▁Ein is attended by: ▁A 0.00  ▁dog 0.00  ▁runs 0.00  </s> 1.00"]]


def test_missing_chromium_fails_under_ci_and_skips_elsewhere(monkeypatch):
    import test_explorer
    monkeypatch.setattr(test_explorer, "find_browser", lambda: None)
    monkeypatch.setenv("CI", "true")
    assert raised(browser_or_skip) is pytest.fail.Exception  # a skip here would hide the missing browser
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium"):
        browser_or_skip()
    monkeypatch.setenv("CI", "false")
    assert raised(browser_or_skip) is pytest.skip.Exception


def test_translation_explorer_on_empty_input_names_what_the_user_passed(tmp_path):
    from nmt.decoding import Hypotheses, Translations
    from nmt.inspection.explorer import save_translation_explorer
    empty = Translations(["", ""], [], [], Hypotheses([], torch.zeros(0)))
    with pytest.raises(ValueError, match=r"explorer=.*x\.html: the input has no non-empty line") as e:
        save_translation_explorer(tmp_path / "x.html", None, empty, torch.device("cpu"))
    assert "probe_sentences" not in str(e.value) and not (tmp_path / "x.html").exists()


def test_run_explorer_labels_validation_sentences_and_shows_references(tmp_path):
    from nmt.inspection.explorer import write_run_explorer
    (tmp_path / "attention").mkdir()
    torch.save([probe().saved(), probe().saved()], tmp_path / "attention" / "probes.pt")
    (tmp_path / "config.yaml").write_text("model:\n  family: transformer\n")
    (tmp_path / "valid.ref.txt").write_text("A dog runs.\nTwo men\u2028play.\nA third.\n", encoding="utf-8")
    data = page_data(write_run_explorer(tmp_path).read_text(encoding="utf-8"))
    assert data["kind"] == "validation sentence"
    assert [(p["label"], p["reference"]) for p in data["probes"]] == [("1", "A dog runs."), ("2", "Two men\u2028play.")]


def test_buttons_name_input_lines_and_the_reference_is_shown(tmp_path):
    """Input lines 1 and 3 translated (line 2 empty): the buttons say 1 and 3, not 0 and 1; a sentence
    with a reference shows it, one without shows none."""
    binary = browser_or_skip()
    names = ProbeLabels("input line", ["1", "3"], [None, "A dog runs."])
    page = write_explorer(tmp_path / "explorer.html", [probe(), probe()], "demo", names=names)
    browser = Browser(binary, str(tmp_path / "profile"), 1000, 800)
    read = ("[document.querySelector('#probes b').textContent,"
            " Array.from(document.querySelectorAll('#probes button')).map(b => b.textContent).join(','),"
            " document.getElementById('texts').textContent]")
    try:
        browser.command("Runtime.enable")
        browser.command("Page.enable")
        browser.command("Page.navigate", {"url": page.resolve().as_uri()})
        browser.wait_for("Page.loadEventFired")
        seen = [browser.command("Runtime.evaluate", {"expression": click + read,
                                                     "returnByValue": True})["result"]["value"]
                for click in ("", "document.getElementById('probe-1').click(); ")]
    finally:
        browser.close()
    assert seen[0][:2] == ["input line", "1,3"] and "reference" not in seen[0][2]
    assert seen[1][:2] == ["input line", "1,3"] and seen[1][2].endswith("reference: A dog runs.")
