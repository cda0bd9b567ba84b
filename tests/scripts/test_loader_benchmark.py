"""scripts/loader_benchmark.py on the toy corpus: a complete report (figures, not assertions on speed)."""
import os

from bench_common import TINY


def test_a_tiny_run_reports_both_modes_and_the_step_times(load_script, tmp_path):
    bench = load_script("loader_benchmark")
    affinity = os.sched_getaffinity(0)
    out = tmp_path / "loader.json"
    # trainer.num_threads=1: two OpenMP threads on two cores that other jobs also use wait for each
    # other at every barrier (seconds per tiny step under load)
    report = bench.main(["--repeats", "1", "--epochs", "2", "--train-steps", "2", "--warmup-steps", "1",
                         "--out", str(out), "data=toy", "data.corpus.size=300", "data.corpus.eval_size=20",
                         "trainer.num_threads=1", f"data.cache_dir={tmp_path / 'cache'}", *TINY["rnn"]])
    assert out.is_file() and report["max_tokens"] == 8000  # the GPU trainer's batch size
    for mode in ("plain", "prefetch"):
        assert report["loader"][mode]["batches"] > 0 and report["loader"][mode]["tgt_tokens_per_s"] > 0
    assert report["loader"]["plain"]["batches"] == report["loader"]["prefetch"]["batches"]
    assert set(report["training"]["step_ms"]) == {"prefetch=0", "prefetch=2"}
    assert os.sched_getaffinity(0) == affinity  # the process is unpinned again
