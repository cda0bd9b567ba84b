"""Greedy search, sampling and batched beam search over the Seq2Seq decode signature; DecodeSettings
(configs/decode/)."""
from nmt.decoding.beam import beam_search
from nmt.decoding.greedy import Hypotheses, greedy_decode
from nmt.decoding.sampling import sample_decode
from nmt.decoding.translate import (DecodeSettings, Translations, decode_texts, nbest_lines, translate_ids,
                                   translate_lines)

__all__ = ["Hypotheses", "DecodeSettings", "Translations", "greedy_decode", "sample_decode", "beam_search",
           "translate_ids", "decode_texts", "translate_lines", "nbest_lines"]
