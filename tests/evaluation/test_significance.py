"""The per-run p column of nmt-compare (evaluation.significance -> nmt.scoring.paired_bootstrap): two-sided,
resampled BLEU differences shifted to mean 0, checked by hand, against sacreBLEU's public corpus BLEU on the
same draw, and on fake runs whose answer is known."""
import numpy as np
import pytest
from test_seeds import fake_run, noisy, references

from nmt.evaluation.seeds import pooled_p_value
from nmt.evaluation.significance import significance
from nmt.runs.sweep import find_runs
from nmt.scoring import bootstrap_p, paired_bootstrap, sentence_stats


def p_of(tmp_path, baseline_hyps, system_hyps, refs, samples=300) -> float:
    fake_run(tmp_path, "0_base", "global", 1, 0.0, baseline_hyps, refs)
    fake_run(tmp_path, "1_sys", "local_p", 1, 0.0, system_hyps, refs)
    runs = find_runs(tmp_path)
    return significance(runs, runs[0], samples)["1_sys"]


def test_identical_systems_give_p_one(tmp_path):
    """sacreBLEU 2.x's PairedTest gave 1 / (samples + 1) here (it centres |d_b|, counts with >)."""
    refs = references()
    hyps = noisy(refs, 0.8, 1)
    assert p_of(tmp_path, hyps, list(hyps), refs) == 1.0


def test_reference_copy_against_garbage_is_significant(tmp_path):
    refs = references()
    garbage = [" ".join(["zzz"] * len(r.split())) for r in refs]
    assert p_of(tmp_path, garbage, refs, refs) == pytest.approx(1 / 301)  # no resample comes near


def test_p_by_hand():
    """Resampled differences 1..5: mean 3, shifted |d_b - 3| = 2, 1, 0, 1, 2; p = (count + 1) / 6."""
    d = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert bootstrap_p(0.0, d) == 1.0
    assert bootstrap_p(1.0, d) == pytest.approx(5 / 6)   # 2, 1, 1, 2 reach 1
    assert bootstrap_p(-2.0, d) == pytest.approx(3 / 6)  # two-sided: the sign of d does not matter; 2 == 2 counts
    assert bootstrap_p(2.5, d) == pytest.approx(1 / 6)


def test_equals_a_direct_computation_with_sacrebleus_corpus_bleu():
    """The same draw as sacreBLEU (numpy default_rng(12345).choice), every resample scored by sacreBLEU's public
    corpus_score on the resampled lines, the difference shifted to mean 0 and counted two-sided by hand."""
    from sacrebleu.metrics import BLEU
    refs = references(20)
    a, b = noisy(refs, 0.8, 1), noisy(refs, 0.75, 2)
    samples = 80
    rows = np.random.default_rng(12345).choice(len(refs), size=(samples, len(refs)), replace=True)

    def bleu(hyps, idx):
        return BLEU().corpus_score([hyps[i] for i in idx], [[refs[i] for i in idx]]).score
    d = np.array([bleu(b, idx) - bleu(a, idx) for idx in rows])
    observed = bleu(b, range(len(refs))) - bleu(a, range(len(refs)))
    expected = (sum(abs(x - d.mean()) >= abs(observed) for x in d) + 1) / (samples + 1)
    assert 0.05 < expected < 0.95  # a case where centring and counting matter
    assert paired_bootstrap([("a", a), ("b", b)], refs, samples)["b"] == pytest.approx(expected)


def test_the_per_run_p_is_the_seed_tables_p_with_one_seed(tmp_path):
    refs = references()
    a, b = noisy(refs, 0.8, 1), noisy(refs, 0.76, 2)
    pooled = pooled_p_value([sentence_stats(b, refs)], [sentence_stats(a, refs)], 300)
    assert 0.01 < pooled < 0.99
    assert p_of(tmp_path, a, b, refs) == pooled


def test_no_resamples_is_refused():
    refs = references(5)
    with pytest.raises(ValueError, match="resamples >= 1"):
        paired_bootstrap([("a", refs), ("b", refs)], refs, 0)
