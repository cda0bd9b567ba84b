"""Fixtures for the data tests: small real corpora copied into tmp directories.

``multi30k_root`` (tests/conftest.py) skips when Multi30k is absent (set NMT_DATA_DIR).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from data_helpers import read_real, write_lines


@pytest.fixture(scope="session")
def real_val(multi30k_root) -> tuple[list[str], list[str]]:
    """All 1,014 Multi30k val pairs (de, en)."""
    return read_real(multi30k_root, "val", "de"), read_real(multi30k_root, "val", "en")


@pytest.fixture
def small_text_dir(tmp_path, multi30k_root) -> Path:
    """A text directory with 300 real train pairs (plain) and 50 val / 50 test pairs (gzipped)."""
    out = tmp_path / "corpus"
    for split, name, n, ext in (("train", "train", 300, ""), ("val", "valid", 50, ".gz"),
                                ("test_2016_flickr", "test", 50, ".gz")):
        for lang in ("de", "en"):
            write_lines(out / f"{name}.{lang}{ext}", read_real(multi30k_root, split, lang, n))
    return out
