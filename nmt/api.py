"""The Python API: use a trained run from a notebook or a script (docs/notebooks/attention_tour.ipynb).

    import nmt
    model = nmt.load("runs/default", checkpoint="best", device="auto")
    model.translate(["Ein Hund läuft."], beam_size=5)            # ["A dog runs."]
    model.score(["Ein Hund läuft."], ["A dog runs."])            # log-probabilities of given references
    model.attention("Ein Hund läuft.", "A dog runs.")            # {slot: SlotMaps} of every layer and head
    model.plot_attention("Ein Hund läuft.")                      # a matplotlib Figure (inline in a notebook)

It reuses the library's own decoding (translate_lines), forced scoring (score_lines) and inspection
(output_maps, heatmaps): the same numbers as nmt-translate, nmt-score and explorer.html. Decoding settings
start from configs/decode/default.yaml; keyword arguments override them, checked like `decode.*` keys.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from nmt.attention.slot import Slot
from nmt.cli.common import config_dir
from nmt.common import pick_device, typed
from nmt.decoding import DecodeSettings, translate_lines
from nmt.decoding.inspect import Probe, output_maps, to_probe
from nmt.evaluation.score import score_lines
from nmt.inspection.heatmaps import slot_labels
from nmt.runs.trained import TrainedRun, load_trained


@dataclass
class SlotMaps:
    """One slot's attention for one sentence pair: weights (H, queries, keys) as a numpy array, with the
    pieces that label its axes."""
    weights: np.ndarray
    keys: list[str]
    queries: list[str]


@dataclass
class Translation:
    """translate(..., nbest > 1 or return_attention=True): the outputs of one input line, best first."""
    source: str
    outputs: list[str]
    scores: list[float]                     # length-normalised log-probabilities (GNMT Eq. 14); greedy: raw
    attention: dict[str, SlotMaps] | None   # of the best output, with return_attention=True


class Model:
    """A trained run loaded for use in Python (nmt.load)."""

    def __init__(self, trained: TrainedRun, device):
        self.trained, self.device = trained, device

    @property
    def config(self) -> dict:
        """The run's resolved config.yaml as plain data."""
        return self.trained.config.values

    def decode_settings(self, **overrides) -> DecodeSettings:
        """configs/decode/default.yaml with `overrides` (e.g. beam_size=1, sampling="topk"), type-checked."""
        values = OmegaConf.to_container(OmegaConf.load(Path(config_dir()) / "decode" / "default.yaml"))
        unknown = sorted(set(overrides) - set(values))
        if unknown:
            raise ValueError(f"unknown decode settings {unknown}; choose among {sorted(values)}")
        return typed(DecodeSettings, "decode", {**values, **{k: v for k, v in overrides.items() if v is not None}})

    def translate(self, lines: list[str] | str, return_attention: bool = False, **decode):
        """Translate each line. Plain strings, or with nbest > 1 / return_attention a Translation per line.
        `decode`: any decode setting (beam_size, nbest, length_penalty, sampling, topk, ...)."""
        single = isinstance(lines, str)
        lines = [lines] if single else list(lines)
        settings = self.decode_settings(**decode)
        t = self.trained
        result = translate_lines(t.model, t.src_tok, t.tgt_tok, lines, settings, self.device)
        if settings.nbest == 1 and not return_attention:
            return result.lines[0] if single else result.lines
        out = [self._translation(lines[i], result, k, settings, return_attention)
               for k, i in enumerate(result.decoded)]
        return out[0] if single else out

    def _translation(self, source: str, result, k: int, settings: DecodeSettings, return_attention: bool):
        hyp = result.hyp
        if hyp.nbest is not None:
            outputs = self.trained.tgt_tok.decode(hyp.nbest[k])
            scores = [float(s) for s in hyp.nbest_scores[k]]
        else:
            outputs, scores = [result.lines[result.decoded[k]]], [float(hyp.scores[k])]
        maps = self.attention(source, outputs[0]) if return_attention else None
        return Translation(source, outputs, scores, maps)

    def score(self, sources: list[str], targets: list[str], chunk: int = 64) -> list[dict]:
        """Per pair: total and length-normalised log-probability of the target (+ eos) and the per-token
        log-probabilities with their pieces, as nmt-score writes them."""
        return score_lines(self.trained, list(sources), list(targets), self.device, chunk)

    def probe(self, source: str, target: str | None = None) -> Probe:
        """Every map of one sentence pair (the model's own translation when target is None), labelled."""
        t = self.trained
        target = self.translate(source, beam_size=1) if target is None else target
        maps = output_maps(t.model, t.src_tok.encode([source]), t.tgt_tok.encode([target]), t.tgt_tok,
                           self.device)
        return to_probe(maps[0], t.src_tok, t.tgt_tok)

    def attention(self, source: str, target: str | None = None) -> dict[str, SlotMaps]:
        """{slot name: SlotMaps} for every slot, layer and head of one pair (forced decoding of target, or
        of the model's greedy translation)."""
        probe = self.probe(source, target)
        out = {}
        for slot, weights in probe.maps.items():
            keys, queries = slot_labels(slot, probe.src_pieces, probe.out_pieces)
            out[str(slot)] = SlotMaps(weights.numpy(), keys, queries)
        return out

    def plot_attention(self, source: str, target: str | None = None, slots: list[str] | None = None):
        """A matplotlib Figure: rows = slots (default: the cross-attention slots), columns = heads."""
        from nmt.inspection.heatmaps import grid_figure  # matplotlib only when drawing
        probe = self.probe(source, target)
        chosen = [Slot(s) for s in slots] if slots else [s for s in probe.maps if s.is_cross]
        missing = [s for s in chosen if s not in probe.maps]
        if missing:
            raise ValueError(f"slots {missing} are not in this model; it has {[str(s) for s in probe.maps]}")
        return grid_figure(probe, chosen, title=" ".join(probe.src_pieces))

    def __repr__(self) -> str:
        cfg = self.config
        return (f"nmt.Model({cfg['run_dir']}, step {self.trained.step}, {cfg['model']['family']}, "
                f"{self.trained.model.num_parameters():,} parameters)")


def load(run_dir: str | Path, checkpoint: str = "best", device: str = "auto") -> Model:
    """A trained run (the directory nmt-train wrote) for use in Python; checkpoint best | last | avg_lastN |
    a path; device auto | cpu | cuda[:N]."""
    dev = pick_device(device)
    return Model(load_trained(Path(run_dir), checkpoint, dev), dev)


__all__ = ["Model", "SlotMaps", "Translation", "load"]
