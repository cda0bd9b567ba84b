"""nmt-export: a trained Transformer run as a CTranslate2 model directory (fast CPU/GPU inference, int8).

Converted through CTranslate2's own spec API (ctranslate2.specs.TransformerSpec), weights copied one by
one: embeddings (scaled by sqrt(d), as nmt does), nmt's interleaved sinusoidal (or learned, or no: zeros)
positions as an explicit table, per layer the pre-norm layer norms, fused q/k/v (self) and q + fused k/v (cross)
projections with their biases, the feed-forward, the final norms and the generator. The sentencepiece
models are copied beside it (src.model, tgt.model).

Position methods and heads (nmt.attention.positional, num_kv_heads) go to the CTranslate2 options that compute
them the same way (attention_options; checked against CTranslate2's own scores in tests/runs/
test_export_positions.py): shaw -> relative_position (clip(j - i, k) rows on keys and values), t5 ->
relative_attention_bias (the same buckets, bidirectional in the encoder, causal in the decoder; CTranslate2
computes a stack's bias once, from its first layer, so the shared table goes to every layer), rotary ->
rotary_dim=0 with interleaved pairs and rotary_base, alibi (decoder only) -> alibi, unscaled (CTranslate2's
-m_h (Tk - 1 - j) differs from -m_h (i - j) by a constant per row, which the softmax drops under the causal
mask), num_kv_heads -> num_heads_kv (one per stack; the decoder's self and cross slots share it).

What CTranslate2 cannot run, or would compute differently, is refused by name before anything is written:
RNN decoders, local / hard / non-scaled-dot / non-softmax attention, sliding windows, a causal encoder or
cross-attention, post-norm, a cross-attention head count (or key/value head count) other than the decoder
self-attention's, the average attention decoder, ALiBi in the encoder, a position method beside input
positions, T5 in a decoder whose window is not causal (nmt's buckets are then bidirectional) and per-layer T5
tables. The encoder's head counts may differ from the decoder's.

Use it (docs: README, "Export to CTranslate2"):

    import ctranslate2, sentencepiece as spm
    src, tgt = spm.SentencePieceProcessor(model_file=f"{out}/src.model"), spm.SentencePieceProcessor(model_file=f"{out}/tgt.model")
    translator = ctranslate2.Translator(out, device="cpu", compute_type="int8")
    results = translator.translate_batch([src.encode(line, out_type=str) for line in lines], beam_size=5)
    outputs = [tgt.decode(r.hypotheses[0]) for r in results]
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nmt.common import pick_device
from nmt.runs.run_dir import RunDirError
from nmt.runs.trained import load_trained

QUANTIZATIONS = ("float32", "int8", "int8_float32", "float16", "bfloat16", "int8_float16")
MAX_POSITIONS = 1024  # rows of the exported sinusoidal table: the longest input/output CTranslate2 accepts


@dataclass
class ExportJob:
    """nmt-export's settings: mirrors configs/export.yaml."""
    run_dir: str
    checkpoint: str
    format: str          # ctranslate2
    quantization: str    # float32 | int8 | ...
    out: str

    def __post_init__(self):
        if self.format != "ctranslate2":
            raise ValueError(f"format={self.format!r}: the one export format is ctranslate2")
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization={self.quantization!r} must be one of {', '.join(QUANTIZATIONS)}")


# (side, slot, windows CTranslate2 runs there): the decoder adds its causal mask to its self-attention itself,
# so global and causal are the same there; CTranslate2 has no sliding window and no causal encoder or cross-attention
MHA, AAN = "nmt.attention.MultiHeadAttention", "nmt.attention.AverageAttention"
SLOTS = (("encoder", "self_attention", ("global",)), ("decoder", "self_attention", ("causal", "global")),
         ("decoder", "cross_attention", ("global",)))


def check_exportable(model: dict) -> None:
    """Refuse what CTranslate2's TransformerSpec cannot express (`model`: the run's model node), naming every
    such setting and what works instead; called before anything is written."""
    why = exportable_problems(model)
    if why:
        raise RunDirError(f"this run cannot be exported to CTranslate2: {'; '.join(why)}. It runs with "
                          "nmt-translate and the Python API (nmt.load); export a model=transformer run with the "
                          "default attention")


def exportable_problems(model: dict) -> list[str]:
    """What in `model` CTranslate2 cannot run, one phrase per setting (empty: exportable)."""
    if model["family"] != "transformer":
        return [f"model.family={model['family']} (CTranslate2 runs Transformer encoder-decoders only)"]
    why = [f"model.{side}.pre_norm=false (post-norm; CTranslate2 runs pre-norm)"
           for side in ("encoder", "decoder") if not model[side]["pre_norm"]]
    for side, slot, windows in SLOTS:
        a, key = model[side][slot], f"model.{side}.{slot}"
        if a["_target_"] == AAN:
            why.append(f"{key}._target_={AAN} (the average attention network: CTranslate2's decoder has none)")
        elif a["_target_"] != MHA:
            why.append(f"{key}._target_={a['_target_']} (CTranslate2 runs {MHA})")
        else:
            why += slot_problems(a, key, windows)
    return why + head_problems(model) + position_problems(model)


def slot_problems(a: dict, key: str, windows: tuple[str, ...]) -> list[str]:
    """A multi-head slot's score, window and normaliser CTranslate2 would compute differently."""
    why = []
    if a["score"] != "scaled_dot":
        why.append(f"{key}.score={a['score']} (CTranslate2 runs scaled_dot only)")
    if a["window"] not in windows:
        why.append(f"{key}.window={a['window']} (CTranslate2 runs window={' or '.join(windows)} there)")
    if a.get("normaliser", "softmax") != "softmax":  # runs saved before the key existed have none: softmax
        why.append(f"{key}.normaliser={a['normaliser']} (CTranslate2 runs softmax only)")
    return why


def head_problems(model: dict) -> list[str]:
    """The decoder's head counts CTranslate2 cannot take: its decoder has one num_heads and one num_heads_kv for
    its self- and cross-attention (the encoder's may differ from the decoder's)."""
    dec = model["decoder"]
    if any(dec[s]["_target_"] != MHA for s in ("self_attention", "cross_attention")):
        return []  # refused by its _target_
    self_a, cross_a = dec["self_attention"], dec["cross_attention"]
    why = []
    if self_a["num_heads"] != cross_a["num_heads"]:
        why.append(f"model.decoder.cross_attention.num_heads={cross_a['num_heads']} differs from "
                   f"model.decoder.self_attention.num_heads={self_a['num_heads']} (CTranslate2's decoder has one "
                   "head count; the encoder's may differ)")
    kv = [a.get("num_kv_heads") or a["num_heads"] for a in (self_a, cross_a)]  # null, or absent in older runs
    if kv[0] != kv[1]:
        why.append(f"model.decoder.cross_attention.num_kv_heads={kv[1]} differs from "
                   f"model.decoder.self_attention.num_kv_heads={kv[0]} (CTranslate2's decoder has one key/value "
                   "head count, num_heads_kv, for both; the encoder's may differ: +model/heads=gqa sets all three)")
    return why


def position_problems(model: dict) -> list[str]:
    """The self-attention position methods CTranslate2 would compute differently, one phrase each (cross slots
    have none: build_model refuses it). Exported as CTranslate2 defines them: shaw (relative_position: the
    same clip(j - i, k) rows on keys and values), t5 (relative_attention_bias: the same buckets, bidirectional
    in the encoder and causal in the decoder, one table per stack), rotary (rotary_dim=0, interleaved pairs,
    rotary_base) and alibi (decoder only: -m_h (i - j) with the same slopes, unscaled)."""
    why = []
    for side in ("encoder", "decoder"):
        a = model[side]["self_attention"]
        if a["_target_"] != MHA:  # refused above, by its _target_
            continue
        method = a.get("position", "none")  # runs saved before position methods existed have none
        key = f"model.{side}.self_attention"
        if method != "none" and model[side]["positions"] != "none":
            why.append(f"model.{side}.positions={model[side]['positions']} with {key}.position={method} "
                       "(CTranslate2 adds no input positions to a stack whose attention carries them: set "
                       f"model.{side}.positions=none, as +model/position={method} does)")
        if method == "alibi" and side == "encoder":
            why.append(f"{key}.position=alibi (CTranslate2's encoder has no ALiBi, only its decoder: give the "
                       "encoder positions=sinusoidal or another method)")
        if method == "t5" and side == "decoder" and a["window"] != "causal":
            why.append(f"{key}.position=t5 with window={a['window']} (nmt's T5 buckets are then bidirectional, "
                       "CTranslate2's decoder buckets are causal: set window=causal)")
        if method == "t5" and not a["share_position_bias"] and model[side]["num_layers"] > 1:
            why.append(f"{key}.share_position_bias=false (CTranslate2 computes a stack's T5 bias once, from its "
                       "first layer's table: set share_position_bias=true, as T5 does)")
    return why


def sinusoid_table(d_model: int, n: int) -> torch.Tensor:
    """nmt's PositionEncoding (interleaved sin, cos) for positions 0..n-1 -> (n, d_model)."""
    from nmt.models.positions import PositionEncoding
    return PositionEncoding("sinusoidal", d_model, n)(torch.arange(n)[None], n - 1)[0]


def build_spec(trained):
    """The TransformerSpec of a loaded run, every weight copied."""
    from ctranslate2.specs import transformer_spec
    m, cfg = trained.model, trained.config.model
    enc, dec = m.encoder, m.decoder
    enc_att, dec_att = enc.layers[0].self_attention, dec.layers[0].self_attention
    spec = transformer_spec.TransformerSpec(  # check_exportable: the decoder's cross-attention has dec_heads too
        transformer_spec.TransformerEncoderSpec(len(enc.layers), enc_att.num_heads, pre_norm=True,
                                                **attention_options(enc_att, cfg["encoder"]["self_attention"])),
        transformer_spec.TransformerDecoderSpec(len(dec.layers), dec_att.num_heads, pre_norm=True, alignment_layer=-1,
                                                alignment_heads=dec_att.num_heads,  # return_attention: heads averaged
                                                **attention_options(dec_att, cfg["decoder"]["self_attention"])))
    copy_embeddings(spec.encoder, enc)
    copy_embeddings(spec.decoder, dec)
    for layer_spec, layer in zip(spec.encoder.layer, enc.layers):
        copy_self_attention(layer_spec.self_attention, layer.self_attention, layer.attn_block.norm)
        copy_ffn(layer_spec.ffn, layer.ff, layer.ff_block.norm)
    for layer_spec, layer in zip(spec.decoder.layer, dec.layers):
        copy_self_attention(layer_spec.self_attention, layer.self_attention, layer.self_block.norm)
        copy_cross_attention(layer_spec.attention, layer.cross_attention, layer.cross_block.norm)
        copy_ffn(layer_spec.ffn, layer.ff, layer.ff_block.norm)
    copy_norm(spec.encoder.layer_norm, enc.final_norm)
    copy_norm(spec.decoder.layer_norm, dec.final_norm)
    spec.decoder.projection.weight = m.generator.weight.detach().numpy()
    spec.decoder.projection.bias = m.generator.bias.detach().numpy()
    spec.register_source_vocabulary(trained.src_tok.pieces(list(range(len(trained.src_tok)))))
    spec.register_target_vocabulary(trained.tgt_tok.pieces(list(range(len(trained.tgt_tok)))))
    return spec


def attention_options(att, node: dict) -> dict:
    """A stack's self-attention (`att`: its first layer's MultiHeadAttention, `node`: the slot's config; every
    layer has the same settings) as keyword arguments of CTranslate2's TransformerEncoderSpec /
    TransformerDecoderSpec: its position method and its key/value head count (None: one per query head)."""
    kind = att.position.kind
    options = {"num_heads_kv": None if att.num_kv_heads == att.num_heads else att.num_kv_heads}
    if kind == "shaw":
        options["relative_position"] = True  # the tables are copied per layer (copy_self_attention)
    elif kind == "t5":
        options["relative_attention_bias"] = True
    elif kind == "rotary":  # rotary_dim 0: the whole head; interleaved pairs (x_2i, x_2i+1), as nmt's Rotary
        options.update(rotary_dim=0, rotary_interleave=True, rotary_base=float(node["rotary_base"]))
    elif kind == "alibi":  # -m_h (Tk - 1 - j): -m_h (i - j) up to a constant per row, which the softmax drops
        options.update(alibi=True, alibi_use_positive_positions=False, scale_alibi=False)
    return options


def copy_embeddings(side_spec, part) -> None:
    embeddings = side_spec.embeddings[0] if isinstance(side_spec.embeddings, list) else side_spec.embeddings
    embeddings.weight = part.embed.weight.detach().numpy()
    side_spec.scale_embeddings = True  # nmt multiplies by sqrt(d_model) (Embeddings(scale=True))
    if not hasattr(side_spec, "position_encodings"):  # the attention carries the positions: shaw, t5 (and in the
        return                                        # decoder rotary, alibi); an encoder's rotary ignores the table
    kind, d = part.positions.kind, part.embed.weight.size(1)
    if kind == "learned":
        table = part.positions.table.weight.detach()  # (max_positions, d)
    else:  # none: zeros, else CTranslate2 would add its own sinusoids
        table = sinusoid_table(d, MAX_POSITIONS) if kind == "sinusoidal" else torch.zeros(MAX_POSITIONS, d)
    side_spec.position_encodings.encodings = table.numpy()


def copy_norm(norm_spec, norm) -> None:
    norm_spec.gamma, norm_spec.beta = norm.weight.detach().numpy(), norm.bias.detach().numpy()


def copy_linear(linear_spec, *linears) -> None:
    """One CTranslate2 linear from nmt linears fused along the output dimension (q, k, v)."""
    linear_spec.weight = torch.cat([lin.weight.detach() for lin in linears]).numpy()
    linear_spec.bias = torch.cat([lin.bias.detach() for lin in linears]).numpy()


def copy_self_attention(att_spec, att, norm) -> None:
    copy_norm(att_spec.layer_norm, norm)
    copy_linear(att_spec.linear[0], att.q_proj, att.k_proj, att.v_proj)  # q (H dh), k and v (Hkv dh) rows each
    copy_linear(att_spec.linear[1], att.out_proj)
    position = att.position
    if position.kind == "shaw":  # (2k + 1, dh) each: CTranslate2 reads k from the row count
        att_spec.relative_position_keys = position.relative_position_keys.detach().numpy()
        att_spec.relative_position_values = position.relative_position_values.detach().numpy()
    elif position.kind == "t5":  # (num_buckets, H); every layer gets the stack's one table (share_position_bias)
        att_spec.relative_attention_bias = position.relative_attention_bias.weight.detach().numpy()
        att_spec.relative_attention_max_distance = np.int32(position.max_distance)


def copy_cross_attention(att_spec, att, norm) -> None:
    copy_norm(att_spec.layer_norm, norm)
    copy_linear(att_spec.linear[0], att.q_proj)
    copy_linear(att_spec.linear[1], att.k_proj, att.v_proj)
    copy_linear(att_spec.linear[2], att.out_proj)


def copy_ffn(ffn_spec, ff, norm) -> None:
    copy_norm(ffn_spec.layer_norm, norm)
    copy_linear(ffn_spec.linear_0, ff.net[0])
    copy_linear(ffn_spec.linear_1, ff.net[3])


def export_run(job: ExportJob) -> Path:
    """Write the CTranslate2 model directory `job.out` (refused if it exists and is not empty)."""
    try:
        from ctranslate2.converters.converter import Converter
    except ImportError:
        raise RunDirError("nmt-export needs CTranslate2: pip install ctranslate2") from None
    out = Path(job.out)
    if out.exists() and any(out.iterdir()):
        raise RunDirError(f"out={out} exists and is not empty; choose a new directory")
    trained = load_trained(Path(job.run_dir), job.checkpoint, pick_device("cpu"))
    check_exportable(trained.config.model)
    spec = build_spec(trained)

    class NmtConverter(Converter):
        def _load(self):
            return spec
    NmtConverter().convert(str(out), quantization=None if job.quantization == "float32" else job.quantization)
    for side in ("src", "tgt"):
        shutil.copy(Path(job.run_dir) / "tokenizer" / f"{side}.model", out / f"{side}.model")
    return out
