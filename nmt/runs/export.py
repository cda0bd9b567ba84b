"""nmt-export: a trained Transformer run as a CTranslate2 model directory (fast CPU/GPU inference, int8).

Converted through CTranslate2's own spec API (ctranslate2.specs.TransformerSpec), weights copied one by
one: embeddings (scaled by sqrt(d), as nmt does), nmt's interleaved sinusoidal (or learned) positions as
an explicit table, per layer the pre-norm layer norms, fused q/k/v (self) and q + fused k/v (cross)
projections with their biases, the feed-forward, the final norms and the generator. The sentencepiece
models are copied beside it (src.model, tgt.model). What CTranslate2 cannot run (RNN decoders, local /
hard / non-scaled-dot / non-softmax attention, sliding windows, a causal encoder or cross-attention, post-norm,
a cross-attention head count other than the decoder self-attention's) is refused by name before anything is written.
The encoder's head count may differ from the decoder's.

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
        if a["_target_"] != "nmt.attention.MultiHeadAttention":
            why.append(f"{key}._target_={a['_target_']} (CTranslate2 runs nmt.attention.MultiHeadAttention)")
            continue
        if a["score"] != "scaled_dot":
            why.append(f"{key}.score={a['score']} (CTranslate2 runs scaled_dot only)")
        if a["window"] not in windows:
            why.append(f"{key}.window={a['window']} (CTranslate2 runs window={' or '.join(windows)} there)")
        if a.get("normaliser", "softmax") != "softmax":  # runs saved before the key existed have none: softmax
            why.append(f"{key}.normaliser={a['normaliser']} (CTranslate2 runs softmax only)")
    self_heads, cross_heads = (model["decoder"][s]["num_heads"] for s in ("self_attention", "cross_attention"))
    if self_heads != cross_heads:  # CTranslate2's decoder has one head count for both of its attentions
        why.append(f"model.decoder.cross_attention.num_heads={cross_heads} differs from "
                   f"model.decoder.self_attention.num_heads={self_heads} (CTranslate2's decoder has one head "
                   "count; the encoder's may differ)")
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
    enc_heads, dec_heads = cfg["encoder"]["self_attention"]["num_heads"], cfg["decoder"]["self_attention"]["num_heads"]
    spec = transformer_spec.TransformerSpec(  # check_exportable: the decoder's cross-attention has dec_heads too
        transformer_spec.TransformerEncoderSpec(len(enc.layers), enc_heads, pre_norm=True),
        transformer_spec.TransformerDecoderSpec(len(dec.layers), dec_heads, pre_norm=True, alignment_layer=-1,
                                                alignment_heads=dec_heads))  # return_attention: heads averaged
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


def copy_embeddings(side_spec, part) -> None:
    embeddings = side_spec.embeddings[0] if isinstance(side_spec.embeddings, list) else side_spec.embeddings
    embeddings.weight = part.embed.weight.detach().numpy()
    side_spec.scale_embeddings = True  # nmt multiplies by sqrt(d_model) (Embeddings(scale=True))
    learned, d = part.positions.kind == "learned", part.embed.weight.size(1)
    table = part.positions.table.weight.detach() if learned else sinusoid_table(d, MAX_POSITIONS)  # (rows, d)
    side_spec.position_encodings.encodings = table.numpy()


def copy_norm(norm_spec, norm) -> None:
    norm_spec.gamma, norm_spec.beta = norm.weight.detach().numpy(), norm.bias.detach().numpy()


def copy_linear(linear_spec, *linears) -> None:
    """One CTranslate2 linear from nmt linears fused along the output dimension (q, k, v)."""
    linear_spec.weight = torch.cat([lin.weight.detach() for lin in linears]).numpy()
    linear_spec.bias = torch.cat([lin.bias.detach() for lin in linears]).numpy()


def copy_self_attention(att_spec, att, norm) -> None:
    copy_norm(att_spec.layer_norm, norm)
    copy_linear(att_spec.linear[0], att.q_proj, att.k_proj, att.v_proj)
    copy_linear(att_spec.linear[1], att.out_proj)


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
