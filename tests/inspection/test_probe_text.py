"""Probe text at validation: source, reference, hypothesis and the alignment, read back from TensorBoard."""
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nmt.alignment.extract import piece_text_words
from nmt.decoding.inspect import Probe
from nmt.inspection.probe_text import probe_markdown
from nmt.tracking.writer import RunLogger

# rows: A, dog, s, </s>; columns: Ein, Hund, e  -> A <- Ein, dogs <- mean rows (.5+.2 on Hunde) -> Hunde
PROBE = Probe(["▁Ein", "▁Hund", "e"], ["▁A", "▁dog", "s", "</s>"],
              {"cross": torch.tensor([[[0.9, 0.1, 0.0], [0.0, 0.5, 0.5], [0.1, 0.2, 0.7], [0.3, 0.3, 0.4]]])})


def test_words_of_pieces():
    assert piece_text_words(["▁Ein", "▁Hund", "e", "▁."]) == ["Ein", "Hunde", "."]


def test_probe_markdown_has_texts_and_word_alignment():
    text = probe_markdown(PROBE, "Dogs")
    assert "**source:** Ein Hunde" in text and "**reference:** Dogs" in text and "**output:** A dogs" in text
    assert "`0-0 1-1`" in text and "A ← Ein · dogs ← Hunde" in text


def test_probe_texts_are_logged_per_validation(tmp_path):
    logger = RunLogger(tmp_path, tensorboard=True)
    assert logger.probe_texts([PROBE], ["Dogs"], step=5) == 1
    logger.close()
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"tensors": 0})
    acc.Reload()
    (event,) = acc.Tensors("probes/probe0/text_summary")
    assert event.step == 5
    assert "dogs ← Hunde" in event.tensor_proto.string_val[0].decode()
