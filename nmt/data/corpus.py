"""Parallel corpora: every corpus has ``load(split) -> datasets.Dataset`` with string columns src, tgt.

The contract is the ``Corpus`` Protocol; ``Streaming`` and ``Fingerprinted`` are the optional
methods that keep a large corpus out of memory. The file and hub corpora provide all three.

Corpora read local files (plain or gzipped text directories, TSV, JSONL), the
Hugging Face hub, or generate toy tasks. Bad input raises ``CorpusError`` with a
message that names the file (and line) and says how to fix it. Pairs with an
empty side are dropped with a warning; a corpus left empty is an error.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import random
import shutil
import urllib.request
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from itertools import islice, zip_longest
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

import datasets

from nmt.common import atomic_write, file_sha256

log = logging.getLogger(__name__)

MULTI30K_LANGS = ("en", "de", "fr", "cs")
MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/{split}.{lang}.gz"
# Pairs per chunk when a streaming corpus's `load` gathers a whole split into memory.
LOAD_CHUNK = 1 << 16


class CorpusError(ValueError):
    """Bad or missing corpus input; the message names the file (and line) and the fix."""


# --------------------------------------------------------------------------- the corpus contract


@runtime_checkable
class Corpus(Protocol):
    """What prepare_data needs of a corpus: the class named by ``_target_`` in configs/data/*.yaml.

    Your own corpus class (``data.corpus._target_=my_pkg.MyCorpus``, its constructor arguments beside
    it) must provide ``load``; the split names are the values of ``data.splits``. With only ``load``,
    prepare_data calls it to hash each split and again to encode it, the whole split in memory each
    time; add ``Streaming`` and ``Fingerprinted`` (or subclass ``StreamingCorpus``) for corpora too
    large for that.
    """

    def load(self, split: str) -> datasets.Dataset:
        """The split as a Dataset with string columns src, tgt (one row per sentence pair)."""
        ...


@runtime_checkable
class Streaming(Protocol):
    """Optional: a corpus with ``stream`` is encoded chunk by chunk and never held in memory whole."""

    def stream(self, split: str, chunk_size: int) -> Iterator[tuple[list[str], list[str]]]:
        """(src, tgt) lists of at most chunk_size pairs each, in corpus order, covering the split."""
        ...


@runtime_checkable
class Fingerprinted(Protocol):
    """Optional: a corpus with ``fingerprint`` is hashed without ``load`` (e.g. from its files' bytes).

    The hash keys the tokenizer and id caches: it must change whenever the split's pairs would.
    """

    def fingerprint(self, split: str) -> str:
        """A content hash (hex string) of the split."""
        ...


class StreamingCorpus(ABC):
    """Base of the file and hub corpora: ``load`` gathers ``stream`` in chunks of LOAD_CHUNK pairs."""

    @abstractmethod
    def stream(self, split: str, chunk_size: int) -> Iterator[tuple[list[str], list[str]]]:
        """(src, tgt) chunks of at most chunk_size pairs (see ``Streaming``)."""

    def load(self, split: str) -> datasets.Dataset:
        """Load one split as a Dataset with columns src, tgt (what ``stream`` yields, gathered)."""
        return gather(self.stream(split, LOAD_CHUNK))


# --------------------------------------------------------------------------- reading helpers


def decode_utf8(raw: bytes, path, first_line: int = 1) -> str:
    """bytes -> str; invalid UTF-8 raises CorpusError naming the file, the line and the fix."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line_no = first_line + raw.count(b"\n", 0, e.start)
        raise CorpusError(f"{path}, line {line_no}: bytes {raw[e.start:e.end]!r} are not valid UTF-8; "
                          "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)") from e


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Stream (1-based line number, text without its terminator) from a UTF-8 file (``.gz`` decompressed).

    Lines are split on ``\\n`` only (not ``str.splitlines``, which would also split on
    U+2028 and friends and silently misalign parallel files); ``\\n`` or a Windows ``\\r\\n``
    is removed. One line is held at a time.
    """
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            yield from numbered_stream(f, path)
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise CorpusError(f"{path}: cannot read file ({e}); check that it is a complete text or .gz file") from e


def numbered_stream(f: BinaryIO, where) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of an open binary stream, split and checked as numbered_lines does;
    `where` names the stream in errors (a path, or e.g. "standard input (input=-)")."""
    for line_no, raw in enumerate(f, start=1):
        yield line_no, decode_utf8(raw, where, line_no).rstrip("\r\n")


def read_lines(path: str | Path, key: str) -> list[str]:
    """All lines of a UTF-8 text file (as numbered_lines splits them); `key` is the config key that names
    the file, so a missing file says what to pass."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{key}={path} not found; pass {key}=<file> with one sentence per line")
    return [line for _, line in numbered_lines(path)]


class EmptyPairs:
    """Drops pairs with an empty side, chunk by chunk; ``finish`` logs them and fails if nothing was kept."""

    def __init__(self, where: str):
        self.where, self.total, self.kept, self.first_bad = where, 0, 0, []
        self.n_bad = 0

    def filter(self, src: list[str], tgt: list[str], numbers: list[int]) -> tuple[list[str], list[str]]:
        """The non-empty pairs of one chunk; numbers are their 1-based line (or row) numbers."""
        good = [i for i, (s, t) in enumerate(zip(src, tgt)) if s and t]
        self.total += len(src)
        self.kept += len(good)
        if len(good) < len(src):
            bad = [numbers[i] for i, (s, t) in enumerate(zip(src, tgt)) if not s or not t]
            self.n_bad += len(bad)
            self.first_bad += bad[: 6 - len(self.first_bad)]
            src, tgt = [src[i] for i in good], [tgt[i] for i in good]
        return src, tgt

    def finish(self) -> None:
        if self.n_bad:
            first = ", ".join(map(str, self.first_bad[:5]))
            log.warning("%s: dropped %d of %d pairs with an empty side (lines %s%s)", self.where, self.n_bad,
                        self.total, first, ", ..." if self.n_bad > 5 else "")
        if not self.kept:
            raise CorpusError(f"{self.where}: no non-empty sentence pairs; check that the file(s) hold the corpus text")


def to_dataset(src: list[str], tgt: list[str]) -> datasets.Dataset:
    """Build the in-memory ``datasets.Dataset`` with string columns src, tgt."""
    features = datasets.Features({"src": datasets.Value("string"), "tgt": datasets.Value("string")})
    return datasets.Dataset.from_dict({"src": src, "tgt": tgt}, features=features)


def column(ds: datasets.Dataset, name: str) -> list:
    """One column as a Python list (through Arrow: much faster than iterating rows)."""
    return ds.with_format("arrow")[name].to_pylist()


def gather(chunks: Iterable[tuple[list[str], list[str]]]) -> datasets.Dataset:
    """Concatenate streamed (src, tgt) chunks into one in-memory Dataset (``load`` of small splits)."""
    src: list[str] = []
    tgt: list[str] = []
    for s, t in chunks:
        src += s
        tgt += t
    return to_dataset(src, tgt)


def files_fingerprint(kind: str, settings: dict, paths: list[Path]) -> str:
    """sha256 over a corpus kind, its parsing settings, and each file's name and bytes (streamed)."""
    h = hashlib.sha256(json.dumps([kind, settings], sort_keys=True).encode())
    for path in paths:
        h.update(f"{path.name}:{file_sha256(path)}\n".encode())
    return h.hexdigest()


def text_fingerprint(ds: datasets.Dataset) -> str:
    """sha256 of a Dataset's src/tgt text, read in Arrow batches (for corpora that only have ``load``)."""
    h = hashlib.sha256()
    table = ds.with_format("arrow")
    for name in ("src", "tgt"):
        h.update(name.encode())
        for batch in table[name].chunks if hasattr(table[name], "chunks") else [table[name]]:
            for line in batch.to_pylist():
                h.update(line.encode("utf-8"))
                h.update(b"\n")
    return h.hexdigest()


def stream_pairs(corpus: Corpus, split: str, chunk_size: int) -> Iterator[tuple[list[str], list[str]]]:
    """(src, tgt) string chunks of a split: ``corpus.stream`` when it has one, else chunks of ``load``."""
    if isinstance(corpus, Streaming):
        yield from corpus.stream(split, chunk_size)
        return
    table = corpus.load(split).with_format("arrow")
    for start in range(0, len(table), chunk_size):
        part = table[start:start + chunk_size]
        yield part["src"].to_pylist(), part["tgt"].to_pylist()


def fingerprint(corpus: Corpus, split: str) -> str:
    """Content hash of a split: ``corpus.fingerprint`` when it has one, else a hash of ``load``'s text."""
    if isinstance(corpus, Fingerprinted):
        return corpus.fingerprint(split)
    return text_fingerprint(corpus.load(split))


def _record_chunks(path: Path, parse, chunk_size: int) -> Iterator[tuple[list[str], list[str]]]:
    """Stream (src, tgt) chunks of a one-record-per-line file; ``parse(line, line_no, where) -> pair | None``.

    Lines are decoded one at a time so a UTF-8 error names its own line; pairs with an
    empty side are dropped (logged with their line numbers).
    """
    if not path.is_file():
        raise CorpusError(f"{path}: file not found; check the corpus path template and split names")
    empty = EmptyPairs(str(path))
    src: list[str] = []
    tgt: list[str] = []
    numbers: list[int] = []
    line_no = 0
    for line_no, line in numbered_lines(path):
        pair = parse(line, line_no, f"{path}, line {line_no}")
        if pair is not None:
            src.append(pair[0].strip())
            tgt.append(pair[1].strip())
            numbers.append(line_no)
        if len(src) == chunk_size:
            yield empty.filter(src, tgt, numbers)
            src, tgt, numbers = [], [], []
    if line_no == 0:
        raise CorpusError(f"{path}: file is empty; it should hold one sentence pair per line")
    if src:
        yield empty.filter(src, tgt, numbers)
    empty.finish()


# --------------------------------------------------------------------------- text directories


class TextDirCorpus(StreamingCorpus):
    """Line-aligned text files ``<split>.<lang>`` or ``<split>.<lang>.gz`` in one directory."""

    def __init__(self, directory: str, src_lang: str, tgt_lang: str):
        if src_lang == tgt_lang:
            raise CorpusError(f"src_lang and tgt_lang are both {src_lang!r}; set data.src_lang/data.tgt_lang")
        self.directory = Path(directory)
        self.src_lang = src_lang
        self.tgt_lang = tgt_lang

    def candidates(self, split: str, lang: str) -> list[Path]:
        """The paths looked for, in order of preference."""
        return [self.directory / f"{split}.{lang}", self.directory / f"{split}.{lang}.gz"]

    def find(self, split: str, lang: str) -> Path | None:
        """The first existing candidate file for (split, lang), or None."""
        return next((p for p in self.candidates(split, lang) if p.is_file()), None)

    def missing_message(self, split: str) -> str | None:
        """Describe the missing files for split (None when both sides exist)."""
        missing = [p for lang in (self.src_lang, self.tgt_lang) if self.find(split, lang) is None
                   for p in self.candidates(split, lang)]
        if not missing:
            return None
        return f"corpus files for split {split!r} not found; looked for: {', '.join(map(str, missing))}"

    def paths(self, split: str) -> tuple[Path, Path]:
        """(source file, target file) of split; CorpusError naming what is missing."""
        message = self.missing_message(split)
        if message is not None:
            raise CorpusError(message + f"; check the directory ({self.directory}) and the split name")
        return self.find(split, self.src_lang), self.find(split, self.tgt_lang)

    def fingerprint(self, split: str) -> str:
        """Content hash of the split's two files (their bytes, streamed; not their location)."""
        return files_fingerprint("text_dir", {}, list(self.paths(split)))

    def stream(self, split: str, chunk_size: int) -> Iterator[tuple[list[str], list[str]]]:
        """(src, tgt) chunks of at most chunk_size pairs, reading both files in lockstep.

        Pairs with an empty side are dropped (logged with line numbers); unequal line counts,
        empty files and bad UTF-8 raise CorpusError naming the file and line.
        """
        src_path, tgt_path = self.paths(split)
        empty = EmptyPairs(f"{src_path} / {tgt_path}")
        pairs = zip_longest(numbered_lines(src_path), numbered_lines(tgt_path))
        while chunk := list(islice(pairs, chunk_size)):
            if chunk[-1][0] is None or chunk[-1][1] is None:
                _unequal(src_path, tgt_path, empty.total, chunk, pairs)
            yield empty.filter([s.strip() for (_, s), _ in chunk], [t.strip() for _, (_, t) in chunk],
                               [n for (n, _), _ in chunk])
        if empty.total == 0:
            raise CorpusError(f"{src_path}: file is empty; it should hold one sentence per line")
        empty.finish()


def _unequal(src_path: Path, tgt_path: Path, done: int, chunk: list, rest: Iterator) -> None:
    """Raise the CorpusError for line-misaligned files; done = pairs before chunk (the longer file is counted)."""
    short = 0 if chunk[-1][0] is None else 1
    paths = (src_path, tgt_path)
    n_short = done + sum(1 for pair in chunk if pair[short] is not None)
    if n_short == 0:
        raise CorpusError(f"{paths[short]}: file is empty; it should hold one sentence per line")
    n_long = done + len(chunk) + sum(1 for _ in rest)
    counts = {paths[short]: n_short, paths[1 - short]: n_long}
    raise CorpusError(f"{src_path} has {counts[src_path]} lines but {tgt_path} has {counts[tgt_path]} "
                      f"(first unmatched: line {n_short + 1} of {paths[1 - short]}); "
                      f"parallel files must be line-aligned")


# --------------------------------------------------------------------------- Multi30k


def fetch_url(url: str, dest: Path, timeout: float = 30.0) -> None:
    """Download url to dest atomically (a failed download leaves nothing at dest)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        atomic_write(dest, lambda out: shutil.copyfileobj(response, out, 1 << 16))


class Multi30k(TextDirCorpus):
    """Multi30k Task 1 (Elliott et al. 2016): raw gzipped text in ``<root>/multi30k/``.

    Splits: train (29,000), val (1,014), test_2016_flickr (1,000), and the later test sets
    of the official repository. With download=True, missing files are fetched from
    the official repository; offline, the error says which directory to provide.
    """

    def __init__(self, root: str, src_lang: str, tgt_lang: str, download: bool):
        for lang in (src_lang, tgt_lang):
            if lang not in MULTI30K_LANGS:
                raise CorpusError(f"Multi30k has no language {lang!r}; choose from {', '.join(MULTI30K_LANGS)} "
                                  f"(data.src_lang / data.tgt_lang)")
        super().__init__(str(Path(root) / "multi30k"), src_lang, tgt_lang)
        self.download = download

    def paths(self, split: str) -> tuple[Path, Path]:
        """The split's two files, downloading missing files first when allowed."""
        message = self.missing_message(split)
        if message is not None:
            self._obtain(split, message)
        return super().paths(split)

    def _obtain(self, split: str, message: str) -> None:
        """Download the missing files of split, or raise a CorpusError saying what to set."""
        hint = (f"set data.root=/path or the environment variable NMT_DATA_DIR to a directory "
                f"containing multi30k/<split>.<lang>.gz (looked in {self.directory})")
        if not self.download:
            raise CorpusError(f"Multi30k: {message}; download is off (data.corpus.download=false); {hint}")
        for lang in (self.src_lang, self.tgt_lang):
            if self.find(split, lang) is not None:
                continue
            url = MULTI30K_URL.format(split=split, lang=lang)
            try:
                log.info("downloading %s to %s", url, self.directory)
                fetch_url(url, self.directory / f"{split}.{lang}.gz")
            except Exception as e:  # offline, HTTP 404, read-only directory, ...
                raise CorpusError(f"Multi30k: {message}; downloading {url} failed ({e}); {hint}") from e


# --------------------------------------------------------------------------- TSV / JSONL


class TsvCorpus(StreamingCorpus):
    """One tab-separated file per split (``.gz`` allowed): src and tgt in the given columns."""

    def __init__(self, path_template: str, src_column: int, tgt_column: int, skip_header: bool):
        if "{split}" not in path_template:
            raise CorpusError(f"TsvCorpus path_template {path_template!r} must contain '{{split}}'")
        self.path_template = path_template
        self.src_column = src_column
        self.tgt_column = tgt_column
        self.skip_header = skip_header

    def fingerprint(self, split: str) -> str:
        """Content hash of the split's file and the column settings."""
        settings = {"src": self.src_column, "tgt": self.tgt_column, "skip_header": self.skip_header}
        return files_fingerprint("tsv", settings, [_existing(self.path_template, split)])

    def stream(self, split: str, chunk_size: int) -> Iterator[tuple[list[str], list[str]]]:
        """(src, tgt) chunks of at most chunk_size pairs; a short line raises naming file and line."""
        path = Path(self.path_template.format(split=split))
        need = max(self.src_column, self.tgt_column) + 1

        def parse(line: str, line_no: int, where: str) -> tuple[str, str] | None:
            if self.skip_header and line_no == 1:
                return None
            fields = line.split("\t")
            if len(fields) < need:
                raise CorpusError(f"{where}: found {len(fields)} tab-separated field(s), need at least {need} "
                                  f"(src column {self.src_column}, tgt column {self.tgt_column})")
            return fields[self.src_column], fields[self.tgt_column]

        return _record_chunks(path, parse, chunk_size)


def _existing(path_template: str, split: str) -> Path:
    """The split's file from a path template; CorpusError when it does not exist."""
    path = Path(path_template.format(split=split))
    if not path.is_file():
        raise CorpusError(f"{path}: file not found; check the corpus path template and split names")
    return path


def _lookup(record: dict, field: str, where: str) -> str:
    """record[field], where a dotted field ("translation.de") reaches into nested objects."""
    value = record
    for key in field.split("."):
        if not isinstance(value, dict) or key not in value:
            raise CorpusError(f"{where}: no field {field!r} (keys: {sorted(record)}); check src_field/tgt_field")
        value = value[key]
    if not isinstance(value, str):
        raise CorpusError(f"{where}: field {field!r} is {type(value).__name__}, expected a string")
    return value


class JsonlCorpus(StreamingCorpus):
    """One JSON object per line (``.gz`` allowed); src/tgt fields may be dotted ("translation.de")."""

    def __init__(self, path_template: str, src_field: str, tgt_field: str):
        if "{split}" not in path_template:
            raise CorpusError(f"JsonlCorpus path_template {path_template!r} must contain '{{split}}'")
        self.path_template = path_template
        self.src_field = src_field
        self.tgt_field = tgt_field

    def fingerprint(self, split: str) -> str:
        """Content hash of the split's file and the field settings."""
        settings = {"src": self.src_field, "tgt": self.tgt_field}
        return files_fingerprint("jsonl", settings, [_existing(self.path_template, split)])

    def stream(self, split: str, chunk_size: int) -> Iterator[tuple[list[str], list[str]]]:
        """(src, tgt) chunks of at most chunk_size pairs (blank lines skipped)."""
        path = Path(self.path_template.format(split=split))

        def parse(line: str, line_no: int, where: str) -> tuple[str, str] | None:
            if not line.strip():
                return None
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise CorpusError(f"{where}: invalid JSON ({e.msg}); each line must be one JSON object") from e
            if not isinstance(record, dict):
                raise CorpusError(f"{where}: expected a JSON object, found {type(record).__name__}")
            return _lookup(record, self.src_field, where), _lookup(record, self.tgt_field, where)

        return _record_chunks(path, parse, chunk_size)


# --------------------------------------------------------------------------- Hugging Face hub


class HubCorpus(StreamingCorpus):
    """A dataset from the Hugging Face hub via ``datasets.load_dataset(name, config, split=...)``.

    For the common ``translation`` layout ({"de": ..., "en": ...} in one column) set
    src_field = tgt_field = "translation" and src_lang/tgt_lang; for flat string
    columns leave the langs as None.
    """

    def __init__(self, name: str, config: str | None, src_field: str, tgt_field: str,
                 src_lang: str | None = None, tgt_lang: str | None = None):
        self.name = name
        self.config = config
        self.src_field = src_field
        self.tgt_field = tgt_field
        self.src_lang = src_lang
        self.tgt_lang = tgt_lang

    def _fetch(self, split: str) -> datasets.Dataset:
        """load_dataset with a CorpusError that says what to check on failure."""
        try:
            return datasets.load_dataset(self.name, self.config, split=split)
        except Exception as e:  # network, HF_HUB_OFFLINE, unknown config/split, ...
            offline = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE")
            raise CorpusError(
                f"could not load Hugging Face dataset {self.name!r} (config {self.config!r}, split {split!r}): {e}. "
                f"It needs network access to the hub or a copy in the local HF cache "
                f"(HF_HUB_OFFLINE={offline or 'unset'}; set HF_HOME / HF_DATASETS_CACHE to the cache). "
                f"Check data.corpus.name, data.corpus.config and data.splits") from e

    def _column(self, table, field: str, lang: str | None) -> list[str]:
        """Extract one side of an Arrow table (a chunk of the dataset) as stripped strings."""
        if field not in table.column_names:
            raise CorpusError(f"HF dataset {self.name!r} has no column {field!r} (columns: {table.column_names})")
        values = table[field]
        if lang is not None:
            values = values.combine_chunks()
            if lang not in [f.name for f in values.type]:
                raise CorpusError(f"HF dataset {self.name!r}: column {field!r} has no language {lang!r}")
            values = values.field(lang)
        return [("" if v is None else v.strip()) for v in values.to_pylist()]

    def fingerprint(self, split: str) -> str:
        """datasets' own fingerprint of the split (from its cached files) plus the field settings."""
        settings = [self.name, self.config, split, self.src_field, self.tgt_field, self.src_lang, self.tgt_lang]
        return hashlib.sha256(json.dumps([settings, self._fetch(split)._fingerprint]).encode()).hexdigest()

    def stream(self, split: str, chunk_size: int) -> Iterator[tuple[list[str], list[str]]]:
        """(src, tgt) chunks read in Arrow batches from the memory-mapped dataset (empty pairs dropped)."""
        ds = self._fetch(split)
        empty = EmptyPairs(f"HF dataset {self.name} ({split})")
        for start, table in zip(range(0, len(ds), chunk_size),
                                ds.with_format("arrow").iter(batch_size=chunk_size)):
            src = self._column(table, self.src_field, self.src_lang)
            tgt = self._column(table, self.tgt_field, self.tgt_lang)
            yield empty.filter(src, tgt, list(range(start + 1, start + len(src) + 1)))
        empty.finish()


# --------------------------------------------------------------------------- toy tasks


TOY_TASKS = ("copy", "reverse", "sort", "permute")


class ToyCorpus:
    """Generated sequence tasks over word tokens "w0" .. "w{vocab-1}" (for tests and demos).

    task: copy (tgt = src), reverse (tgt = reversed src), sort (tgt = src sorted by word id),
    permute (tgt = src reordered by one fixed permutation of positions: a permutation pi of
    0..max_len-1 drawn once from `seed`; a sentence of n words takes the positions of pi below n,
    in pi's order). Each split name gives its own deterministic sample (seeded by seed and the split
    name); train has ``size`` pairs, other splits ``eval_size`` (default: size).

    The true word alignment of every pair is known exactly: `sample(split)` gives each pair's
    reordering (target word j is source word order[j]); the tests build gold alignments from it.
    """

    def __init__(self, task: str, size: int, vocab: int, min_len: int, max_len: int, seed: int,
                 eval_size: int | None = None):
        if task not in TOY_TASKS:
            raise CorpusError(f"unknown toy task {task!r}; choose from {', '.join(TOY_TASKS)}")
        if not 1 <= min_len <= max_len or vocab < 1 or size < 1:
            raise CorpusError(f"toy corpus needs size >= 1, vocab >= 1, 1 <= min_len <= max_len "
                              f"(got size={size}, vocab={vocab}, min_len={min_len}, max_len={max_len})")
        self.task, self.size, self.vocab = task, size, vocab
        self.min_len, self.max_len, self.seed = min_len, max_len, seed
        self.eval_size = size if eval_size is None else eval_size
        self.permutation = random.Random(seed).sample(range(max_len), max_len)  # the fixed pi of "permute"

    def order(self, words: list[int]) -> list[int]:
        """Target position j holds source word order[j]: the task as a reordering of positions."""
        n = len(words)
        return {"copy": list(range(n)), "reverse": list(range(n - 1, -1, -1)),
                "sort": sorted(range(n), key=lambda k: words[k]),  # stable: equal words keep their order
                "permute": [k for k in self.permutation if k < n]}[self.task]

    def sample(self, split: str) -> list[tuple[list[int], list[int]]]:
        """[(source word ids, order)] of a split (the same draws as `load`)."""
        rng = random.Random(self.seed * 1_000_003 + zlib.crc32(split.encode()))
        n = self.size if split == "train" else self.eval_size
        pairs = []
        for _ in range(n):
            words = [rng.randrange(self.vocab) for _ in range(rng.randint(self.min_len, self.max_len))]
            pairs.append((words, self.order(words)))
        return pairs

    def load(self, split: str) -> datasets.Dataset:
        """Generate one split as a Dataset with columns src, tgt."""
        src, tgt = [], []
        for words, order in self.sample(split):
            src.append(" ".join(f"w{w}" for w in words))
            tgt.append(" ".join(f"w{words[k]}" for k in order))
        return to_dataset(src, tgt)
