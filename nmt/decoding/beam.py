"""Batched beam search on device: K live hypotheses per sentence, a finished list, an exact stop.

Each step extends the K live hypotheses of every active sentence and ranks the 2K best
extensions by raw log-probability. Extensions ending in eos that rank within the top K go to the
sentence's finished list with their length-normalised score (GNMT, Wu et al. 2016, Eq. 14); the
K best extensions that do not end in eos stay live, so the beam never shrinks as hypotheses finish.
A sentence stops when no live hypothesis can beat its n-th best finished one: log-probabilities
only fall and the penalty only grows, so a live hypothesis can reach at most
raw / lp(length limit) (Huang et al. 2017, "When to finish? Optimal beam search for NMT"), or
when it reaches its length limit, where eos is forced. The host reads "all done" once every
`check_every` steps, and then drops the finished sentences from the batch.

|Y| counts the output tokens including eos: the empty output has length 1.

Kept rows (`keep`, a RowSelection of nmt.decoding.rows): each step also returns the slot's attention row of every
live hypothesis; a Trail stores that (A*K, H, S) row once per step with the backpointers, and the rows of each
finished hypothesis are read back by following them (its history is never copied step by step). With a coverage
penalty beta > 0 (GNMT, Wu et al. 2016, Eq. 14) every live hypothesis also carries the running sum of its
selected rows (A*K, S), reordered with the backpointers, and a finished hypothesis' score is raw / lp(|Y|) +
cp(X; Y). The stop bound stays raw / lp(length limit): cp <= 0 and only lowers a score, while a live
hypothesis' cp can still rise (its coverage only grows), so its current cp is no bound but 0 is.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from nmt.decoding.greedy import HOST_CHECK_EVERY, Hypotheses, crop_rows, cut, decode_step, length_limits
from nmt.decoding.rows import RowSelection, coverage_penalty
from nmt.models.seq2seq import EncoderOutput, Seq2Seq, State


def length_penalty(lengths: Tensor | int, alpha: float) -> Tensor | float:
    """GNMT length penalty ((5 + |Y|) / 6)^alpha (Wu et al. 2016, Eq. 14); alpha=0 gives 1."""
    return ((5.0 + lengths) / 6.0) ** alpha


@dataclass(frozen=True)
class Search:
    """What every step of one beam search reads: beam size, eos, GNMT alpha and beta, the kept selection."""
    K: int
    eos_id: int
    alpha: float                  # length penalty (Eq. 14)
    beta: float                   # coverage penalty (Eq. 14); > 0 needs `keep`
    keep: RowSelection | None     # the slot whose rows each hypothesis keeps (None: no maps asked for)


@dataclass
class Finished:
    """The N best finished hypotheses of every sentence of the batch (N = nbest), best first."""
    norm: Tensor    # (B, N) length-normalised score (+ coverage penalty), -inf = empty slot
    raw: Tensor     # (B, N) log-probability of tokens + eos
    tokens: Tensor  # (B, N, T) output ids, padded with eos
    steps: Tensor   # (B, N) long: the step of its eos (its last row, Trail); -1 = empty slot
    rows: Tensor    # (B, N) long: the live row of that step it extends

    @classmethod
    def empty(cls, B: int, n: int, T: int, eos_id: int, device) -> "Finished":
        return cls(torch.full((B, n), float("-inf"), device=device), torch.zeros(B, n, device=device),
                   torch.full((B, n, T), eos_id, dtype=torch.long, device=device),
                   torch.full((B, n), -1, dtype=torch.long, device=device),
                   torch.zeros(B, n, dtype=torch.long, device=device))

    def merge(self, ids: Tensor, norm: Tensor, raw: Tensor, tokens: Tensor, step: int, rows: Tensor) -> None:
        """Add candidates norm/raw/rows (A, C), tokens (A, C, T) of step `step` to the sentences `ids` (A,);
        keep the N best."""
        n, T = self.norm.size(1), self.tokens.size(2)
        all_norm = torch.cat([self.norm[ids], norm], dim=1)  # (A, N + C)
        best, pos = all_norm.topk(n, dim=1)  # (A, N)
        self.raw[ids] = torch.cat([self.raw[ids], raw], dim=1).gather(1, pos)
        self.tokens[ids] = torch.cat([self.tokens[ids], tokens], dim=1).gather(1, pos[..., None].expand(-1, -1, T))
        self.steps[ids] = torch.cat([self.steps[ids], torch.full_like(rows, step)], dim=1).gather(1, pos)
        self.rows[ids] = torch.cat([self.rows[ids], rows], dim=1).gather(1, pos)
        self.norm[ids] = best


@dataclass
class Trail:
    """The kept rows of all hypotheses: weights[t] (R_t, H, S) the row live hypothesis r of step t attended
    with; parents[t] (R_{t+1},) the row of step t that live row r of step t + 1 extends (the backpointers,
    composed with Live.select's)."""
    weights: list[Tensor]
    parents: list[Tensor]

    def backtrack(self, steps: Tensor, rows: Tensor) -> Tensor:
        """Hypotheses ending at step steps (M,) in live row rows (M,) -> their rows (M, H, T, S), T the steps
        run; zero after a hypothesis' last step (and everywhere for step -1)."""
        M, (_, H, S) = steps.numel(), self.weights[0].shape
        out = self.weights[0].new_zeros(M, H, len(self.weights), S)
        cur = rows
        for t in reversed(range(len(self.weights))):
            w, on = self.weights[t], steps >= t  # (R_t, H, S), (M,)
            idx = cur.clamp(max=w.size(0) - 1)  # rows of hypotheses ended before t: out of range, masked
            out[:, :, t] = torch.where(on[:, None, None], w[idx], 0.0)  # (M, H, S)
            if t > 0:
                cur = torch.where(on, self.parents[t - 1][idx], cur)
        return out


def sentence_rows(keep: Tensor, K: int) -> Tensor:
    """Sentences `keep` (A',) of the active batch -> their A'*K live rows."""
    return (keep[:, None] * K + torch.arange(K, device=keep.device)).view(-1)  # (A'*K,)


@dataclass
class Live:
    """The K live hypotheses of each active sentence (A active sentences, flattened to A*K rows)."""
    ids: Tensor      # (A,) index of each active sentence in the input batch
    seqs: Tensor     # (A*K, t+1) bos + generated ids
    raw: Tensor      # (A, K) log-probability so far; -inf = no hypothesis in this slot
    limits: Tensor   # (A,) maximum output length, eos included
    enc: EncoderOutput
    state: State
    coverage: Tensor | None = None  # (A*K, S) sum of the kept selection's rows so far (beta > 0 only)

    def reorder(self, rows: Tensor) -> tuple[EncoderOutput, State, Tensor | None]:
        """The per-row parts taken at rows (R',): encoder output, decoder state, coverage."""
        return (self.enc.index_select(rows), {k: v.index_select(0, rows) for k, v in self.state.items()},
                None if self.coverage is None else self.coverage.index_select(0, rows))

    def select(self, keep: Tensor, K: int) -> tuple["Live", Tensor]:
        """Keep the active sentences `keep` (A',) (positions into this batch); also returns their rows (A'*K,)."""
        rows = sentence_rows(keep, K)
        return Live(self.ids[keep], self.seqs[rows], self.raw[keep], self.limits[keep], *self.reorder(rows)), rows


def _next_logp(model: Seq2Seq, live: Live, t: int, s: Search) -> tuple[Tensor, State, Tensor | None]:
    """(A*K, V) log-probabilities of the next token (at the length limit only eos is allowed), the next state
    and the kept slot's rows (A*K, H, 1, S) of this step (None when nothing is kept)."""
    out = decode_step(model, live.seqs[:, -1:], live.enc, live.state, s.keep)
    logp = F.log_softmax(out.logits[:, -1].float(), dim=-1)  # (AK, V)
    at_limit = (t + 1 >= live.limits).repeat_interleave(s.K)  # (AK,)
    forced = torch.full_like(logp, float("-inf"))
    forced[:, s.eos_id] = logp[:, s.eos_id]
    weights = None if s.keep is None else out.attention[s.keep.slot].float()
    return torch.where(at_limit[:, None], forced, logp), out.state, weights


def _step(live: Live, fin: Finished, logp: Tensor, state: State, weights: Tensor | None, t: int,
          s: Search) -> tuple[Live, Tensor, Tensor]:
    """One beam step: finished candidates into `fin`; returns the new live beams, (A,) done and the backpointers
    (A*K,): the row of `live` each new live row extends."""
    A, V, T, K = live.raw.size(0), logp.size(-1), fin.tokens.size(2), s.K
    top, idx = (live.raw.view(-1, 1) + logp).view(A, K * V).topk(2 * K, dim=-1)  # (A, 2K)
    origin, token = idx // V, idx % V  # (A, 2K) beam slot and token of each candidate
    parent = torch.arange(A, device=top.device)[:, None] * K + origin  # (A, 2K) the live row it extends
    ends = token == s.eos_id
    in_beam = torch.arange(2 * K, device=top.device) < K  # eos only finishes within the top K (beam 1 = greedy)
    hist = live.seqs.view(A, K, -1)[:, :, 1:].gather(1, origin[..., None].expand(-1, -1, t))  # (A, 2K, t)
    cand = F.pad(torch.cat([hist, token[..., None]], dim=2), (0, T - t - 1), value=s.eos_id)  # (A, 2K, T)
    norm = top / length_penalty(t + 1, s.alpha)  # every candidate of step t has |Y| = t + 1
    coverage = None
    if live.coverage is not None:  # beta > 0: GNMT Eq. 14's cp over the rows of tokens + eos
        coverage = live.coverage + s.keep.reduce(weights)[:, 0]  # (AK, S) this step's row included
        norm = norm + coverage_penalty(coverage[parent], live.enc.mask[parent], s.beta)  # (A, 2K)
    fin.merge(live.ids, torch.where(ends & in_beam, norm, float("-inf")), top, cand, t, parent)
    raw, pick = torch.where(ends, float("-inf"), top).topk(K, dim=-1)  # (A, K) best K not ending in eos
    rows = parent.gather(1, pick).view(-1)  # (AK,)
    seqs = torch.cat([live.seqs.index_select(0, rows), token.gather(1, pick).view(-1, 1)], dim=1)
    enc, state = live.enc.index_select(rows), {k: v.index_select(0, rows) for k, v in state.items()}
    nxt = Live(live.ids, seqs, raw, live.limits, enc, state, None if coverage is None else coverage[rows])
    # the best a live beam can reach: raw only falls, lp(|Y|) only grows, cp <= 0 (module docstring)
    bound = raw.max(dim=-1).values / length_penalty(live.limits, s.alpha)  # (A,)
    done = (fin.norm[live.ids, -1] >= bound) | (t + 1 >= live.limits)
    return nxt, done, rows


@torch.no_grad()
def beam_search(model: Seq2Seq, src: Tensor, src_lengths: Tensor, beam_size: int, bos_id: int,
                eos_id: int, alpha: float, max_len_a: float, max_len_b: int, nbest: int = 1,
                check_every: int = HOST_CHECK_EVERY, *, coverage_penalty: float = 0.0,
                keep: RowSelection | None = None) -> Hypotheses:
    """src (B, S) -> the best hypothesis by score / length_penalty (+ coverage_penalty's cp), and the `nbest`
    best of each sentence; with `keep`, each output's rows of that selection's slot (Hypotheses.rows)."""
    B, K, dev = src.size(0), beam_size, src.device
    if not 1 <= nbest <= K:
        raise ValueError(f"decode.nbest must be between 1 and decode.beam_size={K}, got {nbest}")
    if coverage_penalty < 0 or coverage_penalty > 0 and keep is None:
        raise ValueError(f"decode.coverage_penalty={coverage_penalty} must be >= 0 and, when > 0, read a kept "
                         "selection (keep=resolve_selection(decode.selection, model))")
    s = Search(K, eos_id, alpha, coverage_penalty, keep)
    live, limits = _start(model, src, src_lengths, s, bos_id, max_len_a, max_len_b)
    T = int(limits.max())
    fin, trail = Finished.empty(B, nbest, T, eos_id, dev), Trail([], [])
    for t in range(T):
        logp, state, weights = _next_logp(model, live, t, s)
        live, done, parents = _step(live, fin, logp, state, weights, t, s)
        if keep is not None:
            trail.weights.append(weights[:, :, 0])  # (AK, H, S)
            trail.parents.append(parents)
        if (t + 1) % check_every == 0 or t + 1 == T:
            done = done.cpu()  # the one host sync of `check_every` steps
            if bool(done.all()):
                break
            if bool(done.any()):
                live, rows = live.select((~done).nonzero()[:, 0].to(dev), K)
                trail.parents[-1:] = [p[rows] for p in trail.parents[-1:]]
    return _result(fin, trail if keep is not None else None, src_lengths, eos_id)


def _start(model: Seq2Seq, src: Tensor, src_lengths: Tensor, s: Search, bos_id: int, max_len_a: float,
           max_len_b: int) -> tuple[Live, Tensor]:
    """The encoder output and one live hypothesis (bos) per sentence, expanded to K rows; (B,) length limits."""
    B, K, dev = src.size(0), s.K, src.device
    enc = model.encode(src, src_lengths)
    expand = torch.arange(B, device=dev).repeat_interleave(K)  # (B*K,)
    limits = length_limits(src_lengths, max_len_a, max_len_b)  # (B,)
    raw = torch.full((B, K), float("-inf"), device=dev)
    raw[:, 0] = 0.0  # one hypothesis (bos) per sentence to start from
    coverage = None if s.beta == 0 else torch.zeros(B * K, enc.mask.size(1), device=dev)  # (BK, S)
    live = Live(torch.arange(B, device=dev), torch.full((B * K, 1), bos_id, dtype=torch.long, device=dev), raw,
                limits, enc.index_select(expand), {k: v.index_select(0, expand) for k, v in
                                                    model.init_state(enc).items()}, coverage)
    return live, limits


def _result(fin: Finished, trail: Trail | None, src_lengths: Tensor, eos_id: int) -> Hypotheses:
    """Finished lists -> Hypotheses: best first, n-best lists, and the kept rows cropped per output."""
    (B, nbest), T = fin.norm.shape, fin.tokens.size(2)
    flat = cut(fin.tokens.view(B * nbest, T), eos_id)  # B*N lists
    nbest_tokens = [flat[b * nbest: (b + 1) * nbest] for b in range(B)]
    rows = None
    if trail is not None:
        kept = trail.backtrack(fin.steps.view(-1), fin.rows.view(-1))  # (B*N, H, T', S)
        rows = crop_rows(kept.view(B, nbest, *kept.shape[1:]), nbest_tokens, src_lengths)
    return Hypotheses([sent[0] for sent in nbest_tokens], fin.raw[:, 0], nbest_tokens, fin.norm, rows)
