"""Decode a split and score it with sacreBLEU."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from nmt.decoding import Hypotheses, translate_ids
from nmt.evaluation.metrics import corpus_scores
from nmt.models.seq2seq import Seq2Seq


@dataclass
class DecodeSettings:
    beam_size: int
    length_penalty: float
    max_len_a: float
    max_len_b: int
    max_sentences: int


def decode_texts(model: Seq2Seq, src_ids: list[list[int]], tgt_tok, s: DecodeSettings,
                 device: torch.device) -> tuple[list[str], Hypotheses]:
    """Translate id sequences and detokenise with the target sentencepiece model."""
    hyp = translate_ids(model, src_ids, pad_id=tgt_tok.pad_id, bos_id=tgt_tok.bos_id, eos_id=tgt_tok.eos_id,
                        beam_size=s.beam_size, alpha=s.length_penalty, max_len_a=s.max_len_a,
                        max_len_b=s.max_len_b, max_sentences=s.max_sentences, device=device)
    return tgt_tok.decode(hyp.tokens), hyp


def evaluate_texts(model: Seq2Seq, src_ids: list[list[int]], refs: list[str], tgt_tok, s: DecodeSettings,
                   device: torch.device) -> tuple[dict, list[str]]:
    """-> (BLEU/chrF/TER with signatures, detokenised hypotheses)."""
    texts, _ = decode_texts(model, src_ids, tgt_tok, s, device)
    return corpus_scores(texts, refs), texts
