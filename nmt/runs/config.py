"""A run's config as plain data: the composed config of nmt-train, resolved once at the entry point, is what
the library reads and what <run_dir>/config.yaml stores. No DictConfig below the entry points: the model and
corpus nodes stay plain dicts that only nmt.models.build instantiates."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

import yaml

from nmt.data.pipeline import check_length_filters

log = logging.getLogger(__name__)

# Corpus keys that hold paths (made absolute at training time, moved by data_root=).
CORPUS_PATH_KEYS = ("root", "directory", "path_template")


@dataclass(frozen=True)
class DataSettings:
    """The data group: where the corpus is, how it is read, split and tokenised."""
    root: str
    corpus: dict        # `_target_` + the reader's own keys: nmt.models.build.build_corpus
    splits: dict        # {train|valid|test: the corpus's split name}
    tokenizer: dict     # nmt.data.tokenizer settings
    max_len: int
    train_max_tgt_len: int | None  # training targets longer than this are dropped, None = off
    cache_dir: str
    alignment: str | None  # Pharaoh file of the train split (supervised alignment), None = none

    def __post_init__(self):
        check_length_filters(self.max_len, self.train_max_tgt_len)  # a bad value fails before any data is read

    def split_name(self, split: str) -> str:
        """A key of data.splits (valid) or a corpus split name (test_2017_flickr) as the corpus names it."""
        return self.splits.get(split, split)

    def absolute(self) -> DataSettings:
        """root, cache_dir and the corpus paths made absolute, so a stored config works from any directory."""
        corpus = {k: (os.path.abspath(v) if k in CORPUS_PATH_KEYS and isinstance(v, str) else v)
                  for k, v in self.corpus.items()}
        alignment = None if self.alignment is None else os.path.abspath(self.alignment)
        return replace(self, root=os.path.abspath(self.root), cache_dir=os.path.abspath(self.cache_dir),
                       corpus=corpus, alignment=alignment)

    def rebased(self, new_root: str) -> DataSettings:
        """The same data under another root: every corpus path under the stored root moves with it, whatever
        the corpus kind (Multi30k root, TextDir directory, TSV/JSONL path_template)."""
        old, new = str(self.root).rstrip("/"), os.path.abspath(new_root)
        corpus, moved = dict(self.corpus), []
        for key in CORPUS_PATH_KEYS:
            value = corpus.get(key)
            if isinstance(value, str) and (value == old or value.startswith(old + "/")):
                corpus[key] = new + value[len(old):]
                moved.append(key)
        paths = {k: self.corpus[k] for k in CORPUS_PATH_KEYS if k in self.corpus}
        if paths and not moved:
            log.warning("data_root=%s changes nothing: the run's corpus paths %s are not under its data.root %s",
                        new_root, paths, old)
        return replace(self, root=new, corpus=corpus)


@dataclass(frozen=True)
class RunConfig:
    """The whole resolved config of a run (nested dicts and lists, no interpolation left)."""
    values: dict

    @property
    def model(self) -> dict:
        return self.values["model"]

    @property
    def data(self) -> DataSettings:
        # a run trained before data.alignment / data.train_max_tgt_len existed: none
        node = {"alignment": None, "train_max_tgt_len": None, **self.values["data"]}
        return DataSettings(**{f.name: node[f.name] for f in fields(DataSettings)})

    @property
    def seed(self) -> int | None:
        return self.values.get("seed")

    def group(self, name: str) -> dict:
        return self.values[name]

    def with_data(self, data: DataSettings) -> RunConfig:
        node = {**self.values["data"], **{f.name: getattr(data, f.name) for f in fields(DataSettings)}}
        return RunConfig({**self.values, "data": node})

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.values, sort_keys=False, allow_unicode=True)

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        values = yaml.safe_load(Path(path).read_text())
        if not isinstance(values, dict):
            raise ValueError(f"{path} is not a run config (a YAML mapping)")
        return cls(values)


def model_yaml(model: dict) -> str:
    """The model node as YAML: what a checkpoint's meta stores and a resume compares (parsed, not as text)."""
    return yaml.safe_dump(model, sort_keys=False, allow_unicode=True)
