"""Helpers for the data tests (imported as ``data_helpers``: tests/data is on sys.path)."""
from __future__ import annotations

import gzip
from pathlib import Path


def write_lines(path: Path, lines: list[str]) -> Path:
    """Write lines (newline-terminated, UTF-8), gzipped when the name ends in .gz."""
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def read_real(root: Path, split: str, lang: str, n: int | None = None) -> list[str]:
    """The first n lines of a Multi30k file."""
    with gzip.open(root / "multi30k" / f"{split}.{lang}.gz", "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")[:-1]
    return lines if n is None else lines[:n]
