"""Greedy and batched beam search over the Seq2Seq decode signature."""
from nmt.decoding.beam import beam_search
from nmt.decoding.greedy import Hypotheses, greedy_decode
from nmt.decoding.translate import translate_ids

__all__ = ["Hypotheses", "greedy_decode", "beam_search", "translate_ids"]
