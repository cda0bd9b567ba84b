"""sacreBLEU metrics on detokenised output against raw references."""
from __future__ import annotations

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
