"""Does the attention explain the output? Counterfactual weights and attention-importance agreement per slot.

For every attention slot and counterfactual of nmt.alignment.counterfactual:
  tvd   mean total variation distance 1/2 sum_y |p(y) - p'(y)| of the next-token distribution under
        teacher forcing on the reference, over every target token (Jain & Wallace 2019, Sec. 4, use
        TVD between output distributions);
  flip  share of target tokens whose arg-max prediction changes (Serrano & Smith 2019's decision flip);
  bleu  BLEU of the output re-decoded with the counterfactual weights at every step.
For every cross-attention slot, Jain & Wallace (2019, Sec. 3, Algorithm 1)'s two feature-importance
measures per target token t and source piece s, each compared with a_t(s) (heads averaged) by Kendall
tau-b, averaged over target tokens:
  tau_grad  g_t(s) = | d log p(y_t) / d x_s | at the one-hot input x_s of piece s, i.e.
            | e_s . d log p(y_t) / d e_s | with e_s its embedding row, and every attention module's
            weights detached ("we disconnect the computation graph at the attention module");
  tau_loo   leave-one-out: TVD(p_t(. | x), p_t(. | x without piece s)), piece s deleted from the
            source and the source re-encoded.
Jain & Wallace take the gradient of their classifier's output; here the output is the teacher-forced
log p(y_t) of the reference token (the gradient of p(y_t) is the same times p(y_t) > 0, so each row's
ranking, and tau, is the same).
A slot whose counterfactuals barely change the output (small tvd, unchanged BLEU) and whose taus are
low does not "explain" the prediction in the sense of these papers.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.alignment.counterfactual import intervening, make_hook
from nmt.alignment.extract import is_cross
from nmt.attention.intervention import WeightHook
from nmt.attention.windows import lengths_mask
from nmt.common import atomic_write_text, pick_device, write_json
from nmt.data.batching import Batch
from nmt.decoding import DecodeSettings, decode_texts
from nmt.decoding.forced import forced_batches, reference_log_probs
from nmt.scoring import corpus_scores
from nmt.runs.trained import load_trained


@dataclass
class ExplainSettings:
    """Mirrors the keys of configs/explain.yaml."""
    counterfactuals: list[str]   # any of uniform, permute, zero_top
    seed: int                    # the permutations' generator
    gradient: bool               # tau_grad: attention vs one-hot input gradient (Jain & Wallace 2019)
    leave_one_out: bool          # tau_loo: attention vs leave-one-out (Jain & Wallace 2019)
    chunk: int                   # sentences per teacher-forced pass


def batches(src_ids: list[list[int]], ref_ids: list[list[int]], tok, chunk: int, device) -> list[Batch]:
    """Teacher-forcing batches of `chunk` pairs with tok's special ids (nmt.decoding.forced.forced_batches)."""
    return forced_batches(src_ids, ref_ids, tok.pad_id, tok.bos_id, tok.eos_id, chunk, device)


def next_token_probs(model, b: Batch) -> Tensor:
    """Teacher-forced next-token distributions (B, T, V) of one batch."""
    return forced_probs(model, b.src, b.src_lengths, b.tgt_in)


def forced_probs(model, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor:
    """src (B, S), src_lengths (B,), tgt_in (B, T) -> teacher-forced next-token distributions (B, T, V)."""
    return F.softmax(model(src, src_lengths, tgt_in)[0].logits.float(), dim=-1)  # (B, T, V)


@torch.no_grad()
def output_changes(model, data: list[Batch], pad_id: int,
                   hooks: dict[tuple[str, str], tuple[nn.Module, WeightHook]]) -> dict[tuple[str, str], dict]:
    """{(slot, counterfactual): (module, hook)} -> {key: mean TVD and flip rate of the next-token
    distributions with the hook on the module, over real tokens}. The unchanged distributions are
    computed once per batch, not once per slot and counterfactual."""
    sums = {key: [0.0, 0.0] for key in hooks}  # key -> [tvd, flips]
    n = 0
    for b in data:
        p = next_token_probs(model, b)  # (B, T, V)
        real = b.tgt_out != pad_id  # (B, T)
        n += int(real.sum())
        for key, (module, hook) in hooks.items():
            with intervening(module, hook):
                q = next_token_probs(model, b)  # (B, T, V)
            sums[key][0] += float((0.5 * (p - q).abs().sum(-1))[real].sum())
            sums[key][1] += float((p.argmax(-1) != q.argmax(-1))[real].sum())
    return {key: {"tvd": tvd / max(n, 1), "flip": flips / max(n, 1)} for key, (tvd, flips) in sums.items()}


def kendall_tau(x: Tensor, y: Tensor, valid: Tensor) -> Tensor:
    """Kendall's tau-b per row over its valid entries (Kendall 1945, ties corrected): x, y (N, n), valid
    (N, n) bool -> (N,); nan for a row with fewer than two valid entries or a constant one."""
    n = x.size(-1)
    dx = torch.sign(x[:, :, None] - x[:, None, :])  # (N, n, n)
    dy = torch.sign(y[:, :, None] - y[:, None, :])  # (N, n, n)
    upper = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)  # each pair once
    pair = upper & valid[:, :, None] & valid[:, None, :]  # (N, n, n) pairs of valid entries
    score = (dx * dy * pair).sum((1, 2))  # (N,) concordant - discordant
    pairs = pair.sum((1, 2))  # (N,)
    tied_x, tied_y = ((dx == 0) & pair).sum((1, 2)), ((dy == 0) & pair).sum((1, 2))  # (N,)
    denom = ((pairs - tied_x) * (pairs - tied_y)).double().sqrt()  # (N,)
    return torch.where(denom > 0, score.double() / denom.clamp_min(1e-300), torch.full_like(denom, math.nan))


def _detach(weights: Tensor, allowed: Tensor) -> Tensor:
    return weights.detach()


@contextmanager
def attention_detached(model) -> Iterator[None]:
    """Every attention module's weights are constants for autograd within the block (Jain & Wallace
    2019, Sec. 3: "we disconnect the computation graph at the attention module"); values unchanged."""
    with ExitStack() as stack:
        for module in model.attention_modules().values():
            stack.enter_context(intervening(module, _detach))
        yield


def one_hot_gradient(model, b: Batch, pad_id: int) -> Tensor:
    """Jain & Wallace 2019 (Algorithm 1, g_t): |d log p(y_t) / d x_s| at the one-hot input x_s of source
    piece s = |e_s . d log p(y_t) / d e_s|, e_s the piece's row of the embedding table (before any
    scaling), every attention's weights detached -> (B, T, S), 0 on padding."""
    captured = []  # the table's output e (B, S, E): d/dx_s of the lookup x_s^T E is E[x_s] . d/de_s
    handle = model.encoder.embed.table.register_forward_hook(lambda mod, inp, out: captured.append(out))
    try:
        with torch.enable_grad(), attention_detached(model):
            logp = reference_log_probs(model, b, pad_id)  # (B, T)
            grads = [torch.autograd.grad(logp[:, t].sum(), captured[0], retain_graph=True)[0]
                     for t in range(logp.size(1))]  # T x (B, S, E): sentences are independent in eval mode
    finally:
        handle.remove()
    dot = (torch.stack(grads, dim=1) * captured[0].detach()[:, None]).sum(-1)  # (B, T, S, E) -> (B, T, S)
    return dot.abs()


@torch.no_grad()
def leave_one_out(model, b: Batch, pad_id: int, chunk: int) -> Tensor:
    """Jain & Wallace 2019 (Algorithm 1, Delta y_t): TVD between p_t(. | x) and p_t(. | x without source
    piece s), the piece deleted and the shorter source re-encoded -> (B, T, S); 0 on padding and for
    one-piece sources. All (sentence, piece) variants run as batches of `chunk` sequences."""
    B, S = b.src.shape
    p = next_token_probs(model, b)  # (B, T, V)
    drop = lengths_mask(b.src_lengths, S) & (b.src_lengths > 1)[:, None]  # (B, S) pieces to delete
    rows, cols = torch.nonzero(drop, as_tuple=True)  # (N,) sentence and deleted piece of each variant
    keep = torch.arange(S - 1, device=b.src.device).expand(len(rows), S - 1)  # (N, S - 1)
    keep = keep + (keep >= cols[:, None]).long()  # positions kept: all but the deleted one
    src = b.src[rows].gather(1, keep)  # (N, S - 1) padding stays at the end
    loo = torch.zeros(B, b.tgt_in.size(1), S, device=b.src.device)  # (B, T, S)
    for i in range(0, len(rows), chunk):
        r, c = rows[i: i + chunk], cols[i: i + chunk]  # (n,)
        q = forced_probs(model, src[i: i + chunk], b.src_lengths[r] - 1, b.tgt_in[r])  # (n, T, V)
        loo[r, :, c] = 0.5 * (p[r] - q).abs().sum(-1)  # (n, T)
    return loo * (b.tgt_out != pad_id)[..., None]  # (B, T, S)


@torch.no_grad()
def cross_maps(model, b: Batch) -> dict[str, Tensor]:
    """{cross slot: a_t(s) (B, T, S), heads averaged}."""
    out, _ = model(b.src, b.src_lengths, b.tgt_in, need_weights=True)
    return {k: v.float().mean(1) for k, v in out.attention.items() if is_cross(k)}


def importances(model, b: Batch, pad_id: int, settings: "ExplainSettings") -> dict[str, Tensor]:
    """The measures asked for: {"tau_grad": one-hot gradient, "tau_loo": leave-one-out}, each (B, T, S)."""
    found = {}
    if settings.gradient:
        found["tau_grad"] = one_hot_gradient(model, b, pad_id)
    if settings.leave_one_out:
        found["tau_loo"] = leave_one_out(model, b, pad_id, settings.chunk)
    return found


def importance_agreement(model, data: list[Batch], pad_id: int, settings: "ExplainSettings") -> dict[str, dict]:
    """{cross slot: {"tau_grad" | "tau_loo": mean Kendall tau-b between a_t and the importance over target
    tokens}}; rows with fewer than two source pieces (no ranking) are left out."""
    taus: dict[str, dict[str, list[Tensor]]] = {}
    for b in data if settings.gradient or settings.leave_one_out else []:
        measures = importances(model, b, pad_id, settings)
        S, T = b.src.size(1), b.tgt_out.size(1)
        valid = lengths_mask(b.src_lengths, S)[:, None].expand(-1, T, -1).reshape(-1, S)  # (B * T, S)
        real = (b.tgt_out != pad_id).reshape(-1)  # (B * T,)
        for slot, a in cross_maps(model, b).items():
            for key, imp in measures.items():
                tau = kendall_tau(a.reshape(-1, S), imp.reshape(-1, S).to(a.device), valid)  # (B * T,)
                taus.setdefault(slot, {}).setdefault(key, []).append(tau[real])
    return {slot: {k: float(torch.nanmean(torch.cat(v))) for k, v in d.items()} for slot, d in taus.items()}


def explain(model, src_ids: list[list[int]], refs: list[str], tok, settings: ExplainSettings,
            decode: DecodeSettings, device) -> dict:
    """The whole table: {"baseline_bleu", "slots": {slot: {cf: {tvd, flip, bleu}, "tau_grad", "tau_loo"}}}."""
    model.eval()
    data = batches(src_ids, tok.encode(refs), tok, settings.chunk, device)
    baseline = corpus_scores(decode_texts(model, src_ids, tok, decode, device)[0], refs)["bleu"]
    modules = model.attention_modules()
    changes = output_changes(model, data, tok.pad_id, {(slot, name): (module, make_hook(name, settings.seed))
                                                       for slot, module in modules.items()
                                                       for name in settings.counterfactuals})
    slots: dict[str, dict] = {}
    for (slot, name), change in changes.items():
        with intervening(modules[slot], make_hook(name, settings.seed)):  # a fresh hook: same permutations
            texts = decode_texts(model, src_ids, tok, decode, device)[0]
        slots.setdefault(slot, {})[name] = {**change, "bleu": corpus_scores(texts, refs)["bleu"]}
    for slot, taus in importance_agreement(model, data, tok.pad_id, settings).items():
        slots.setdefault(slot, {}).update(taus)
    return {"baseline_bleu": baseline, "sentences": len(src_ids), "slots": slots}


TAU_COLUMNS = {"tau_grad": "tau one-hot grad", "tau_loo": "tau leave-one-out"}  # Jain & Wallace 2019, Alg. 1


def explain_markdown(result: dict, counterfactuals: list[str]) -> str:
    """One markdown table: a row per slot; TVD and BLEU per counterfactual; the two Jain & Wallace taus."""
    head = [*(f"TVD {c}" for c in counterfactuals), *(f"BLEU {c}" for c in counterfactuals), *TAU_COLUMNS.values()]
    lines = ["| slot | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    for slot, r in result["slots"].items():
        cells = [f"{r[c]['tvd']:.3f}" for c in counterfactuals] + [f"{r[c]['bleu']:.1f}" for c in counterfactuals]
        cells += [f"{r[k]:.2f}" if k in r else "–" for k in TAU_COLUMNS]
        lines.append(f"| {slot} | " + " | ".join(cells) + " |")
    lines += ["", f"Baseline BLEU {result['baseline_bleu']:.1f} on {result['sentences']} sentences. TVD: mean "
              "total variation distance of the next-token distribution under teacher forcing; BLEU: output "
              "re-decoded with the counterfactual weights. Kendall tau-b between cross-attention (heads averaged) "
              "and Jain & Wallace (2019, Alg. 1)'s importance of each source piece, mean over target tokens: "
              "one-hot grad = |d log p(y_t) / d x_s| at the one-hot input (embedding . gradient), every "
              "attention's weights detached; leave-one-out = TVD of p(y_t | ...) when piece s is deleted.", ""]
    return "\n".join(lines)


@dataclass
class ExplainJob:
    """nmt-explain's settings: mirrors configs/explain.yaml (built by nmt.cli.common.job)."""
    run_dir: str
    checkpoint: str
    device: str
    split: str                   # a key of the run's data.splits
    data_root: str | None        # read the corpus from here instead of the run's data.root
    max_sentences: int
    counterfactuals: list[str]
    seed: int
    gradient: bool
    leave_one_out: bool
    chunk: int
    out: str | None              # None: <run_dir>/explain.md
    decode: DecodeSettings       # re-decoding with counterfactual weights


def explain_run(cfg: ExplainJob) -> dict:
    """nmt-explain: counterfactual tests of a run's attention on the first max_sentences of a split; writes the table."""
    device = pick_device(cfg.device)
    trained = load_trained(Path(cfg.run_dir), cfg.checkpoint, device, cfg.data_root)
    if cfg.split not in trained.config.data.splits:
        splits = ", ".join(trained.config.data.splits)
        raise ValueError(f"split={cfg.split} is not one of the run's data.splits ({splits})")
    pairs = trained.load_split(cfg.split)
    pairs = pairs.select(range(min(cfg.max_sentences, len(pairs))))
    settings = ExplainSettings(list(cfg.counterfactuals), cfg.seed, cfg.gradient, cfg.leave_one_out, cfg.chunk)
    result = explain(trained.model, trained.src_tok.encode(list(pairs["src"])), list(pairs["tgt"]), trained.tgt_tok,
                     settings, cfg.decode, device)
    table = explain_markdown(result, settings.counterfactuals)
    out = Path(cfg.out) if cfg.out is not None else Path(cfg.run_dir) / "explain.md"
    atomic_write_text(out, table)
    write_json(out.with_suffix(".json"), result)
    sys.stdout.write(table)
    return result
