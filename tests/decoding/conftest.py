"""Models for the search tests (test_search, test_sampling): trained a little on real pairs."""
import pytest
import torch
from helpers import TINY_TRANSFORMER, overfit, real_batch, tiny_model


@pytest.fixture(scope="package")
def half_trained(real_pairs):
    """Trained a little: peaked enough to be realistic, not enough to make search trivial."""
    torch.manual_seed(1)
    sv, tv, src, src_len, tgt_in, tgt_out = real_batch(real_pairs)
    model = tiny_model(["model/attention=luong_general"], len(sv), len(tv))
    overfit(model, src, src_len, tgt_in, tgt_out, steps=25)
    return model.eval(), src, src_len


@pytest.fixture(scope="package")
def half_trained_transformer(real_pairs):
    torch.manual_seed(1)
    sv, tv, src, src_len, tgt_in, tgt_out = real_batch(real_pairs)
    model = tiny_model([], len(sv), len(tv), base=TINY_TRANSFORMER)
    overfit(model, src, src_len, tgt_in, tgt_out, steps=25)
    return model.eval(), src, src_len
