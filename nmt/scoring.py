"""sacreBLEU, the one place nmt scores text: corpus BLEU/chrF/TER on detokenised output against raw references,
paired bootstrap resampling, and BLEU's per-sentence sufficient statistics (what training, evaluation and the
comparison of runs all use; imports nothing from nmt)."""
from __future__ import annotations

import logging

import numpy as np
from sacrebleu.metrics import BLEU, CHRF, TER
from sacrebleu.significance import PairedTest


def corpus_scores(hyps: list[str], refs: list[str]) -> dict:
    """BLEU (13a, cased), chrF2 and TER with their sacrebleu signatures."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    out = {}
    for name, metric in (("bleu", BLEU()), ("chrf", CHRF()), ("ter", TER())):
        res = metric.corpus_score(hyps, [refs])
        out[name] = round(float(res.score), 2)
        out[f"{name}_signature"] = str(metric.get_signature())
    return out


def paired_bootstrap(systems: list[tuple[str, list[str]]], refs: list[str], samples: int) -> dict[str, float]:
    """Paired bootstrap resampling (Koehn 2004) of corpus BLEU, by sacreBLEU: systems[0] is the baseline;
    -> {name: p} for every other system."""
    logging.getLogger("sacrebleu").setLevel(logging.WARNING)  # one INFO line per system and step otherwise
    _, scores = PairedTest(systems, {"BLEU": BLEU()}, [refs], test_type="bs", n_samples=samples)()
    return {name: res.p_value for name, res in zip(scores["System"], scores["BLEU"]) if res.p_value is not None}


def sentence_stats(hyps: list[str], refs: list[str]) -> np.ndarray:
    """sacreBLEU's BLEU sufficient statistics per sentence: (N, 2 + 2 * 4) float32, as PairedTest uses."""
    return np.array(BLEU()._extract_corpus_statistics(hyps, [refs]), dtype="float32")


def bleu_of(stats: np.ndarray) -> float:
    """Corpus BLEU from summed sufficient statistics."""
    return BLEU()._compute_score_from_stats(stats).score
