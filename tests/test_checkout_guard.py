"""The suite's clean-checkout guard (tests/conftest.py): it sees new, changed and removed files in a git
checkout and in a copy without .git (scripts/mutation_check.py runs the tests in one)."""
import os
import subprocess

import pytest
from checkout_guard import checkout_changes, checkout_snapshot


@pytest.mark.parametrize("with_git", [True, False], ids=["git checkout", "copy without .git"])
def test_guard_sees_new_changed_and_removed_files(tmp_path, with_git):
    (tmp_path / "nmt").mkdir()
    tracked, gone = tmp_path / "nmt" / "a.py", tmp_path / "README.md"
    tracked.write_text("x = 1\n")
    gone.write_text("# nmt\n")
    if with_git:
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
        for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "start"]):
            subprocess.run(git + cmd, check=True, capture_output=True, timeout=60)
    (tmp_path / "__pycache__").mkdir()
    before = checkout_snapshot(tmp_path)
    assert set(before) == {"nmt/a.py", "README.md"}
    tracked.write_text("x = 2\n")  # same size: the mtime tells
    os.utime(tracked, ns=(before["nmt/a.py"][1] + 10**9,) * 2)
    gone.unlink()
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "run.log").write_text("left behind\n")
    (tmp_path / "__pycache__" / "a.cpython.pyc").write_bytes(b"\0")  # caches are not the tests' doing
    assert checkout_changes(before, checkout_snapshot(tmp_path)) == [
        "README.md (removed)", "nmt/a.py (changed)", "outputs/run.log (new)"]
