"""Translate many sentences: DecodeSettings (configs/decode/), length-sorted batches, input order kept."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from nmt.data.batching import Batch, collate
from nmt.decoding.beam import beam_search
from nmt.decoding.compiled import CompiledSteps
from nmt.decoding.greedy import Hypotheses, greedy_decode
from nmt.decoding.greedy import stepwise_decode
from nmt.decoding.rows import ALIGNMENTS, RowSelection, check_selection, resolve_selection
from nmt.decoding.sampling import SAMPLINGS, sampler
from nmt.models.seq2seq import Seq2Seq

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodeSettings:
    """Mirrors configs/decode/*.yaml (shared by nmt-train's final evaluation, nmt-evaluate, nmt-translate)."""
    beam_size: int          # 1 = greedy
    length_penalty: float   # GNMT alpha (Wu et al. 2016, Eq. 14)
    max_len_a: float        # max output length = a * src_len + b
    max_len_b: int
    max_sentences: int      # sentences decoded together
    nbest: int              # outputs per input (1..beam_size), best first; nmt-translate prints them all
    max_input_tokens: int   # translate_lines cuts a longer input line to its first N pieces, with a warning
    sampling: str           # none = search (greedy or beam) | topk | topp: one drawn output per input
    topk: int               # sampling=topk: draw among the k most probable tokens
    topp: float             # sampling=topp: among the fewest most probable tokens whose mass reaches p
    temperature: float      # sampling: logits / temperature before the top-k / top-p cut
    seed: int               # sampling: seed of the decode's own torch.Generator
    compile: bool           # torch.compile the decoder step (nmt.decoding.compiled)
    coverage_penalty: float  # GNMT beta (Wu et al. 2016, Eq. 14): + beta sum_j log(min(sum_t a_tj, 1)); 0 = none
    alignment: str          # none | hard | soft: nmt-translate appends " ||| " and the output's word alignment
    selection: str          # the cross-attention both read: auto | cross | dec.<i>.cross:mean | dec.<i>.cross:h<h>

    def __post_init__(self):
        for key in ("beam_size", "max_sentences", "max_input_tokens", "topk"):
            if getattr(self, key) < 1:
                raise ValueError(f"decode.{key} must be >= 1, got {getattr(self, key)}")
        self.check_sampling()
        if not 1 <= self.nbest <= self.beam_size:
            raise ValueError(f"decode.nbest must be between 1 and decode.beam_size={self.beam_size}, got "
                             f"{self.nbest}; raise decode.beam_size or lower decode.nbest")
        if self.max_len_a < 0 or self.max_len_b < 0 or self.max_len_a == self.max_len_b == 0:
            raise ValueError(f"decode.max_len_a and decode.max_len_b must be >= 0 and not both 0, got "
                             f"{self.max_len_a} and {self.max_len_b}")
        if self.length_penalty < 0:
            raise ValueError(f"decode.length_penalty must be >= 0, got {self.length_penalty}")
        if self.coverage_penalty < 0:
            raise ValueError(f"decode.coverage_penalty must be >= 0 (0 = none), got {self.coverage_penalty}")
        if self.alignment not in ALIGNMENTS:
            raise ValueError(f"decode.alignment must be one of {', '.join(ALIGNMENTS)}; got {self.alignment!r}")
        check_selection(self.selection)

    def keeps_rows(self) -> bool:
        """Whether the search keeps each hypothesis' attention rows: an alignment is printed, or beam search
        ranks with a coverage penalty (greedy search and sampling have one output to rank: beta does nothing)."""
        return self.alignment != "none" or self.coverage_penalty > 0 and self.beam_size > 1

    def check_sampling(self):
        """Sampling's own keys, and no beam or n-best list with it (one drawn output per input)."""
        if self.sampling not in ("none", *SAMPLINGS):
            raise ValueError(f"decode.sampling must be one of none, {', '.join(SAMPLINGS)}; got {self.sampling!r}")
        if not 0 < self.topp <= 1:
            raise ValueError(f"decode.topp must be in (0, 1], got {self.topp}")
        if self.temperature <= 0:
            raise ValueError(f"decode.temperature must be > 0, got {self.temperature}")
        if self.sampling != "none" and (self.beam_size > 1 or self.nbest > 1):
            raise ValueError(f"decode.sampling={self.sampling} draws one output per input: it needs "
                             f"decode.beam_size=1 and decode.nbest=1, got decode.beam_size={self.beam_size} and "
                             f"decode.nbest={self.nbest}; add decode.beam_size=1 decode.nbest=1, or "
                             f"decode.sampling=none for beam search")


def decode_amp(device: torch.device) -> bool:
    """Decode under bf16 autocast: on a CUDA device with bf16, as trainer=gpu trains (scores and log-probs are
    summed in float32 by the searches; the RNNs run in float32 outside autocast); never on the CPU."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def translate_ids(model: Seq2Seq, src_ids: list[list[int]], settings: DecodeSettings, *, pad_id: int,
                  bos_id: int, eos_id: int, device: torch.device) -> Hypotheses:
    """Decode src_ids (no bos/eos) with greedy (beam_size 1), beam search or sampling; keeps input order.
    With settings.nbest > 1 the result also holds each input's nbest outputs and normalised scores; when
    settings.keeps_rows(), each output's rows of decode.selection (Hypotheses.rows).
    Sampling draws from one generator seeded with settings.seed: the same inputs, seed and max_sentences
    give the same samples (a sentence's draw depends on the batch it is in)."""
    order = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]))
    tokens: list = [None] * len(src_ids)
    nbest: list = [None] * len(src_ids)
    rows: list = [None] * len(src_ids)
    scores = torch.zeros(len(src_ids))
    nbest_scores = torch.zeros(len(src_ids), settings.nbest)
    keep = resolve_selection(settings.selection, model) if settings.keeps_rows() else None
    model.eval()
    model = CompiledSteps(model) if settings.compile else model
    generator = None if settings.sampling == "none" else torch.Generator(device).manual_seed(settings.seed)
    for start in range(0, len(order), settings.max_sentences):
        idx = order[start: start + settings.max_sentences]
        batch = collate([src_ids[i] or [eos_id] for i in idx], [[] for _ in idx], idx, pad_id, bos_id, eos_id)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=decode_amp(torch.device(device))):
            hyp = decode_batch(model, batch.to(device), settings, bos_id, eos_id, generator, keep)
        for j, i in enumerate(idx):
            tokens[i], nbest[i] = hyp.tokens[j], hyp.nbest[j]
            rows[i] = None if keep is None else hyp.rows[j]
        scores[idx] = hyp.scores.float().cpu()
        nbest_scores[idx] = hyp.nbest_scores.float().cpu()
    return Hypotheses(tokens, scores, nbest, nbest_scores, None if keep is None else rows)


def decode_batch(model: Seq2Seq, batch: Batch, settings: DecodeSettings, bos_id: int, eos_id: int,
                 generator: torch.Generator | None, keep: RowSelection | None = None) -> Hypotheses:
    """One Batch on device -> greedy search (beam_size 1), sampling (decode.sampling) or beam search; with
    `keep`, each output's rows of that selection (and beam search ranks with decode.coverage_penalty)."""
    src, lens, a, b = batch.src, batch.src_lengths, settings.max_len_a, settings.max_len_b
    if settings.beam_size > 1:
        return beam_search(model, src, lens, settings.beam_size, bos_id, eos_id, settings.length_penalty, a, b,
                           nbest=settings.nbest, coverage_penalty=settings.coverage_penalty, keep=keep)
    if settings.sampling == "none":
        hyp = greedy_decode(model, src, lens, bos_id, eos_id, a, b, keep=keep)
    else:
        choose = sampler(settings.sampling, settings.topk, settings.topp, settings.temperature, generator)
        hyp = stepwise_decode(model, src, lens, bos_id, eos_id, a, b, choose, keep=keep)  # sample_decode's loop
    hyp.nbest, hyp.nbest_scores = [[t] for t in hyp.tokens], hyp.scores[:, None]  # |Y|^0: alpha unused
    return hyp


def decode_texts(model: Seq2Seq, src_ids: list[list[int]], tgt_tok, settings: DecodeSettings,
                 device: torch.device) -> tuple[list[str], Hypotheses]:
    """Translate id sequences and detokenise with the target sentencepiece model."""
    hyp = translate_ids(model, src_ids, settings, pad_id=tgt_tok.pad_id, bos_id=tgt_tok.bos_id,
                        eos_id=tgt_tok.eos_id, device=device)
    return tgt_tok.decode(hyp.tokens), hyp


@dataclass
class Translations:
    """What translate_lines returns: one output per input line, and what was decoded."""
    lines: list[str]               # outputs, "" for an empty input line
    decoded: list[int]             # indices of the non-empty input lines
    src_ids: list[list[int]]       # their source ids
    hyp: Hypotheses                # their outputs as ids


def translate_lines(model: Seq2Seq, src_tok, tgt_tok, lines: list[str], settings: DecodeSettings,
                    device: torch.device) -> Translations:
    """Raw lines -> one output line each (an empty input line gives an empty output line).

    A line of more than settings.max_input_tokens source pieces is cut to its first max_input_tokens
    (a warning names the line and the key): no silent minutes on a line far beyond what training saw.
    """
    keep = [i for i, line in enumerate(lines) if line.strip()]
    src_ids = cap_input_tokens(src_tok.encode([lines[i] for i in keep]), keep, settings.max_input_tokens)
    texts, hyp = decode_texts(model, src_ids, tgt_tok, settings, device)
    out = [""] * len(lines)
    for i, text in zip(keep, texts):
        out[i] = text
    return Translations(out, keep, src_ids, hyp)


def cap_input_tokens(src_ids: list[list[int]], line_index: list[int], cap: int) -> list[list[int]]:
    """Cut each id sequence to its first `cap` pieces; warn for each cut line (1-based line numbers from
    line_index), the first few by name and the rest as a count."""
    cut = [(line_index[k], len(ids)) for k, ids in enumerate(src_ids) if len(ids) > cap]
    for i, n in cut[:5]:
        log.warning("input line %d has %d source pieces, more than decode.max_input_tokens=%d: translating only "
                    "its first %d pieces (the rest of the line is dropped); split the line, or raise "
                    "decode.max_input_tokens", i + 1, n, cap, cap)
    if len(cut) > 5:
        log.warning("%d more input lines were cut to decode.max_input_tokens=%d pieces", len(cut) - 5, cap)
    return [ids[:cap] for ids in src_ids]


def nbest_lines(result: Translations, tgt_tok, n_inputs: int, alignments: list[list[str]] | None = None) -> list[str]:
    """`index ||| text ||| score` per hypothesis, best first, as fairseq and Moses write n-best lists:
    index is the 0-based input line, score the length-normalised log-probability (GNMT Eq. 14, + the
    coverage penalty when decode.coverage_penalty > 0). An empty input line gives one empty hypothesis with
    score 0. alignments (per decoded input, per output): appended as ` ||| <alignment>` (decode.alignment)."""
    hyp = result.hyp
    tail = (lambda k, n: "") if alignments is None else (lambda k, n: f" ||| {alignments[k][n] if k >= 0 else ''}")
    per_line: dict[int, list[str]] = {i: [f"{i} |||  ||| 0.0000{tail(-1, 0)}"] for i in range(n_inputs)}
    for k, i in enumerate(result.decoded):
        texts = tgt_tok.decode(hyp.nbest[k])
        per_line[i] = [f"{i} ||| {text} ||| {float(score):.4f}{tail(k, n)}"
                       for n, (text, score) in enumerate(zip(texts, hyp.nbest_scores[k]))
                       if score > float("-inf")]  # fewer finished hypotheses than nbest: none is made up
    return [line for i in range(n_inputs) for line in per_line[i]]
