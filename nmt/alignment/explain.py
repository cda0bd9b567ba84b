"""Does the attention explain the output? Counterfactual weights and attention-gradient agreement per slot.

For every attention slot and counterfactual of nmt.alignment.counterfactual:
  tvd   mean total variation distance 1/2 sum_y |p(y) - p'(y)| of the next-token distribution under
        teacher forcing on the reference, over every target token (Jain & Wallace 2019, Sec. 4, use
        TVD between output distributions);
  flip  share of target tokens whose arg-max prediction changes (Serrano & Smith 2019's decision flip);
  bleu  BLEU of the output re-decoded with the counterfactual weights at every step.
For every cross-attention slot:
  tau   mean Kendall tau-b between a_t(s) (heads averaged) and the gradient importance
        || d log p(y_t) / d e_s || of each source piece's embedding e_s, over target tokens
        (Jain & Wallace 2019, Sec. 3: attention vs gradient-based feature importance).
A slot whose counterfactuals barely change the output (small tvd, unchanged BLEU) and whose tau is
low does not "explain" the prediction in the sense of these papers.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from nmt.alignment.counterfactual import intervening, make_hook, slot_modules
from nmt.alignment.extract import is_cross
from nmt.attention.intervention import WeightHook
from nmt.common import atomic_write_text, pick_device, write_json
from nmt.data.batching import Batch, collate
from nmt.decoding import DecodeSettings, decode_texts
from nmt.evaluation.metrics import corpus_scores
from nmt.training.run_dir import load_trained


@dataclass
class ExplainSettings:
    """Mirrors the keys of configs/explain.yaml."""
    counterfactuals: list[str]   # any of uniform, permute, zero_top
    seed: int                    # the permutations' generator
    gradient: bool               # also compute the attention-gradient Kendall tau
    chunk: int                   # sentences per teacher-forced pass


def batches(src_ids: list[list[int]], ref_ids: list[list[int]], tok, chunk: int, device) -> list[Batch]:
    """Teacher-forcing batches of `chunk` pairs (sources never empty: [eos] stands in)."""
    return [collate([s or [tok.eos_id] for s in src_ids[i: i + chunk]], ref_ids[i: i + chunk],
                    list(range(i, min(i + chunk, len(src_ids)))), tok.pad_id, tok.bos_id, tok.eos_id).to(device)
            for i in range(0, len(src_ids), chunk)]


def next_token_probs(model, b: Batch) -> Tensor:
    """Teacher-forced next-token distributions (B, T, V) of one batch."""
    return F.softmax(model(b.src, b.src_lengths, b.tgt_in)[0].logits.float(), dim=-1)  # (B, T, V)


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


def kendall_tau(x: Tensor, y: Tensor) -> Tensor:
    """Kendall's tau-b per row (Kendall 1945, ties corrected): x, y (N, n) -> (N,); nan for a constant row."""
    n = x.size(-1)
    dx = torch.sign(x[:, :, None] - x[:, None, :])  # (N, n, n)
    dy = torch.sign(y[:, :, None] - y[:, None, :])  # (N, n, n)
    upper = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)  # each pair once
    score = (dx * dy)[:, upper].sum(-1)  # (N,) concordant - discordant
    pairs = n * (n - 1) / 2
    tied_x, tied_y = (dx[:, upper] == 0).sum(-1), (dy[:, upper] == 0).sum(-1)  # (N,)
    denom = ((pairs - tied_x) * (pairs - tied_y)).double().sqrt()  # (N,)
    return torch.where(denom > 0, score.double() / denom.clamp_min(1e-300), torch.full_like(denom, math.nan))


def embedding_gradients(model, b: Batch, pad_id: int) -> tuple[Tensor, dict[str, Tensor]]:
    """-> (||d log p(y_t) / d e_s|| (B, T, S), cross maps {slot: (B, T, S)} heads averaged)."""
    captured = []
    handle = model.encoder.embed.register_forward_hook(lambda mod, inp, out: captured.append(out))
    try:
        with torch.enable_grad():
            out, _ = model(b.src, b.src_lengths, b.tgt_in, need_weights=True)
            logp = F.log_softmax(out.logits.float(), -1).gather(-1, b.tgt_out[..., None])[..., 0]  # (B, T)
            logp = logp.masked_fill(b.tgt_out == pad_id, 0.0)
            norms = [torch.autograd.grad(logp[:, t].sum(), captured[0], retain_graph=True)[0].norm(dim=-1)
                     for t in range(logp.size(1))]  # T x (B, S): sentences are independent in eval mode
    finally:
        handle.remove()
    maps = {k: v.detach().float().mean(1) for k, v in out.attention.items() if is_cross(k)}  # (B, T, S)
    return torch.stack(norms, dim=1), maps  # (B, T, S)


def gradient_agreement(model, data: list[Batch], pad_id: int) -> dict[str, float]:
    """{cross slot: mean Kendall tau between attention and gradient importance over target tokens}."""
    taus: dict[str, list[Tensor]] = {}
    for b in data:
        grads, maps = embedding_gradients(model, b, pad_id)
        T = (b.tgt_out != pad_id).sum(1).tolist()
        for slot, m in maps.items():
            for k, (S, Tk) in enumerate(zip(b.src_lengths.tolist(), T)):
                if S > 1:
                    taus.setdefault(slot, []).append(kendall_tau(m[k, :Tk, :S], grads[k, :Tk, :S]))
    return {slot: float(torch.nanmean(torch.cat(t))) for slot, t in taus.items()}


def explain(model, src_ids: list[list[int]], refs: list[str], tok, settings: ExplainSettings,
            decode: DecodeSettings, device) -> dict:
    """The whole table: {"baseline_bleu", "slots": {slot: {cf: {tvd, flip, bleu}, "tau": ...}}}."""
    model.eval()
    data = batches(src_ids, tok.encode(refs), tok, settings.chunk, device)
    baseline = corpus_scores(decode_texts(model, src_ids, tok, decode, device)[0], refs)["bleu"]
    modules = slot_modules(model)
    changes = output_changes(model, data, tok.pad_id, {(slot, name): (module, make_hook(name, settings.seed))
                                                       for slot, module in modules.items()
                                                       for name in settings.counterfactuals})
    slots: dict[str, dict] = {}
    for (slot, name), change in changes.items():
        with intervening(modules[slot], make_hook(name, settings.seed)):  # a fresh hook: same permutations
            texts = decode_texts(model, src_ids, tok, decode, device)[0]
        slots.setdefault(slot, {})[name] = {**change, "bleu": corpus_scores(texts, refs)["bleu"]}
    if settings.gradient:
        for slot, tau in gradient_agreement(model, data, tok.pad_id).items():
            slots[slot]["tau"] = tau
    return {"baseline_bleu": baseline, "sentences": len(src_ids), "slots": slots}


def explain_markdown(result: dict, counterfactuals: list[str]) -> str:
    """One markdown table: a row per slot; TVD and BLEU per counterfactual; tau(attention, gradient)."""
    head = [*(f"TVD {c}" for c in counterfactuals), *(f"BLEU {c}" for c in counterfactuals), "tau attn-grad"]
    lines = ["| slot | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    for slot, r in result["slots"].items():
        cells = [f"{r[c]['tvd']:.3f}" for c in counterfactuals] + [f"{r[c]['bleu']:.1f}" for c in counterfactuals]
        cells.append(f"{r['tau']:.2f}" if "tau" in r else "–")
        lines.append(f"| {slot} | " + " | ".join(cells) + " |")
    lines += ["", f"Baseline BLEU {result['baseline_bleu']:.1f} on {result['sentences']} sentences. TVD: mean "
              "total variation distance of the next-token distribution under teacher forcing; BLEU: output "
              "re-decoded with the counterfactual weights; tau: Kendall tau-b between cross-attention (heads "
              "averaged) and input-gradient importance per source piece.", ""]
    return "\n".join(lines)


def explain_run(cfg: DictConfig) -> dict:
    """nmt-explain: counterfactual tests of a run's attention on the first max_sentences of a split; writes the table."""
    device = pick_device(cfg.device)
    trained = load_trained(Path(cfg.run_dir), cfg.checkpoint, device)
    if cfg.split not in trained.cfg.data.splits:
        raise ValueError(f"split={cfg.split} is not one of the run's data.splits ({', '.join(trained.cfg.data.splits)})")
    pairs = instantiate(trained.cfg.data.corpus).load(trained.cfg.data.splits[cfg.split])
    pairs = pairs.select(range(min(cfg.max_sentences, len(pairs))))
    decode = DecodeSettings(**OmegaConf.to_container(cfg.decode, resolve=True))
    settings = ExplainSettings(list(cfg.counterfactuals), cfg.seed, cfg.gradient, cfg.chunk)
    result = explain(trained.model, trained.src_tok.encode(list(pairs["src"])), list(pairs["tgt"]), trained.tgt_tok,
                     settings, decode, device)
    table = explain_markdown(result, settings.counterfactuals)
    out = Path(cfg.out) if cfg.out is not None else Path(cfg.run_dir) / "explain.md"
    atomic_write_text(out, table)
    write_json(out.with_suffix(".json"), result)
    sys.stdout.write(table)
    return result
