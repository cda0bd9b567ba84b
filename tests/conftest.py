"""Shared fixtures: where the real Multi30k lives (NMT_DATA_DIR, else ../shared/data)."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
import torch

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


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield


def _checkout_files() -> set[str] | None:
    """Untracked and ignored files of the checkout (None outside a git checkout); __pycache__ aside."""
    import subprocess
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], cwd=REPO,
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return {line[3:] for line in out.stdout.splitlines()
            if line[:2] in ("??", "!!") and "__pycache__" not in line and ".egg-info" not in line}


@pytest.fixture(scope="session", autouse=True)
def _checkout_stays_clean():
    """The suite writes only below pytest's tmp_path: no outputs/, multirun/, caches or logs in the
    checkout (Hydra's output dir follows run_dir; every test passes its own directories)."""
    before = _checkout_files()
    yield
    after = _checkout_files()
    if before is not None and after is not None:
        new = sorted(after - before)
        assert not new, f"the tests left files in the checkout: {new[:20]}"
