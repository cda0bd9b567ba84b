"""Copy attention in the views: p_gen per output token beside the map in explorer.html (data, and the page in
headless Chromium) and "copied or generated" in the TensorBoard probe text."""
import json
import re

import torch
from cdp import Browser
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_explorer import browser_or_skip, numbered

from nmt.decoding.inspect import Probe
from nmt.inspection.explorer import explorer_html, write_explorer
from nmt.tracking.writer import RunLogger

P_GEN = torch.tensor([0.93, 0.6, 0.2, 0.5])  # one per output piece, eos included


def pointer_probe(p_gen: torch.Tensor | None = P_GEN) -> Probe:
    maps = {"cross": torch.tensor([[[0.9, 0.1, 0.0], [0.0, 0.5, 0.5], [0.1, 0.2, 0.7], [0.3, 0.3, 0.4]]])}
    probe = Probe(["▁Ein", "▁Hund", "e"], ["▁A", "▁dog", "s", "</s>"], maps)
    probe.p_gen = p_gen  # what nmt.decoding.inspect fills from DecoderOutput.p_gen for a model with a pointer
    return probe


def page_data(html: str) -> dict:
    return json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>', html, re.S).group(1))


def test_page_data_carries_p_gen_per_output_piece():
    assert page_data(explorer_html([pointer_probe()], "t", numbered(1)))["probes"][0]["p_gen"] == [0.93, 0.6, 0.2, 0.5]
    plain = Probe(["▁a"], ["▁x", "</s>"], {"cross": torch.ones(1, 2, 1)})
    assert page_data(explorer_html([plain], "t", numbered(1)))["probes"][0]["p_gen"] is None


def test_p_gen_bars_beside_the_map_in_chromium(tmp_path):
    """One bar per output row, its length 40 * p_gen; hovering a row names its p_gen; a page without p_gen has
    no bars."""
    binary = browser_or_skip()
    page = write_explorer(tmp_path / "explorer.html", [pointer_probe(), pointer_probe(None)], "pointer", numbered(2))
    browser = Browser(binary, str(tmp_path / "profile"), 1000, 800)
    try:
        for domain in ("Page", "Runtime", "Log"):
            browser.command(f"{domain}.enable")
        browser.command("Page.navigate", {"url": page.resolve().as_uri() + "#probe=0&slot=cross&head=0"})
        browser.wait_for("Page.loadEventFired")

        def evaluate(js: str):
            return browser.command("Runtime.evaluate", {"expression": js, "returnByValue": True})["result"]["value"]
        widths = evaluate("[...document.querySelectorAll('rect.pgen')].map(r => Number(r.getAttribute('width')))")
        info = evaluate("document.querySelectorAll('text.query')[2].dispatchEvent(new MouseEvent('mouseenter'));"
                        " document.getElementById('info').textContent")
        without = evaluate("document.getElementById('probe-1').click(); document.querySelectorAll('rect.pgen').length")
    finally:
        browser.close()
    errors = [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert errors == []
    assert [round(w, 3) for w in widths] == [37.2, 24.0, 8.0, 20.0]
    assert info.startswith("s (p_gen 0.20) attends: ▁Ein 0.10")
    assert without == 0


def test_probe_text_says_copied_or_generated(tmp_path):
    logger = RunLogger(tmp_path, tensorboard=True)
    assert logger.probe_texts([pointer_probe(), pointer_probe(None)], ["Dogs", "Dogs"], step=3) == 2
    logger.close()
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"tensors": 0})
    acc.Reload()
    texts = [acc.Tensors(f"probes/probe{i}/text_summary")[0].tensor_proto.string_val[0].decode() for i in (0, 1)]
    assert "`▁A:generated 0.93 ▁dog:generated 0.60 s:copied 0.20 </s>:generated 0.50`" in texts[0]
    assert "copied or generated" not in texts[1] and "dogs ← Hunde" in texts[1]
