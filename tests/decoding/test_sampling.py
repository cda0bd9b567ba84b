"""Sampling (nmt.decoding.sampling, decode.sampling): top-k with k = 1 and top-p as p -> 0 are greedy
search; many samples follow the model's distribution after the temperature and the cut (chi-square);
decode.seed alone decides the samples; DecodeSettings refuses sampling with a beam or an n-best list."""
import math

import pytest
import torch
from helpers import BOS, EOS, PAD, compose_cfg
from omegaconf import OmegaConf

from nmt.decoding import DecodeSettings, greedy_decode, sample_decode, translate_ids
from nmt.decoding.sampling import top_p


def sample(model, src, src_len, *, sampling: str, topk: int = 10 ** 6, topp: float = 1.0, temperature: float = 1.0,
           seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return sample_decode(model, src, src_len, BOS, EOS, 1.5, 5, sampling=sampling, topk=topk, topp=topp,
                         temperature=temperature, generator=generator)


@pytest.mark.parametrize("which", ["half_trained", "half_trained_transformer"])
@pytest.mark.parametrize("cut", [{"sampling": "topk", "topk": 1}, {"sampling": "topp", "topp": 1e-6}],
                         ids=["topk=1", "topp=1e-6"])
def test_topk_one_and_topp_near_zero_are_greedy(which, cut, request):
    """One token left to draw from: the arg-max, whatever the temperature; the scores are greedy's (the
    model's own log-probabilities, not the tempered ones)."""
    model, src, src_len = request.getfixturevalue(which)
    greedy = greedy_decode(model, src, src_len, BOS, EOS, 1.5, 5)
    sampled = sample(model, src, src_len, temperature=3.0, **cut)
    assert sampled.tokens == greedy.tokens
    torch.testing.assert_close(sampled.scores, greedy.scores)


# --- a model whose first token has a known distribution, then eos: each output is one draw -------------

V = 8
FIRST = {4: 0.45, 5: 0.25, 6: 0.15, 7: 0.10, EOS: 0.05}  # tokens 0-2 (pad, unk, bos) have probability 0


class FirstTokenModel(torch.nn.Module):
    """p(first token) = FIRST, p(eos | later steps) = 1; ignores the source."""

    def __init__(self):
        super().__init__()
        first = torch.full((V,), float("-inf"))
        for tok, p in FIRST.items():
            first[tok] = math.log(p)
        then = torch.full((V,), float("-inf"))
        then[EOS] = 0.0
        self.register_buffer("logits", torch.stack([first, then]))  # (2, V)

    def encode(self, src, src_lengths):
        from nmt.models.seq2seq import EncoderOutput
        return EncoderOutput(torch.zeros(src.size(0), src.size(1), 1), src != PAD)

    def init_state(self, enc):
        return {"t": torch.zeros(enc.memory.size(0), dtype=torch.long)}

    def decode(self, tgt_in, enc, state):
        from nmt.models.seq2seq import DecoderOutput
        logits = self.logits[state["t"].clamp(max=1)]  # (N, V)
        return DecoderOutput(logits[:, None], {"t": state["t"] + 1}, logits=logits[:, None])


def expected(sampling: str, k: int, p: float, temperature: float) -> dict[int, float]:
    """FIRST tempered (p^(1/T), renormalised), then cut to the top k or to the nucleus of mass p, renormalised."""
    tempered = {tok: q ** (1 / temperature) for tok, q in FIRST.items()}
    ranked = sorted(tempered, key=tempered.get, reverse=True)
    z = sum(tempered.values())
    if sampling == "topk":
        kept = ranked[:k]
    else:
        mass = [sum(tempered[t] for t in ranked[:i]) / z for i in range(len(ranked))]  # before each token
        kept = [t for t, m in zip(ranked, mass) if m < p]
    total = sum(tempered[t] for t in kept)
    return {t: tempered[t] / total for t in kept}


@pytest.mark.parametrize("p,nucleus", [(0.5, [7]), (0.75, [7, 1]), (0.9375, [7, 1, 4]), (0.94, [7, 1, 4, 2]),
                                       (1.0, [7, 1, 4, 2])])
def test_topp_nucleus_stops_where_its_mass_reaches_p_exactly(p, nucleus):
    """Probabilities that are binary fractions (exact sums): the nucleus is the fewest most probable tokens
    whose mass reaches p, so at p = 0.75 = 0.5 + 0.25 the third token is left out (Holtzman et al. 2020, Eq. 2)."""
    probs = torch.zeros(1, 9)
    probs[0, [7, 1, 4, 2]] = torch.tensor([0.5, 0.25, 0.1875, 0.0625])  # (1, V) out of vocabulary order
    logits = probs.log()                                              # (1, V), -inf where probability 0
    kept, ids = top_p(logits, p)                                      # (1, V) each, largest first
    assert ids[0, : len(nucleus)].tolist() == nucleus
    assert ids[0][torch.isfinite(kept[0])].tolist() == nucleus


# chi-square critical values at significance 0.001 by degrees of freedom (scipy.stats.chi2.ppf(0.999, df))
CHI2_999 = {1: 10.828, 2: 13.816, 3: 16.266, 4: 18.467}


@pytest.mark.parametrize("sampling,k,p,temperature", [
    ("topk", V, 1.0, 1.0),   # the whole distribution as it is
    ("topk", 2, 1.0, 1.0),   # {4, 5} renormalised
    ("topp", V, 0.75, 1.0),  # nucleus {4, 5, 6}: mass before 6 is 0.70 < 0.75, before 7 0.85
    ("topp", V, 0.75, 2.0),  # tempered first: the nucleus grows to {4, 5, 6, 7} (mass before 7 ~0.74)
    ("topk", 3, 1.0, 0.5),   # sharper: p^2 over {4, 5, 6}
], ids=["full", "topk2", "topp.75", "topp.75-T2", "topk3-T.5"])
def test_sample_frequencies_match_the_distribution(sampling, k, p, temperature):
    """20,000 draws at a fixed seed: the chi-square statistic of the counts against the expected
    distribution stays below its 0.999 quantile, and no token outside the cut is ever drawn."""
    n = 20_000
    src, src_len = torch.full((n, 2), 9), torch.full((n,), 2)
    hyp = sample(FirstTokenModel(), src, src_len, sampling=sampling, topk=k, topp=p, temperature=temperature)
    drawn = [toks[0] if toks else EOS for toks in hyp.tokens]
    want = expected(sampling, k, p, temperature)
    counts = {tok: drawn.count(tok) for tok in set(drawn) | set(want)}
    assert set(counts) == set(want), f"drew tokens outside the cut: {sorted(set(counts) - set(want))}"
    chi2 = sum((counts[t] - n * q) ** 2 / (n * q) for t, q in want.items())
    assert chi2 < CHI2_999[len(want) - 1], (chi2, counts, want)
    # the scores are the model's log-probability of the draw (+ eos, probability 1), untempered
    torch.testing.assert_close(hyp.scores, torch.tensor([math.log(FIRST[t]) for t in drawn]))


def settings(**changes) -> DecodeSettings:
    """The YAML's decode settings (configs/decode/default.yaml) with changes."""
    return DecodeSettings(**{**OmegaConf.to_container(compose_cfg([]).decode), **changes})


def translate_with_seed(seed: int, global_seed: int) -> list[list[int]]:
    """300 inputs through translate_ids (several batches) after scrambling the global RNG."""
    torch.manual_seed(global_seed)
    torch.rand(7)
    decode = settings(beam_size=1, sampling="topp", topp=1.0, temperature=1.0, seed=seed, max_sentences=64)
    hyp = translate_ids(FirstTokenModel(), [[9, 9]] * 300, decode, pad_id=PAD, bos_id=BOS, eos_id=EOS,
                        device=torch.device("cpu"))
    return hyp.tokens


def test_the_seed_alone_decides_the_samples():
    """decode.seed seeds the decode's own generator: the same seed gives the same samples whatever the
    global RNG did before, another seed other samples."""
    first = translate_with_seed(3, global_seed=0)
    assert translate_with_seed(3, global_seed=1) == first
    assert translate_with_seed(4, global_seed=0) != first
    assert len({tuple(t) for t in first}) == len(FIRST)  # 300 draws: every token shows up


@pytest.mark.parametrize("beam_size,nbest", [(5, 1), (5, 3), (1, 2)])
def test_sampling_with_a_beam_or_nbest_is_refused_naming_the_keys(beam_size, nbest):
    """One drawn output per input: a beam or an n-best list with sampling is refused before any decoding,
    naming decode.sampling, decode.beam_size and decode.nbest (not only the nbest <= beam_size check)."""
    message = (rf"decode.sampling=topk draws one output per input: it needs decode.beam_size=1 and "
               rf"decode.nbest=1, got decode.beam_size={beam_size} and decode.nbest={nbest}")
    with pytest.raises(ValueError, match=message):
        settings(sampling="topk", beam_size=beam_size, nbest=nbest)
    assert settings(sampling="topk", beam_size=1, nbest=1).sampling == "topk"
    assert settings(sampling="none", beam_size=5, nbest=3).nbest == 3


@pytest.mark.parametrize("change,message", [
    ({"sampling": "nucleus"}, "decode.sampling must be one of none, topk, topp; got 'nucleus'"),
    ({"topk": 0}, r"decode.topk must be >= 1, got 0"),
    ({"topp": 0.0}, r"decode.topp must be in \(0, 1\], got 0.0"),
    ({"topp": 1.5}, r"decode.topp must be in \(0, 1\], got 1.5"),
    ({"temperature": 0.0}, "decode.temperature must be > 0, got 0.0"),
])
def test_bad_sampling_values_are_refused_naming_the_key(change, message):
    with pytest.raises(ValueError, match=message):
        settings(beam_size=1, **change)
