"""The one place where YAML becomes objects: build_model (data-dependent sizes meet the model config) and
build_corpus (a data.corpus node, its `_target_` the corpus class)."""
from __future__ import annotations

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from nmt.models.pointer import PointerGenerator
from nmt.models.seq2seq import Seq2Seq

FAMILIES = ("rnn", "transformer", "hybrid")
ATTENTION_SLOTS = ("self_attention", "cross_attention")  # Transformer encoder/decoder nodes


def _instantiate(node: dict, **kwargs) -> nn.Module:
    """hydra instantiate, surfacing the module's own ValueError (which names the config key)."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, ValueError):
            raise err.__cause__ from None
        raise


def as_node(cfg: dict | DictConfig) -> DictConfig:
    """A config node (a plain dict from nmt.runs.config, or a DictConfig in tests) as a DictConfig."""
    return cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)


def build_corpus(cfg: dict | DictConfig):
    """A corpus from its config node (`_target_` + arguments); no file is opened until `.load(split)`."""
    return _instantiate(as_node(cfg))


def build_attention(cfg: DictConfig, query_dim: int, key_dim: int) -> nn.Module:
    """Instantiate one attention config (its `label`, and an RNN decoder's `flow`, are not module
    arguments: labels name runs, the flow belongs to the decoder)."""
    node = OmegaConf.to_container(cfg, resolve=True)
    node.pop("label", None)  # runs trained before labels existed have none (see check_labels)
    node.pop("flow", None)  # read by build_model for the RNN decoder; Transformer slots have none
    node.pop("share_position_bias", None)  # read by build_part: ties the layers' T5 bias tables
    return _instantiate(node, query_dim=query_dim, key_dim=key_dim)


def build_part(cfg: DictConfig, name: str, vocab_size: int, pad_id: int, **kwargs) -> nn.Module:
    """Instantiate an encoder/decoder node (`name` = its config key, for error messages).

    A Transformer node's attention slots (ATTENTION_SLOTS) hold one attention config each; every
    slot becomes one module per layer (query_dim = key_dim = d_model), passed as a list under the
    slot's name, so the modules stay Hydra-free and each slot has its own heads/score/window.
    """
    node = OmegaConf.to_container(cfg, resolve=True)
    for slot in [s for s in ATTENTION_SLOTS if s in node]:
        attention = OmegaConf.create(node.pop(slot))
        if slot == "cross_attention" and attention.get("position", "none") != "none":
            raise ValueError(f"{name}.cross_attention.position={attention.position}: positions do not apply across "
                             "languages (queries on the target, keys on the source); set it to none and give the "
                             "self-attention slots the position method")
        try:
            kwargs[slot] = [build_attention(attention, node["d_model"], node["d_model"])
                            for _ in range(node["num_layers"])]
        except ValueError as err:  # attention modules name their keys model.attention.<key>
            raise ValueError(str(err).replace("model.attention.", f"{name}.{slot}.")) from None
        if attention.get("share_position_bias", False):
            share_position_bias(kwargs[slot])
    return _instantiate(node, vocab_size=vocab_size, pad_id=pad_id, **kwargs)


def share_position_bias(modules: list[nn.Module]) -> None:
    """T5 shares one relative attention bias table across a stack's layers (Raffel et al. 2020, Sec. 2.1): layer
    i > 0 of a slot takes layer 0's table, so it is one parameter (listed once by model.parameters()). Other
    position methods (and other attention types) keep their own."""
    tables = [getattr(getattr(m, "position", None), "relative_attention_bias", None) for m in modules]
    if tables and tables[0] is not None:
        for module in modules[1:]:
            module.position.relative_attention_bias = tables[0]


def attention_configs(cfg: DictConfig) -> dict[str, DictConfig]:
    """Every attention config of a model node, by its config key (model.attention, model.encoder...)."""
    if cfg.family == "transformer":
        return {f"model.{part}.{slot}": cfg[part][slot] for part in ("encoder", "decoder")
                for slot in ATTENTION_SLOTS if slot in cfg[part]}
    found = {"model.attention": cfg.attention}
    found.update({f"model.encoder.{s}": cfg.encoder[s] for s in ATTENTION_SLOTS if s in cfg.encoder})
    return found


def check_labels(cfg: dict | DictConfig) -> None:
    """A new run's attention configs must carry the `label` that names them in nmt-compare/TensorBoard."""
    for key, attention in attention_configs(as_node(cfg)).items():
        if not attention.get("label"):
            raise ValueError(f"{key} ({attention.get('_target_')}) has no `label`: add one to its YAML, e.g. "
                             "`label: global-${.score}/${.flow}`")


def check_rnn_depths(cfg: DictConfig, encoder: nn.Module) -> None:
    """An RNN decoder starts from the final states of the RNN encoder's top num_layers layers
    (RNNDecoder.init_state, through the bridge), so it can be at most as deep as that encoder. (A Transformer
    encoder has no final states, final_dim None: every decoder layer starts from the mean of its memory.)"""
    if encoder.final_dim is not None and cfg.decoder.num_layers > cfg.encoder.num_layers:
        raise ValueError(f"model.decoder.num_layers={cfg.decoder.num_layers} is more than model.encoder.num_layers="
                         f"{cfg.encoder.num_layers}: each decoder layer starts from one encoder layer's final state; "
                         "set model.encoder.num_layers >= model.decoder.num_layers")


def check_pointer(cfg: dict | DictConfig, joint: bool) -> None:
    """model.pointer=true needs an RNN decoder, and reads source ids as target ids, so both sides must come from
    one sentencepiece model (`joint` = data.tokenizer.joint; build_model passes "the vocabularies have one size",
    which two separate models of one size also pass). cfg = the `model` node. (Runs stored before model.pointer
    existed have none: no copy. The key is not `copy`, which DictConfig attribute access reads as its method.)"""
    cfg = as_node(cfg)
    if not cfg.get("pointer", False):
        return
    if cfg.family == "transformer":
        raise ValueError("model.pointer=true needs an RNN decoder (model=rnn or model=hybrid): the Transformer decoder "
                         "does not expose its cross-attention context and weights to a pointer; set model.pointer=false")
    if not joint:
        raise ValueError("model.pointer=true copies source pieces by their ids, which needs one vocabulary for both "
                         "sides: set data.tokenizer.joint=true (or model.pointer=false)")


def build_model(cfg: dict | DictConfig, src_vocab: int, tgt_vocab: int, pad_id: int) -> Seq2Seq:
    """cfg = the `model` node. Raises ValueError with the valid options on a bad config."""
    cfg = as_node(cfg)
    if cfg.family not in FAMILIES:
        raise ValueError(f"model.family must be one of {FAMILIES}, got {cfg.family!r}")
    check_pointer(cfg, joint=src_vocab == tgt_vocab)
    encoder = build_part(cfg.encoder, "model.encoder", src_vocab, pad_id)
    if cfg.family == "transformer":
        decoder = build_part(cfg.decoder, "model.decoder", tgt_vocab, pad_id, enc_dim=encoder.output_dim)
    else:  # rnn and hybrid: an RNN decoder with any attention of model/attention/
        if "flow" not in cfg.attention:
            raise ValueError("model.attention.flow is missing: an RNN decoder's attention needs flow: luong "
                             "(attend with h_t) or flow: bahdanau (attend with s_{t-1})")
        check_rnn_depths(cfg, encoder)
        attention = build_attention(cfg.attention, cfg.decoder.hidden_size, encoder.output_dim)
        flow = cfg.attention.flow
        final_dim = encoder.final_dim or encoder.output_dim  # None: a Transformer encoder
        decoder = build_part(cfg.decoder, "model.decoder", tgt_vocab, pad_id, attention=attention, flow=flow,
                             enc_dim=encoder.output_dim, enc_final_dim=final_dim)
    generator = nn.Linear(decoder.output_dim, tgt_vocab)
    if cfg.tie_embeddings:
        emb = decoder.embed.weight
        if emb.size(1) != decoder.output_dim:
            raise ValueError(
                f"model.tie_embeddings needs decoder emb_size == output size "
                f"({emb.size(1)} != {decoder.output_dim}); set model.tie_embeddings=false")
        generator.weight = emb
    if cfg.share_embeddings:
        if src_vocab != tgt_vocab:
            raise ValueError("model.share_embeddings needs a joint vocabulary (data.tokenizer.joint=true)")
        encoder.embed.table.weight = decoder.embed.table.weight
    # copy attention (model.pointer, checked above): the p_gen layer over [c_t; s_t; x_t] (See et al. 2017, Eq. 8)
    pointer = (PointerGenerator(encoder.output_dim, decoder.hidden_size, decoder.embed.weight.size(1))
               if cfg.get("pointer", False) else None)  # runs stored before model.pointer existed: none
    return Seq2Seq(encoder, decoder, generator, pointer)
