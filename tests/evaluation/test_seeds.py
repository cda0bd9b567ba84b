"""nmt-compare over seeds, on fake run directories (metrics.json, config.yaml, test hyp/ref files):
grouping by config-but-seed, mean ± sd, and the two-level paired bootstrap."""
import csv
import json
import random
import statistics

import pytest
import yaml

from nmt.evaluation.compare import compare
from nmt.runs.sweep import find_runs
from nmt.evaluation.seeds import group_by_seed, pooled_p_value, seed_rows
from nmt.scoring import sentence_stats

WORDS = "a man in a blue shirt is riding a bike down the street while two dogs run after him".split()


def references(n: int = 120) -> list[str]:
    rng = random.Random(0)
    return [" ".join(rng.choices(WORDS, k=rng.randint(6, 14))) for _ in range(n)]


def noisy(refs: list[str], keep: float, seed: int) -> list[str]:
    """Each reference word kept with probability `keep`, else replaced: higher keep, higher BLEU."""
    rng = random.Random(seed)
    return [" ".join(w if rng.random() < keep else "xyz" for w in r.split()) for r in refs]


def fake_run(root, name: str, attention: str, seed: int, bleu: float, hyps: list[str], refs: list[str], lr=0.002):
    run = root / name
    run.mkdir(parents=True)
    cfg = {"seed": seed, "run_dir": str(run), "optim": {"lr": lr},
           "model": {"family": "rnn", "attention": {"label": attention, "score": "general"}}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    metrics = {"test": {"bleu": bleu, "chrf": bleu + 20, "ter": 100 - bleu}, "valid": {"bleu": bleu + 1}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "test.beam.hyp.txt").write_text("\n".join(hyps) + "\n")
    (run / "test.ref.txt").write_text("\n".join(refs) + "\n")


@pytest.fixture
def sweep(tmp_path):
    """Two attention types x 3 seeds (sweep order interleaved), plus a lone run with another lr."""
    refs = references()
    bleus = {"global": [30.0, 31.0, 32.5], "local_p": [20.0, 22.0, 21.0]}
    keep = {"global": 0.9, "local_p": 0.6}
    job = 0
    for seed in (1, 2, 3):
        for att in ("global", "local_p"):
            fake_run(tmp_path, f"{job}_{att}_s{seed}", att, seed, bleus[att][seed - 1],
                     noisy(refs, keep[att], 10 * seed + job), refs)
            job += 1
    fake_run(tmp_path, f"{job}_global_lr", "global", 1, 33.0, noisy(refs, 0.9, 99), refs, lr=0.001)
    return tmp_path


def test_groups_runs_that_differ_only_in_seed(sweep):
    groups = group_by_seed(find_runs(sweep))
    assert [[r.name for r in g.runs] for g in groups] == [
        ["0_global_s1", "2_global_s2", "4_global_s3"], ["1_local_p_s1", "3_local_p_s2", "5_local_p_s3"],
        ["6_global_lr"]]
    assert [g.seeds for g in groups] == [[1, 2, 3], [1, 2, 3], [1]]


def test_mean_sd_and_names(sweep):
    rows = seed_rows(find_runs(sweep), find_runs(sweep)[0], None, 100)
    by = {r["group"]: r for r in rows}
    assert set(by) == {"global (optim.lr=0.002)", "local_p", "global (optim.lr=0.001)"}
    mean, sd = by["global (optim.lr=0.002)"]["BLEU"]
    assert mean == pytest.approx(statistics.mean([30.0, 31.0, 32.5]))
    assert sd == pytest.approx(statistics.stdev([30.0, 31.0, 32.5]))  # sample sd (n - 1)
    assert by["local_p"]["TER"][0] == pytest.approx(100 - 21.0)
    assert by["local_p"]["seeds"] == 3 and by["local_p"]["seed list"] == "1,2,3"
    assert by["global (optim.lr=0.001)"]["seeds"] == 1


def test_compare_writes_the_seed_table_and_names_the_test(sweep):
    compare(sweep, "0_global_s1", 0, 200, None)
    md = (sweep / "comparison.md").read_text()
    assert "## Over seeds" in md and "two-level paired bootstrap" in md
    assert "| global (optim.lr=0.002) (baseline) | 3 (1,2,3) | 31.17 ± 1.26 |" in md
    rows = {r["group"]: r for r in csv.DictReader((sweep / "comparison_seeds.csv").open())}
    assert rows["global (optim.lr=0.002)"]["p (BLEU vs baseline group)"] == ""
    assert float(rows["local_p"]["p (BLEU vs baseline group)"]) < 0.05  # keep 0.6 vs 0.9: far apart
    assert float(rows["local_p"]["BLEU mean"]) == pytest.approx(21.0)
    assert all("bootstrap" in r["test"] for r in rows.values())


def test_baseline_by_label_picks_the_first_seed_of_one_group(sweep):
    from nmt.evaluation.compare import CompareError, pick_baseline
    runs = find_runs(sweep)
    assert pick_baseline(runs, "local_p").name == "1_local_p_s1"
    with pytest.raises(CompareError, match="matches 4 runs"):  # two global groups: say which
        pick_baseline(runs, "global")


def test_no_seed_section_when_every_config_ran_once(tmp_path):
    refs = references(20)
    fake_run(tmp_path, "0_a", "global", 1, 30.0, refs, refs)
    fake_run(tmp_path, "1_b", "local_p", 1, 20.0, refs, refs)
    compare(tmp_path, None, 0, 50, None)
    assert "Over seeds" not in (tmp_path / "comparison.md").read_text()
    assert not (tmp_path / "comparison_seeds.csv").exists()


def stats(refs, keep, seeds):
    return [sentence_stats(noisy(refs, keep, s), refs) for s in seeds]


def test_pooled_bootstrap_equal_quality_groups_give_a_large_p():
    refs = references()
    assert pooled_p_value(stats(refs, 0.8, (1, 2, 3)), stats(refs, 0.8, (4, 5, 6)), 300) > 0.2


def test_pooled_bootstrap_separates_far_apart_groups():
    refs = references()
    assert pooled_p_value(stats(refs, 0.95, (1, 2, 3)), stats(refs, 0.5, (4, 5, 6)), 300) < 0.05


def test_seed_variance_widens_the_test():
    """Same mean gap, but one group's seeds disagree wildly: the test must become less sure."""
    refs = references()
    steady = stats(refs, 0.75, (1, 2, 3))
    base = stats(refs, 0.7, (4, 5, 6))
    wild = [sentence_stats(noisy(refs, k, s), refs) for k, s in ((0.45, 7), (0.75, 8), (0.99, 9))]
    assert pooled_p_value(wild, base, 300) > pooled_p_value(steady, base, 300)


def test_one_seed_per_group_is_the_shifted_paired_bootstrap_on_sacrebleus_draw():
    """With one seed per group: the paired bootstrap over sentences, computed here from sacreBLEU's own
    resampler (same draw: SACREBLEU_SEED), two-sided with the differences shifted to mean 0."""
    import numpy as np
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import _bootstrap_resample
    refs = references()
    a, b = noisy(refs, 0.8, 1), noisy(refs, 0.75, 2)

    def resampled(hyps):
        return np.array([s.score for s in _bootstrap_resample(BLEU()._extract_corpus_statistics(hyps, [refs]),
                                                               BLEU(), 200)[1]])
    d = resampled(b) - resampled(a)
    observed = BLEU().corpus_score(b, [refs]).score - BLEU().corpus_score(a, [refs]).score
    expected = (np.sum(np.abs(d - d.mean()) >= abs(observed)) + 1) / 201
    assert 0.01 < expected < 0.99  # a case where the formula matters
    assert pooled_p_value([sentence_stats(b, refs)], [sentence_stats(a, refs)], 200) == pytest.approx(expected)


def test_identical_groups_give_p_one():
    refs = references()
    group = stats(refs, 0.8, (1, 2, 3))
    assert pooled_p_value(group, group, 200) == 1.0
    assert pooled_p_value(group[:1], group[:1], 200) == 1.0  # one seed: every resampled difference is 0
