"""The clean-checkout guard's two functions (tests/conftest.py's _checkout_stays_clean and
tests/test_checkout_guard.py): a module of its own, since `from conftest import` would find whichever
conftest.py of tests/ comes first on sys.path."""
from __future__ import annotations

import os
from pathlib import Path

SNAPSHOT_SKIP = {".git", "__pycache__", ".pytest_cache"}  # git's own files and caches Python writes anyway


def checkout_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """{path relative to root: (size, mtime_ns)} of every file below root, SNAPSHOT_SKIP and *.egg-info aside.
    A file walk, not `git status`: it works in a copy without .git (scripts/mutation_check.py's) and sees a
    tracked file changed in place."""
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SNAPSHOT_SKIP and not d.endswith(".egg-info")]
        for name in files:
            path = Path(folder) / name
            try:
                st = path.lstat()
            except FileNotFoundError:  # removed since the listing: absent from this snapshot
                continue
            found[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return found


def checkout_changes(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    """Files added, changed or removed between two checkout_snapshot()s, each with what happened."""
    changed = [f"{p} (new)" for p in after if p not in before]
    changed += [f"{p} (changed)" for p in after if p in before and after[p] != before[p]]
    return sorted(changed + [f"{p} (removed)" for p in before if p not in after])
