"""Parallel corpora: every corpus has ``load(split) -> datasets.Dataset`` with string columns src, tgt.

Corpora read local files (plain or gzipped text directories, TSV, JSONL), the
Hugging Face hub, or generate toy tasks. Bad input raises ``CorpusError`` with a
message that names the file (and line) and says how to fix it. Pairs with an
empty side are dropped with a warning; a corpus left empty is an error.
"""
from __future__ import annotations

import gzip
import json
import logging
import os
import random
import shutil
import urllib.request
import zlib
from pathlib import Path

import datasets

from nmt.common import atomic_write

log = logging.getLogger(__name__)

MULTI30K_LANGS = ("en", "de", "fr", "cs")
MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/{split}.{lang}.gz"


class CorpusError(ValueError):
    """Bad or missing corpus input; the message names the file (and line) and the fix."""


# --------------------------------------------------------------------------- reading helpers


def decode_utf8(raw: bytes, path, first_line: int = 1) -> str:
    """bytes -> str; invalid UTF-8 raises CorpusError naming the file, the line and the fix."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line_no = first_line + raw.count(b"\n", 0, e.start)
        raise CorpusError(f"{path}, line {line_no}: bytes {raw[e.start:e.end]!r} are not valid UTF-8; "
                          "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)") from e


def read_lines(path: str | os.PathLike) -> list[str]:
    """Read a UTF-8 text file (``.gz`` decompressed) into lines without line terminators.

    Lines are split on ``\\n`` only (not ``str.splitlines``, which would also split on
    U+2028 and friends and silently misalign parallel files); surrounding whitespace
    (including a Windows ``\\r``) is stripped.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise CorpusError(f"{path}: cannot read file ({e}); check that it is a complete text or .gz file") from e
    lines = decode_utf8(raw, path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the terminating newline of the last line
    return [line.strip() for line in lines]


def drop_empty_pairs(src: list[str], tgt: list[str], where: str,
                     line_numbers: list[int] | None = None) -> tuple[list[str], list[str]]:
    """Drop pairs where either side is empty, logging how many and the first few line numbers.

    line_numbers: the 1-based file line of each pair (default: pair i is on line i + 1).
    Raises CorpusError if nothing is left.
    """
    bad = [i for i, (s, t) in enumerate(zip(src, tgt)) if not s or not t]
    if bad:
        first = ", ".join(str(line_numbers[i] if line_numbers else i + 1) for i in bad[:5])
        log.warning("%s: dropped %d of %d pairs with an empty side (lines %s%s)",
                    where, len(bad), len(src), first, ", ..." if len(bad) > 5 else "")
        bad_set = set(bad)
        src = [s for i, s in enumerate(src) if i not in bad_set]
        tgt = [t for i, t in enumerate(tgt) if i not in bad_set]
    if not src:
        raise CorpusError(f"{where}: no non-empty sentence pairs; check that the file(s) hold the corpus text")
    return src, tgt


def to_dataset(src: list[str], tgt: list[str]) -> datasets.Dataset:
    """Build the in-memory ``datasets.Dataset`` with string columns src, tgt."""
    features = datasets.Features({"src": datasets.Value("string"), "tgt": datasets.Value("string")})
    return datasets.Dataset.from_dict({"src": src, "tgt": tgt}, features=features)


def column(ds: datasets.Dataset, name: str) -> list:
    """One column as a Python list (through Arrow: much faster than iterating rows)."""
    return ds.with_format("arrow")[name].to_pylist()


def _read_records(path: Path, parse) -> datasets.Dataset:
    """Read a file (``.gz`` allowed) line by line; ``parse(line, line_no, where) -> (src, tgt) | None``.

    Lines are decoded one at a time so a UTF-8 error names its own line; pairs with an
    empty side are dropped (logged with their line numbers).
    """
    if not path.is_file():
        raise CorpusError(f"{path}: file not found; check the corpus path template and split names")
    src: list[str] = []
    tgt: list[str] = []
    numbers: list[int] = []
    line_no = 0
    with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
        for line_no, raw in enumerate(f, start=1):
            where = f"{path}, line {line_no}"
            line = decode_utf8(raw, path, line_no).rstrip("\r\n")
            pair = parse(line, line_no, where)
            if pair is not None:
                src.append(pair[0].strip())
                tgt.append(pair[1].strip())
                numbers.append(line_no)
    if line_no == 0:
        raise CorpusError(f"{path}: file is empty; it should hold one sentence pair per line")
    return to_dataset(*drop_empty_pairs(src, tgt, str(path), numbers))


# --------------------------------------------------------------------------- text directories


class TextDirCorpus:
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

    def load(self, split: str) -> datasets.Dataset:
        """Load one split as a Dataset with columns src, tgt (empty pairs dropped)."""
        message = self.missing_message(split)
        if message is not None:
            raise CorpusError(message + f"; check the directory ({self.directory}) and the split name")
        src_path, tgt_path = self.find(split, self.src_lang), self.find(split, self.tgt_lang)
        src, tgt = read_lines(src_path), read_lines(tgt_path)
        for path, lines in ((src_path, src), (tgt_path, tgt)):
            if not lines:
                raise CorpusError(f"{path}: file is empty; it should hold one sentence per line")
        if len(src) != len(tgt):
            raise CorpusError(f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}; "
                              f"parallel files must be line-aligned")
        src, tgt = drop_empty_pairs(src, tgt, f"{src_path} / {tgt_path}")
        return to_dataset(src, tgt)


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

    def load(self, split: str) -> datasets.Dataset:
        """Load a split, downloading missing files first when allowed."""
        message = self.missing_message(split)
        if message is not None:
            self._obtain(split, message)
        return super().load(split)

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


class TsvCorpus:
    """One tab-separated file per split (``.gz`` allowed): src and tgt in the given columns."""

    def __init__(self, path_template: str, src_column: int, tgt_column: int, skip_header: bool):
        if "{split}" not in path_template:
            raise CorpusError(f"TsvCorpus path_template {path_template!r} must contain '{{split}}'")
        self.path_template = path_template
        self.src_column = src_column
        self.tgt_column = tgt_column
        self.skip_header = skip_header

    def load(self, split: str) -> datasets.Dataset:
        """Load one split as a Dataset with columns src, tgt."""
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

        return _read_records(path, parse)


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


class JsonlCorpus:
    """One JSON object per line (``.gz`` allowed); src/tgt fields may be dotted ("translation.de")."""

    def __init__(self, path_template: str, src_field: str, tgt_field: str):
        if "{split}" not in path_template:
            raise CorpusError(f"JsonlCorpus path_template {path_template!r} must contain '{{split}}'")
        self.path_template = path_template
        self.src_field = src_field
        self.tgt_field = tgt_field

    def load(self, split: str) -> datasets.Dataset:
        """Load one split as a Dataset with columns src, tgt (blank lines skipped)."""
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

        return _read_records(path, parse)


# --------------------------------------------------------------------------- Hugging Face hub


class HubCorpus:
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

    def _column(self, ds: datasets.Dataset, field: str, lang: str | None) -> list[str]:
        """Extract one side as a list of strings."""
        if field not in ds.column_names:
            raise CorpusError(f"HF dataset {self.name!r} has no column {field!r} (columns: {ds.column_names})")
        values = ds.with_format("arrow")[field]
        if lang is not None:
            values = values.combine_chunks()
            if lang not in [f.name for f in values.type]:
                raise CorpusError(f"HF dataset {self.name!r}: column {field!r} has no language {lang!r}")
            values = values.field(lang)
        return [("" if v is None else v.strip()) for v in values.to_pylist()]

    def load(self, split: str) -> datasets.Dataset:
        """Load one split as a Dataset with columns src, tgt (empty pairs dropped)."""
        ds = self._fetch(split)
        src = self._column(ds, self.src_field, self.src_lang)
        tgt = self._column(ds, self.tgt_field, self.tgt_lang)
        return to_dataset(*drop_empty_pairs(src, tgt, f"HF dataset {self.name} ({split})"))


# --------------------------------------------------------------------------- toy tasks


TOY_TASKS = ("copy", "reverse", "sort", "permute")


class ToyCorpus:
    """Generated sequence tasks over word tokens "w0" .. "w{vocab-1}" (for tests and demos).

    task: copy (tgt = src), reverse (tgt = reversed src), sort (tgt = src sorted by word id),
    permute (tgt = src reordered by one fixed permutation of positions: a permutation pi of
    0..max_len-1 drawn once from `seed`; a sentence of n words takes the positions of pi below n,
    in pi's order). Each split name gives its own deterministic sample (seeded by seed and the split
    name); train has ``size`` pairs, other splits ``eval_size`` (default: size).

    The true word alignment of every task is known exactly: `gold_alignment(split)`.
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

    def gold_alignment(self, split: str) -> list[tuple[set[tuple[int, int]], set[tuple[int, int]]]]:
        """The true word alignment of each pair of `split`: (sure, possible) sets of (source word, target
        word) links, 0-based. Sure: target word j comes from source word order[j]. Possible adds, for sort
        only, every other source word with the same token (equal words may swap without changing the pair)."""
        gold = []
        for words, order in self.sample(split):
            sure = {(k, j) for j, k in enumerate(order)}
            possible = set(sure)
            if self.task == "sort":
                possible |= {(k, j) for j, src in enumerate(order) for k in range(len(words)) if words[k] == words[src]}
            gold.append((sure, possible))
        return gold
