"""nmt.common: atomic writes give the mode the umask says (not mkstemp's 0600) and leave no temp file."""
import os
import stat

import pytest

from nmt.common import atomic_write, atomic_write_text, write_json


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_writes_respect_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        write_json(tmp_path / "metrics.json", {"bleu": 1.0})
        atomic_write_text(tmp_path / "explorer.html", "<html>")
        (tmp_path / "plain.txt").write_text("x")  # what open() gives, for comparison
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"metrics.json": mode, "explorer.html": mode, "plain.txt": mode}


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "old")

    def fail(f):
        f.write(b"half")
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        atomic_write(tmp_path / "a.txt", fail)
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"] and (tmp_path / "a.txt").read_text() == "old"


def test_id_cache_directories_respect_the_umask(tmp_path):
    """The id cache is built in a temporary directory renamed into place: 0755 under umask 022, not 0700."""
    import numpy as np

    from nmt.data.idstore import SplitWriter
    previous = os.umask(0o022)
    try:
        with SplitWriter(tmp_path / "ids", np.uint16, keep_text=False) as writer:
            writer.add({"src": [[1, 2]], "tgt": [[3]]}, {"src": ["a"], "tgt": ["b"]})
            final = writer.finish()
    finally:
        os.umask(previous)
    assert stat.S_IMODE(final.stat().st_mode) == 0o755
    assert stat.S_IMODE((final / "meta.json").stat().st_mode) == 0o644
