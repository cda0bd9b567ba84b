"""build_model: the one place where data-dependent sizes meet the model config."""
from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from nmt.models.seq2seq import Seq2Seq

FAMILIES = ("rnn", "transformer", "hybrid")


def build_attention(cfg: DictConfig, query_dim: int, key_dim: int) -> tuple[nn.Module, str]:
    """Instantiate one attention slot; returns (module, RNN decoder flow)."""
    node = OmegaConf.to_container(cfg, resolve=True)
    flow = node.pop("flow", "luong")
    return instantiate(node, query_dim=query_dim, key_dim=key_dim), flow


def build_model(cfg: DictConfig, src_vocab: int, tgt_vocab: int, pad_id: int) -> Seq2Seq:
    """cfg = the `model` node. Raises ValueError with the valid options on a bad config."""
    if cfg.family not in FAMILIES:
        raise ValueError(f"model.family must be one of {FAMILIES}, got {cfg.family!r}")
    encoder = instantiate(cfg.encoder, vocab_size=src_vocab, pad_id=pad_id)
    if cfg.family == "transformer":
        decoder = instantiate(cfg.decoder, vocab_size=tgt_vocab, pad_id=pad_id,
                              enc_dim=encoder.output_dim)
    else:  # rnn and hybrid: an RNN decoder with any attention of model/attention/
        attention, flow = build_attention(cfg.attention, cfg.decoder.hidden_size, encoder.output_dim)
        final_dim = getattr(encoder, "final_dim", None) or encoder.output_dim
        decoder = instantiate(cfg.decoder, vocab_size=tgt_vocab, pad_id=pad_id, attention=attention,
                              flow=flow, enc_dim=encoder.output_dim, enc_final_dim=final_dim)
    generator = nn.Linear(decoder.output_dim, tgt_vocab)
    if cfg.tie_embeddings:
        emb = decoder.embed.weight
        if emb.size(1) != decoder.output_dim:
            raise ValueError(
                f"model.tie_embeddings needs decoder emb_size == output size "
                f"({emb.size(1)} != {decoder.output_dim}); set model.tie_embeddings=false")
        generator.weight = emb
    if cfg.get("share_embeddings", False):
        if src_vocab != tgt_vocab:
            raise ValueError("model.share_embeddings needs a joint vocabulary (data.tokenizer.joint=true)")
        encoder.embed.table.weight = decoder.embed.table.weight
    return Seq2Seq(encoder, decoder, generator)
