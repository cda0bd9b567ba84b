"""SentencePiece subword tokenizers (Kudo & Richardson 2018), trained on the train split and cached.

Special ids are fixed for every model: pad 0, unk 1, bos 2, eos 3. ``encode`` adds
neither bos nor eos (``collate`` does); ``decode`` stops at eos and skips pad/bos.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import datasets
import sentencepiece as spm

from nmt.common import atomic_write_bytes
from nmt.data.corpus import column

log = logging.getLogger(__name__)

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
MODEL_TYPES = ("unigram", "bpe")


class SubwordTokenizer:
    """A sentencepiece model with the project's special ids (pad 0, unk 1, bos 2, eos 3)."""

    def __init__(self, model_path: str | os.PathLike):
        self._model_path = str(model_path)
        self._sp = spm.SentencePieceProcessor(model_file=self._model_path)
        specials = (self._sp.pad_id(), self._sp.unk_id(), self._sp.bos_id(), self._sp.eos_id())
        if specials != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise ValueError(f"{model_path}: special ids (pad, unk, bos, eos) are {specials}, expected (0, 1, 2, 3); "
                             f"retrain it with train_tokenizers")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SubwordTokenizer":
        """Load a trained ``.model`` file."""
        return cls(path)

    def __getstate__(self) -> dict:
        return {"model_path": self._model_path}  # the processor itself is not picklable

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["model_path"])

    def __len__(self) -> int:
        return self._sp.get_piece_size()

    def __repr__(self) -> str:
        return f"SubwordTokenizer({self._model_path!r}, size={len(self)})"

    @property
    def model_path(self) -> str:
        return self._model_path

    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def unk_id(self) -> int:
        return UNK_ID

    @property
    def bos_id(self) -> int:
        return BOS_ID

    @property
    def eos_id(self) -> int:
        return EOS_ID

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Texts -> piece ids, without bos/eos."""
        return self._sp.encode(list(texts), out_type=int)

    def decode(self, ids: Iterable[Sequence[int]]) -> list[str]:
        """Id sequences -> detokenised text; each stops at the first eos, pad and bos are skipped.

        Accepts lists of ints or 1-D tensors (anything with ``tolist``).
        """
        clean = []
        for seq in ids:
            seq = seq.tolist() if hasattr(seq, "tolist") else list(seq)
            if EOS_ID in seq:
                seq = seq[: seq.index(EOS_ID)]
            clean.append([int(i) for i in seq if i != PAD_ID and i != BOS_ID])
        return self._sp.decode(clean)

    def pieces(self, ids: Sequence[int]) -> list[str]:
        """Ids -> piece strings (for attention plots), e.g. ["▁Ein", "▁Mann"]."""
        ids = ids.tolist() if hasattr(ids, "tolist") else ids
        return [self._sp.id_to_piece(int(i)) for i in ids]


def _digest(lines: Iterable[str], settings: dict) -> str:
    """sha256 over the settings and the training text."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for line in lines:
        h.update(line.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def train_sentencepiece(lines: list[str], settings: dict, num_threads: int) -> bytes:
    """Train a sentencepiece model on lines and return the serialized model.

    hard_vocab_limit=False makes vocab_size an upper bound, so tiny corpora work.
    """
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model,
        model_type=settings["model_type"], vocab_size=settings["vocab_size"],
        character_coverage=settings["character_coverage"], hard_vocab_limit=False,
        pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
        input_sentence_size=2_000_000, shuffle_input_sentence=True,  # subsample very large corpora
        num_threads=num_threads, minloglevel=2)
    return model.getvalue()


def _cached_model(lines: list[str], settings: dict, cache_dir: Path, name: str, num_threads: int) -> SubwordTokenizer:
    """Load the model for (lines, settings) from cache_dir, training it first if absent."""
    path = cache_dir / f"spm-{name}-{settings['model_type']}{settings['vocab_size']}-{_digest(lines, settings)[:16]}.model"
    if path.is_file():
        log.info("loading cached %s tokenizer %s", name, path)
    else:
        log.info("training %s %s tokenizer (vocab_size=%d) on %d lines", name, settings["model_type"],
                 settings["vocab_size"], len(lines))
        atomic_write_bytes(path, train_sentencepiece(lines, settings, num_threads))
    return SubwordTokenizer(path)


def train_tokenizers(train: datasets.Dataset, cache_dir: str, model_type: str, vocab_size: int, joint: bool,
                     character_coverage: float, num_threads: int = 0) -> tuple[SubwordTokenizer, SubwordTokenizer]:
    """Train (or load from cache) the source and target tokenizers on the train split.

    Args:
        train: Dataset with string columns src, tgt.
        cache_dir: models are cached here by a sha256 of training text + settings.
        model_type: "unigram" or "bpe".
        vocab_size: upper bound on pieces per model (a tiny corpus may give fewer).
        joint: one model over src + tgt text, returned twice (same object).
        character_coverage: sentencepiece character coverage (1.0 for Latin scripts).
        num_threads: sentencepiece training threads; 0 = all CPUs.
    Returns:
        (src_tok, tgt_tok).
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(f"data.tokenizer.model_type must be one of {MODEL_TYPES}, got {model_type!r}")
    settings = {"model_type": model_type, "vocab_size": int(vocab_size),
                "character_coverage": float(character_coverage), "version": 1}
    threads = num_threads or os.cpu_count() or 1
    cache = Path(cache_dir)
    src_lines, tgt_lines = column(train, "src"), column(train, "tgt")
    if joint:
        tok = _cached_model(src_lines + tgt_lines, settings, cache, "joint", threads)
        return tok, tok
    return (_cached_model(src_lines, settings, cache, "src", threads),
            _cached_model(tgt_lines, settings, cache, "tgt", threads))
