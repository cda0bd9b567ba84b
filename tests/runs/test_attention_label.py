"""attention_label names what differs between runs: nmt-compare, TensorBoard HParams and plots group by it."""
from helpers import compose_cfg
from omegaconf import OmegaConf

from nmt.runs.trained import attention_label


def label(overrides: list[str]) -> str:
    return attention_label(OmegaConf.to_container(compose_cfg(overrides).model, resolve=True))


def test_transformer_variants_get_names_of_their_own():
    base = label(["+experiment=self"])
    assert base == "transformer self:global-scaled_dot x4 cross:global-scaled_dot x4"  # older runs keep their name
    variants = {name: label(["+experiment=self", *extra]) for name, extra in {
        "alibi": ["+model/position=alibi"], "gqa": ["+model/heads=gqa"], "mqa": ["+model/heads=mqa"]}.items()}
    variants["aan"] = label(["+experiment=aan"])  # the Transformer recipe with an average attention decoder
    assert "dec:" in variants["aan"] and " kv2" in variants["gqa"] and " kv1" in variants["mqa"]
    assert len({base, *variants.values()}) == 1 + len(variants), variants
