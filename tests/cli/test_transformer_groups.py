"""+model/position and +model/heads set Transformer slots: on an RNN or hybrid model nmt-train refuses them in one
line naming the fix (before, an interpolation error named a missing 'window' key), and writes nothing."""
import pytest
from helpers import toy_cfg

from nmt.cli.train import run_settings


@pytest.mark.parametrize("overrides", [["+model/position=alibi"], ["+model/heads=gqa"]])
def test_transformer_groups_on_an_rnn_decoder_are_refused_naming_the_fix(tmp_path, overrides):
    with pytest.raises(ValueError, match=r"use them with model=transformer or \+experiment=self"):
        run_settings(toy_cfg(tmp_path / "run", tmp_path / "cache", overrides))
    assert not (tmp_path / "run").exists()
