"""Attention maps of the model's own output: force-decode the hypothesis and keep every map."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nmt.data.batching import collate
from nmt.models.seq2seq import Seq2Seq


@dataclass
class SentenceMaps:
    src_ids: list[int]             # as fed to the encoder (specials included)
    out_ids: list[int]             # the model's output tokens + eos
    maps: dict[str, Tensor]        # name -> (H, Tq, Tk) cropped to the real lengths
    centres: dict[str, Tensor]     # name -> (T_out,) local_p predicted centres


@torch.no_grad()
def output_attention(model: Seq2Seq, src_ids: list[list[int]], out_ids: list[list[int]], *, pad_id: int,
                     bos_id: int, eos_id: int, device: torch.device) -> list[SentenceMaps]:
    """One teacher-forced pass over bos + hypothesis: equals the maps seen during (cached) decoding."""
    model.eval()
    batch = collate(src_ids, out_ids, list(range(len(src_ids))), pad_id, bos_id, eos_id).to(device)
    out, enc = model(batch.src, batch.src_lengths, batch.tgt_in, need_weights=True)
    S = batch.src_lengths.tolist()
    T = (batch.tgt_out != pad_id).sum(1).tolist()
    result = []
    for b in range(len(src_ids)):
        # names: encoder "enc.<i>.self" (S, S); decoder "dec.<i>.self" (T, T), "cross"/"dec.<i>.cross" (T, S)
        maps = {k: v[b, :, : S[b], : S[b]].float().cpu() for k, v in enc.attention.items()}
        for k, v in out.attention.items():
            maps[k] = v[b, :, : T[b], : (T[b] if k.endswith("self") else S[b])].float().cpu()
        cen = {k: v[b, : T[b]].float().cpu() for k, v in out.centres.items()}
        result.append(SentenceMaps(batch.src[b, : S[b]].tolist(), batch.tgt_out[b, : T[b]].tolist(), maps, cen))
    return result


def output_maps(model: Seq2Seq, src_ids: list[list[int]], out_ids: list[list[int]], tgt_tok, device: torch.device,
                chunk: int = 64) -> list[SentenceMaps]:
    """Every attention map of the model's own output (output_attention), `chunk` sentences a pass."""
    maps = []
    for i in range(0, len(src_ids), chunk):
        maps += output_attention(model, src_ids[i: i + chunk], out_ids[i: i + chunk], pad_id=tgt_tok.pad_id,
                                 bos_id=tgt_tok.bos_id, eos_id=tgt_tok.eos_id, device=device)
    return maps
