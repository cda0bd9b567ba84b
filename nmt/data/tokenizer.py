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
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import sentencepiece as spm

from nmt.common import atomic_write_bytes

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


def sample_pairs(chunks: Iterable[tuple[list[str], list[str]]], capacity: int,
                 seed: int) -> tuple[list[str], list[str]]:
    """A uniform sample of at most capacity pairs from streamed (src, tgt) chunks, in corpus order.

    Reservoir sampling (Vitter's algorithm R, vectorised per chunk), so memory is bounded by
    capacity whatever the corpus size; a corpus of at most capacity pairs is returned whole.
    """
    rng = np.random.default_rng(seed)
    src: list[str] = []
    tgt: list[str] = []
    where: list[int] = []  # corpus position of each reservoir slot
    seen = 0
    for s, t in chunks:
        fill = min(len(s), capacity - len(src))
        src += s[:fill]
        tgt += t[:fill]
        where += range(seen, seen + fill)
        if fill < len(s):
            slots = rng.integers(0, np.arange(seen + fill, seen + len(s)) + 1)             # (n - fill,)
            for k in np.flatnonzero(slots < capacity):
                j, i = int(slots[k]), fill + int(k)
                src[j], tgt[j], where[j] = s[i], t[i], seen + i
        seen += len(s)
    order = np.argsort(where, kind="stable")
    return [src[i] for i in order], [tgt[i] for i in order]


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
        input_sentence_size=settings["input_sentence_size"],
        shuffle_input_sentence=settings["shuffle_input_sentence"],
        num_threads=num_threads, minloglevel=2)
    return model.getvalue()


def train_tokenizers(sample: Callable[[int], tuple[list[str], list[str]]], key: str, cache_dir: str,
                     model_type: str, vocab_size: int, joint: bool, character_coverage: float,
                     input_sentence_size: int, shuffle_input_sentence: bool,
                     num_threads: int) -> tuple[SubwordTokenizer, SubwordTokenizer]:
    """Train (or load from cache) the source and target tokenizers on a bounded sample of the train split.

    Args:
        sample: sample(n_pairs) -> (src lines, tgt lines), at most n_pairs pairs of the train
            split (``sample_pairs`` over the stream); called only when a model is not cached.
        key: content hash of the train split; models are cached under a hash of key + settings.
        model_type: "unigram" or "bpe".
        vocab_size: upper bound on pieces per model (a tiny corpus may give fewer).
        joint: one model over src + tgt text, returned twice (same object).
        character_coverage: sentencepiece character coverage (1.0 for Latin scripts).
        input_sentence_size: at most this many sentences train one model (joint: half as many
            pairs, both sides); sentencepiece's own option of the same name gets it too.
        shuffle_input_sentence: sentencepiece's option (shuffle before its own sampling).
        num_threads: sentencepiece training threads; 0 = all CPUs.
    Returns:
        (src_tok, tgt_tok).
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(f"data.tokenizer.model_type must be one of {MODEL_TYPES}, got {model_type!r}")
    if input_sentence_size < 2:
        raise ValueError(f"data.tokenizer.input_sentence_size must be >= 2, got {input_sentence_size}")
    settings = {"model_type": model_type, "vocab_size": int(vocab_size),
                "character_coverage": float(character_coverage), "input_sentence_size": int(input_sentence_size),
                "shuffle_input_sentence": bool(shuffle_input_sentence), "version": 2}
    digest = hashlib.sha256(json.dumps([settings, key], sort_keys=True).encode()).hexdigest()[:16]
    cache = Path(cache_dir)
    names = ("joint",) if joint else ("src", "tgt")
    paths = {name: cache / f"spm-{name}-{model_type}{vocab_size}-{digest}.model" for name in names}
    missing = [name for name, path in paths.items() if not path.is_file()]
    if missing:
        src, tgt = sample(input_sentence_size // 2 if joint else input_sentence_size)
        lines = {"joint": src + tgt, "src": src, "tgt": tgt}
        threads = num_threads or os.cpu_count() or 1
        for name in missing:
            log.info("training %s %s tokenizer (vocab_size=%d) on %d lines", name, model_type, vocab_size,
                     len(lines[name]))
            atomic_write_bytes(paths[name], train_sentencepiece(lines[name], settings, threads))
    for name in names:
        if name not in missing:
            log.info("loading cached %s tokenizer %s", name, paths[name])
    toks = [SubwordTokenizer(paths[name]) for name in names]
    return (toks[0], toks[0]) if joint else (toks[0], toks[1])
