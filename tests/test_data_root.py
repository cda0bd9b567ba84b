"""A missing Multi30k skips the real-data tests locally and fails them under CI=true (tests/conftest.py)."""
import importlib.util
from pathlib import Path

import pytest
from helpers import raised


def load_conftest():
    """tests/conftest.py as a fresh module: `import conftest` may give another directory's conftest
    (tests/data/, tests/scripts/, ...) once pytest has imported them all."""
    spec = importlib.util.spec_from_file_location("nmt_tests_conftest", Path(__file__).parent / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


conftest = load_conftest()


def outcome() -> type | None:
    """What conftest.multi30k_or_skip raises (helpers.raised: a skip must not escape as a skip)."""
    return raised(conftest.multi30k_or_skip)


def test_missing_multi30k_fails_under_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setattr(conftest, "data_root", lambda: None)
    monkeypatch.setenv("CI", "true")
    assert outcome() is pytest.fail.Exception
    monkeypatch.setenv("CI", "false")
    assert outcome() is pytest.skip.Exception
    monkeypatch.delenv("CI")
    assert outcome() is pytest.skip.Exception


def test_found_multi30k_is_returned(monkeypatch, tmp_path):
    monkeypatch.setattr(conftest, "data_root", lambda: tmp_path)
    monkeypatch.setenv("CI", "true")
    assert conftest.multi30k_or_skip() == tmp_path
