"""Shared fixtures: where the real Multi30k lives (NMT_DATA_DIR, else ../shared/data)."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
import torch
from checkout_guard import checkout_changes, checkout_snapshot

REPO = Path(__file__).resolve().parent.parent


def data_root() -> Path | None:
    for candidate in (os.environ.get("NMT_DATA_DIR"), REPO.parent / "shared" / "data", REPO / "data"):
        if candidate and (Path(candidate) / "multi30k" / "val.de.gz").is_file():
            return Path(candidate)
    return None


def multi30k_or_skip() -> Path:
    """The data root; without it the test skips, or fails under CI=true (CI must test on the real data)."""
    root = data_root()
    if root is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Multi30k not found and CI=true: set NMT_DATA_DIR to a directory holding multi30k/*.gz "
                        "(.ci/run sets ../shared/data)")
        pytest.skip("Multi30k not found: set NMT_DATA_DIR to a directory holding multi30k/*.gz; "
                    "this test fails instead when CI=true")
    return root


@pytest.fixture(scope="session")
def multi30k_root() -> Path:
    return multi30k_or_skip()


def read_pairs(root: Path, split: str, src: str, tgt: str, n: int) -> list[tuple[str, str]]:
    def lines(lang):
        with gzip.open(root / "multi30k" / f"{split}.{lang}.gz", "rt", encoding="utf-8") as f:
            return [next(f).strip() for _ in range(n)]
    return list(zip(lines(src), lines(tgt)))


@pytest.fixture(scope="session")
def real_pairs(multi30k_root) -> list[tuple[str, str]]:
    """Eight real de-en pairs from the Multi30k validation set."""
    return read_pairs(multi30k_root, "val", "de", "en", 8)


# The slow tier, decided here and nowhere else: test files (every test in them) and test ids (a parametrized
# test's id without its [params] covers all of them) marked `slow` at collection. Chosen by what a test runs:
# a model trained in a fixture, a console command or a script in a child process, a notebook; every test of a
# module-scoped training fixture is listed together, or the fast tier would still pay for the training.
# `python3 -m pytest -m "not slow"` is the fast tier for the edit-test loop; the whole suite (`python3 -m
# pytest -q`) stays the test command. Refine it from a whole-suite `--durations=50` run.
SLOW: frozenset[str] = frozenset({
    "tests/scripts/test_position_bench.py",
    "tests/attention/test_average_attention.py::test_every_tool_reads_an_aan_run",
    "tests/attention/test_average_attention.py::test_a_tiny_transformer_with_the_aan_decoder_overfits_one_batch",
    "tests/models/test_transformer.py::test_aan_beam_with_cache_equals_recomputation",
    "tests/alignment/test_align_cli.py",
    "tests/cli/test_cli.py",
    "tests/cli/test_errors.py::test_the_console_shows_no_traceback_unless_asked",
    "tests/cli/test_help.py",
    "tests/cli/test_translate_input.py::test_cli_bad_stdin_and_a_long_line",
    "tests/decoding/test_ensemble.py",
    "tests/docs/test_notebook.py",
    "tests/evaluation/test_compare.py",
    "tests/evaluation/test_score.py",
    "tests/runs/test_average.py",
    "tests/runs/test_export.py::test_float32_export_translates_like_nmt",
    "tests/runs/test_export.py::test_int8_export_stays_close_to_float32",
    "tests/runs/test_export.py::test_ctranslate2_attention_is_the_last_cross_layer_heads_averaged",
    "tests/runs/test_export.py::test_what_ctranslate2_cannot_run_is_refused_and_nothing_written",
    "tests/runs/test_export.py::test_the_speed_script_reports_every_engine_on_the_same_sentences",
    "tests/scripts/test_alignment_report.py",
    "tests/scripts/test_cpu_race.py",
    "tests/scripts/test_gpu_race.py",
    "tests/scripts/test_gpu_smoke.py",
    "tests/scripts/test_hparam_search.py::test_a_smoke_search_runs_its_trials_on_validation_only",
    "tests/test_alloc.py::test_freed_memory_is_reused_without_page_faults",
    "tests/test_api.py",
    "tests/tracking/test_tensorboard.py",
    "tests/training/test_align_training.py",
    "tests/training/test_compile.py",
    "tests/training/test_ddp.py",
    "tests/training/test_exact_resume.py",
    "tests/training/test_faults.py",
    "tests/training/test_prefetch_training.py",
    "tests/training/test_resume.py",
    "tests/training/test_session.py::test_callbacks_see_start_every_step_every_validation_and_the_end",
    "tests/training/test_session.py::test_validation_searches_when_decode_samples",
    "tests/training/test_train_log.py",
    # from the whole-suite --durations run (a 2-core AMD EPYC, idle): each of these takes seconds to a minute
    "tests/scripts/test_scale_benchmark.py",
    "tests/docs/test_doc_commands.py::test_every_doc_command_parses",
    "tests/training/test_overfit.py",
    "tests/models/test_transformer.py::test_transformer_overfits_real_pairs",
    "tests/training/test_compile_source_pad.py::test_the_compiled_transformer_step_has_no_graph_break",
    "tests/alignment/test_extract.py::test_global_attention_aligns_toy_tasks_and_random_attention_does_not",
    "tests/attention/test_location_score.py::test_an_rnn_with_the_location_score_learns_real_pairs",
    "tests/attention/test_normalisers.py::test_a_sparsemax_run_trains_and_logs_statistics_and_maps",
    "tests/attention/test_new_type.py",
    "tests/data/test_equivalence.py",
    "tests/scripts/test_benchmark.py",
    "tests/runs/test_run_dir.py",
    "tests/training/test_session.py",
})


def pytest_collection_modifyitems(config, items):
    for item in items:
        path, _, name = item.nodeid.partition("::")
        if path in SLOW or item.nodeid in SLOW or f"{path}::{name.split('[')[0]}" in SLOW:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield


@pytest.fixture(scope="session", autouse=True)
def _checkout_stays_clean():
    """The suite writes only below pytest's tmp_path: no outputs/, multirun/, caches or logs in the
    checkout, and no file of it changed (Hydra's output dir follows run_dir; every test passes its own
    directories). Editing the checkout while the suite runs trips this too."""
    before = checkout_snapshot(REPO)
    yield
    changed = checkout_changes(before, checkout_snapshot(REPO))
    assert not changed, (f"the tests changed the checkout (or it was edited while they ran): {changed[:20]}; "
                         f"tests must write below pytest's tmp_path only")
