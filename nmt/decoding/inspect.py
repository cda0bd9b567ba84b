"""Attention maps of the model's own output: force-decode the hypothesis and keep every map; a Probe is one
sentence's maps labelled with its sentencepiece pieces (what heatmaps, the explorer and TensorBoard draw)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from nmt.attention.slot import Slot
from nmt.data.batching import collate
from nmt.models.seq2seq import Seq2Seq


@dataclass
class SentenceMaps:
    src_ids: list[int]             # as fed to the encoder (specials included)
    out_ids: list[int]             # the model's output tokens + eos
    maps: dict[Slot, Tensor]       # slot -> (H, Tq, Tk) cropped to the real lengths
    centres: dict[Slot, Tensor]    # slot -> (T_out,) local_p predicted centres
    windows: dict[Slot, int]       # slot -> D of its local window (the modules' window_half_width)
    p_gen: Tensor | None = None    # (T_out,) copy attention's probability of generating each output token, else None


@dataclass
class Probe:
    """One sentence's attention maps with the pieces that label them (drawn by nmt.inspection)."""
    src_pieces: list[str]                  # source subwords (no bos/eos)
    out_pieces: list[str]                  # output subwords, the last "</s>"
    maps: dict[Slot, Tensor]               # slot -> (H, Tq, Tk)
    centres: dict[Slot, Tensor] = field(default_factory=dict)  # slot -> (Tq,) local-p p_t
    windows: dict[Slot, int] = field(default_factory=dict)     # slot -> D of its local window
    p_gen: Tensor | None = None            # (Tq,) copy attention's p_gen per output piece (See et al. 2017, Eq. 8)

    def __post_init__(self):  # names read back from probes.pt (plain str) become Slots
        self.maps = {Slot(k): v for k, v in self.maps.items()}
        self.centres = {Slot(k): v for k, v in self.centres.items()}
        self.windows = {Slot(k): int(v) for k, v in self.windows.items()}

    def saved(self) -> dict:
        """Plain str keys, tensors and lists: what torch.load(weights_only=True) reads back (Probe(**saved))."""
        plain = lambda d: {str(k): v for k, v in d.items()}  # noqa: E731
        return {"src_pieces": self.src_pieces, "out_pieces": self.out_pieces, "maps": plain(self.maps),
                "centres": plain(self.centres), "windows": plain(self.windows), "p_gen": self.p_gen}


def to_probe(maps: SentenceMaps, src_tok, tgt_tok) -> Probe:
    """A sentence's maps labelled with sentencepiece pieces; the output's final eos is "</s>"."""
    return Probe(src_tok.pieces(maps.src_ids), tgt_tok.pieces(maps.out_ids[:-1]) + ["</s>"], maps.maps,
                 maps.centres, maps.windows, maps.p_gen)


@torch.no_grad()
def output_attention(model: Seq2Seq, src_ids: list[list[int]], out_ids: list[list[int]], *, pad_id: int,
                     bos_id: int, eos_id: int, device: torch.device) -> list[SentenceMaps]:
    """One teacher-forced pass over bos + hypothesis: equals the maps seen during (cached) decoding."""
    model.eval()
    windows = model.attention_windows()
    batch = collate(src_ids, out_ids, list(range(len(src_ids))), pad_id, bos_id, eos_id).to(device)
    out, enc = model(batch.src, batch.src_lengths, batch.tgt_in, need_weights=True)
    S = batch.src_lengths.tolist()
    T = (batch.tgt_out != pad_id).sum(1).tolist()
    result = []
    for b in range(len(src_ids)):
        # encoder self-attention (S, S); decoder self-attention (T, T); cross-attention (T, S)
        maps = {k: v[b, :, : S[b], : S[b]].float().cpu() for k, v in enc.attention.items()}
        for k, v in out.attention.items():
            maps[k] = v[b, :, : T[b], : (S[b] if k.keys_are_source else T[b])].float().cpu()
        cen = {k: v[b, : T[b]].float().cpu() for k, v in out.centres.items()}
        p_gen = None if out.p_gen is None else out.p_gen[b, : T[b]].float().cpu()  # (T_out,)
        result.append(SentenceMaps(batch.src[b, : S[b]].tolist(), batch.tgt_out[b, : T[b]].tolist(), maps, cen,
                                   windows, p_gen))
    return result


def output_maps(model: Seq2Seq, src_ids: list[list[int]], out_ids: list[list[int]], tgt_tok, device: torch.device,
                chunk: int = 64) -> list[SentenceMaps]:
    """Every attention map of the model's own output (output_attention), `chunk` sentences a pass."""
    maps = []
    for i in range(0, len(src_ids), chunk):
        maps += output_attention(model, src_ids[i: i + chunk], out_ids[i: i + chunk], pad_id=tgt_tok.pad_id,
                                 bos_id=tgt_tok.bos_id, eos_id=tgt_tok.eos_id, device=device)
    return maps


def probe_maps(model: Seq2Seq, src_ids, tokens: list[list[int]], src_tok, tgt_tok, device: torch.device,
               n_probes: int, n_stats: int) -> tuple[list[Probe], list[SentenceMaps]]:
    """The maps of the model's own output `tokens` for the first max(n_probes, n_stats) sentences, in one set
    of forced passes: the first n_probes labelled as Probes (heatmaps, texts, explorer), the first n_stats as
    they are (the attention statistics' input). What the trainer logs at validation and at the end."""
    n = max(n_probes, n_stats)
    maps = output_maps(model, src_ids[:n], tokens[:n], tgt_tok, device)
    return [to_probe(m, src_tok, tgt_tok) for m in maps[:n_probes]], maps[:n_stats]
