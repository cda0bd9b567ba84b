"""Slots: the typed names of attention maps. Models emit them, name the module behind each, and declare
the local windows (the contract's window_half_width) that the explorer draws."""
import pytest
import torch
from helpers import TINY_RNN, TINY_TRANSFORMER, tiny_model

from nmt.attention.slot import Slot


def test_a_slot_reads_its_name_and_writes_it_back():
    s = Slot("dec.2.cross")
    assert (s.side, s.layer, s.kind, s.is_cross, s.keys_are_source, s.queries_are_source) == \
        ("dec", 2, "cross", True, True, False)
    assert Slot.of("dec", 2, "cross") == s == "dec.2.cross" and str(s) == "dec.2.cross"
    rnn = Slot("cross")
    assert (rnn.side, rnn.layer, rnn.is_cross, rnn.depth) == ("dec", None, True, -1)
    enc, dec_self = Slot("enc.0.self"), Slot("dec.1.self")
    assert enc.keys_are_source and enc.queries_are_source and not enc.is_cross
    assert not dec_self.keys_are_source and not dec_self.queries_are_source and dec_self.depth == 1
    assert type(str(s)) is str and {s: 1}["dec.2.cross"] == 1  # a plain str key finds it


@pytest.mark.parametrize("bad", ["enc.0.cross", "dec.x.self", "cross.1", "dec.1", "", "dec.1.cross:mean"])
def test_a_bad_slot_name_is_refused_naming_the_valid_ones(bad):
    with pytest.raises(ValueError, match="enc.<i>.self, dec.<i>.self, dec.<i>.cross or cross"):
        Slot(bad)


def maps_of(model):
    src, lengths = torch.randint(4, 20, (2, 5)), torch.tensor([5, 3])
    out, enc = model.eval()(src, lengths, torch.randint(4, 20, (2, 4)), need_weights=True)
    return {**enc.attention, **out.attention}


@pytest.mark.parametrize("overrides, base", [(["model/attention=local_p"], TINY_RNN),
                                             (["model.encoder.self_attention.window=local",
                                               "model.encoder.self_attention.half_width=2"], TINY_TRANSFORMER)],
                         ids=["rnn_local_p", "transformer"])
def test_every_map_is_keyed_by_a_slot_with_its_module_and_window(overrides, base):
    model = tiny_model(overrides, base=base)
    maps, modules = maps_of(model), model.attention_modules()
    assert set(maps) == set(modules) and all(type(k) is Slot for k in maps)
    windows = model.attention_windows()
    if "rnn" in str(type(model.decoder)).lower():
        assert windows == {"cross": 10}
    else:
        assert windows == {"enc.0.self": 2, "enc.1.self": 2}
