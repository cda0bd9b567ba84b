"""sacreBLEU, the one place nmt scores text: corpus BLEU/chrF/TER on detokenised output against raw references,
BLEU's per-sentence sufficient statistics, and the one paired bootstrap test of BLEU that every p-value of the
project comes from (what training, evaluation and the comparison of runs all use; imports nothing from nmt).

The paired bootstrap (Koehn 2004): every resample draws the test sentences with replacement (sacreBLEU's
draw: numpy's default_rng seeded with SACREBLEU_SEED, 12345 unless set; one draw shared by every system, so
the test is paired). The resampled BLEU differences d_b are shifted to mean 0 to stand for the null
hypothesis "no difference" (Efron & Tibshirani 1993, Sec. 16.4), and the two-sided

    p = (#{b : |d_b - mean(d)| >= |d_observed|} + 1) / (resamples + 1)

is the share of resamples whose difference is at least as large in size as the observed one. sacreBLEU 2.x's
PairedTest is not used: it centres |d_b| instead of d_b and counts with `>`, which gives two identical systems
p = 1 / (resamples + 1) instead of 1 and small differences p-values biased low."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from sacrebleu.metrics import BLEU, CHRF, TER


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


@dataclass
class BootstrapDraws:
    sentences: np.ndarray           # (samples, N) sentence indices, shared by every system
    rng: np.random.Generator        # what a caller draws next (nmt.evaluation.seeds: seeds), after the sentences


def bootstrap_draws(n_sentences: int, samples: int) -> BootstrapDraws:
    """The sentence draw of sacreBLEU's paired bootstrap (same generator, same seed: SACREBLEU_SEED)."""
    if samples < 1 or n_sentences < 1:
        raise ValueError(f"a paired bootstrap needs test sentences and resamples >= 1 (nmt-compare --samples), got "
                         f"{n_sentences} sentences and {samples} resamples")
    seed = os.environ.get("SACREBLEU_SEED", "12345")
    rng = np.random.default_rng(None if seed.lower() == "none" else int(seed))
    return BootstrapDraws(rng.choice(n_sentences, size=(samples, n_sentences), replace=True), rng)


def resampled_bleu(stats: np.ndarray, draws: BootstrapDraws) -> np.ndarray:
    """stats (N, 10) of one system -> (samples,) corpus BLEU of every resample of its sentences."""
    return np.array([bleu_of(stats[idx].sum(0)) for idx in draws.sentences])  # (samples,)


def bootstrap_p(observed: float, resampled: np.ndarray) -> float:
    """The two-sided p of the module docstring: observed difference d, resampled (samples,) signed d_b on one
    shared draw. Identical systems (every d_b = d = 0) get p = 1."""
    centred = np.abs(resampled - resampled.mean())  # (samples,) the null: the same spread around no difference
    return (int(np.sum(centred >= abs(observed))) + 1) / (len(resampled) + 1)


def paired_bootstrap(systems: list[tuple[str, list[str]]], refs: list[str], samples: int) -> dict[str, float]:
    """Paired bootstrap of corpus BLEU (module docstring): systems[0] is the baseline; -> {name: p} for every
    other system, all on one draw of the test sentences."""
    stats = [sentence_stats(hyps, refs) for _, hyps in systems]  # one (N, 10) per system
    draws = bootstrap_draws(len(refs), samples)
    base, base_bleu = resampled_bleu(stats[0], draws), bleu_of(stats[0].sum(0))  # (samples,), float
    return {name: bootstrap_p(bleu_of(s.sum(0)) - base_bleu, resampled_bleu(s, draws) - base)
            for (name, _), s in zip(systems[1:], stats[1:])}


def sentence_stats(hyps: list[str], refs: list[str]) -> np.ndarray:
    """sacreBLEU's BLEU sufficient statistics per sentence: (N, 2 + 2 * 4) float32, as PairedTest uses."""
    return np.array(BLEU()._extract_corpus_statistics(hyps, [refs]), dtype="float32")


def bleu_of(stats: np.ndarray) -> float:
    """Corpus BLEU from summed sufficient statistics."""
    return BLEU()._compute_score_from_stats(stats).score
