"""docs/notebooks/attention_tour.ipynb runs headless from top to bottom (nbclient) on every CI run: it
trains its tiny model, translates, shows the attention inline as an image, scores references and runs a
counterfactual. A missing nbclient or kernel fails under CI=true (it is in the dev extras)."""
import os
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "notebooks" / "attention_tour.ipynb"


def test_the_attention_tour_notebook_runs_and_shows_its_maps(tmp_path):
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("nbclient/nbformat/ipykernel missing: CI installs them with the dev extras")
        pytest.skip("pip install -e '.[dev]' for nbclient (this test fails instead when CI=true)")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = {i: [o for o in c.get("outputs", [])] for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    plot = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "plot_attention" in c.source)
    assert any("image/png" in o.get("data", {}) for o in outputs[plot]), "the map is not shown inline"
    text = "".join(o.get("text", "") for cell in outputs.values() for o in cell)
    assert "test BLEU" in text and "uniform:" in text and "argmax source position" in text
    assert not any(o.get("output_type") == "error" for cell in outputs.values() for o in cell)
