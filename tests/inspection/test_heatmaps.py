"""Heatmap figures: labelled axes, predictable pixel sizes, one PNG per sentence / slot."""
import torch
from PIL import Image

from nmt.decoding.inspect import Probe
from nmt.inspection.heatmaps import (figure_rgb, image_shape, map_figure, save_sentence_maps, save_slot_pngs,
                                  side_by_side_figure, slot_labels)

SRC, OUT = ["▁Ein", "▁Hund", "."], ["▁A", "▁dog", ".", "</s>"]


def test_labels_follow_the_slot():
    assert slot_labels("cross", SRC, OUT) == (SRC, OUT)
    assert slot_labels("dec.1.cross", SRC, OUT) == (SRC, OUT)
    assert slot_labels("enc.0.self", SRC, OUT) == (SRC, SRC)
    assert slot_labels("dec.0.self", SRC, OUT) == (["<s>", "▁A", "▁dog", "."], OUT)  # keys: decoder inputs


def test_map_figure_has_the_promised_size_and_tick_labels():
    weights = torch.softmax(torch.randn(4, 3), -1)
    fig = map_figure(weights, SRC, OUT, "cross head 0", centres=torch.tensor([0.0, 1.0, 2.0, 2.0]))
    assert figure_rgb(fig).shape == (*image_shape(3, 4), 3)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == SRC
    assert [t.get_text() for t in ax.get_yticklabels()] == OUT
    long = image_shape(200, 200)  # capped: modest images even for long sentences
    assert max(long) <= 720


def test_pngs_per_sentence_and_per_slot(tmp_path):
    maps = {"enc.0.self": torch.rand(2, 3, 3), "dec.0.self": torch.rand(2, 4, 4), "dec.0.cross": torch.rand(2, 4, 3)}
    probe = Probe(["▁$5", "▁a$b$", "."], OUT, maps)  # "$" must not start mathtext
    path = save_sentence_maps(tmp_path / "sent0000.png", probe, title="line 0")
    assert Image.open(path).format == "PNG"
    files = save_slot_pngs(tmp_path / "attention", "probe0", probe)
    assert sorted(p.name for p in files) == ["probe0_dec.0.cross.png", "probe0_dec.0.self.png",
                                             "probe0_enc.0.self.png"]
    fig = side_by_side_figure([("run a", probe, "dec.0.cross"), ("run b", probe, "dec.0.cross")])
    assert len([ax for ax in fig.axes if ax.images]) == 2
