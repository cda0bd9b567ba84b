"""nmt-export of the position methods and grouped-query heads: what CTranslate2 runs as nmt computes it is
exported and scores alike, what it would compute differently is refused by name before anything is written.

Each exported variant is a small randomly initialised d=32 Transformer (2 + 2 layers, 4 heads), seeded, saved as
a run directory beside one pair of sentencepiece models (no training: the numbers, not the quality, are under
test). CTranslate2 float32 must give nmt's token log-probabilities within 1e-4 twice: teacher-forced over a
padded batch of fixed targets (score_batch: every position at once), and along its own greedy outputs, step
by step (translate_batch's per-step logits over the whole vocabulary: the incremental path, with its caches of
rotated keys and offsets of relative positions). A missing ctranslate2 fails under CI=true (dev extras)."""
import os
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers import TINY_RNN, TINY_TRANSFORMER, TOY_TRAIN, compose_cfg
from omegaconf import OmegaConf

import nmt
from nmt.decoding.forced import forced_batches
from nmt.data.tokenizer import SubwordTokenizer, train_sentencepiece
from nmt.models.build import build_model
from nmt.runs.export import ExportJob, check_exportable, export_run
from nmt.runs.run_dir import RunDirError

try:
    import ctranslate2
except ImportError:  # pragma: no cover - CI installs it with the dev extras
    ctranslate2 = None

WORDS = "der die das ein eine hund katze mann frau kind läuft spielt sitzt auf im park ball wasser rot blau".split()
SOURCES = ["ein hund läuft im park", "die katze sitzt", "ein kind spielt mit einem roten ball im wasser und "
           "die frau sitzt auf der bank", "mann", "das blaue wasser ist kalt"]
TARGETS = ["a dog runs in the park", "the cat sits", "a child plays with a red ball in the water while the woman "
           "sits on the bench", "man", "the blue water is cold"]
BASE = [o for o in TOY_TRAIN if o not in TINY_RNN] + TINY_TRANSFORMER + [
    "model.encoder.d_model=32", "model.encoder.ff_size=64", "model.decoder.ff_size=64",
    "model.encoder.self_attention.num_heads=4", "model.decoder.self_attention.num_heads=4",
    "model.decoder.cross_attention.num_heads=4"]
POSITION = {  # the +model/position=<method> YAML's settings, as overrides
    m: [f"model.{side}.{key}" for side in ("encoder", "decoder")
        for key in ("positions=none", f"self_attention.position={m}")] for m in ("shaw", "t5", "rotary")}
EXPORTED = {  # variant -> overrides of BASE
    "sinusoidal": [],  # the baseline: input positions, no method inside attention
    "no_positions": ["model.encoder.positions=none", "model.decoder.positions=none"],  # a zero table exported
    "shaw": POSITION["shaw"] + ["model.encoder.self_attention.max_relative_distance=3",
                                "model.decoder.self_attention.max_relative_distance=2"],
    "t5": POSITION["t5"] + [f"model.{s}.self_attention.{k}" for s in ("encoder", "decoder")
                            for k in ("num_buckets=8", "max_distance=12")],
    "rotary": POSITION["rotary"] + ["model.encoder.self_attention.rotary_base=100",
                                    "model.decoder.self_attention.rotary_base=500"],
    "alibi_decoder": ["model.decoder.positions=none", "model.decoder.self_attention.position=alibi"],
    "gqa": ["+model/heads=gqa"],  # 2 key/value heads for 4 query heads in every slot
    "mqa": ["+model/heads=mqa"],
    "rotary_gqa": POSITION["rotary"] + ["+model/heads=gqa"],
    "t5_mqa": POSITION["t5"] + ["+model/heads=mqa"],
}
REFUSED = {  # variant -> (overrides of BASE, the phrase of the refusal that names it)
    "alibi_encoder": (["+model/position=alibi"], "model.encoder.self_attention.position=alibi (CTranslate2's "
                                                 "encoder has no ALiBi"),
    "rotary_and_input_positions": (["model.encoder.self_attention.position=rotary"],
                                   "model.encoder.positions=sinusoidal with model.encoder.self_attention."
                                   "position=rotary (CTranslate2 adds no input positions"),
    "t5_decoder_global": (POSITION["t5"] + ["model.decoder.self_attention.window=global"],
                          "model.decoder.self_attention.position=t5 with window=global (nmt's T5 buckets are "
                          "then bidirectional, CTranslate2's decoder buckets are causal"),
    "t5_per_layer": (POSITION["t5"] + ["model.encoder.self_attention.share_position_bias=false"],
                     "model.encoder.self_attention.share_position_bias=false (CTranslate2 computes a stack's T5 "
                     "bias once"),
    "aan": (["model/slot@model.decoder.self_attention=aan"], "model.decoder.self_attention._target_=nmt.attention."
                                                             "AverageAttention (the average attention network: "
                                                             "CTranslate2's decoder has none)"),
    "cross_kv_heads": (["model.decoder.self_attention.num_kv_heads=2"], "model.decoder.cross_attention."
                       "num_kv_heads=4 differs from model.decoder.self_attention.num_kv_heads=2"),
}


def need_ctranslate2():
    if ctranslate2 is None:
        if os.environ.get("CI") == "true":
            pytest.fail("ctranslate2 missing: CI installs it with the dev extras")
        pytest.skip("pip install ctranslate2 (this test fails instead when CI=true)")


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    """Word-level sentencepiece models (src, tgt) trained on the test's own sentences."""
    tmp = tmp_path_factory.mktemp("spm")
    settings = {"model_type": "bpe", "vocab_size": 80, "character_coverage": 1.0, "input_sentence_size": 1000,
                "shuffle_input_sentence": False}
    paths = []
    for side, lines in (("src", SOURCES + [" ".join(WORDS)]), ("tgt", TARGETS)):
        (tmp / f"{side}.model").write_bytes(train_sentencepiece(lines * 4, settings, num_threads=1))
        paths.append(tmp / f"{side}.model")
    return [SubwordTokenizer.load(str(p)) for p in paths]


def variant_run(tmp, tokenizers, overrides: list[str], seed: int = 0):
    """A run directory holding a seeded random model of BASE + overrides (config.yaml, tokenizer/, best.pt)."""
    src_tok, tgt_tok = tokenizers
    swapped = any(o.startswith("model/slot@model.decoder.self_attention=") for o in overrides)  # no num_heads
    base = [o for o in BASE if not (swapped and o.startswith("model.decoder.self_attention."))]
    cfg = compose_cfg(base + overrides + [f"run_dir={tmp}", f"data.cache_dir={tmp / 'cache'}"])
    torch.manual_seed(seed)
    model = build_model(cfg.model, len(src_tok), len(tgt_tok), tgt_tok.pad_id)
    (tmp / "tokenizer").mkdir(parents=True)
    (tmp / "checkpoints").mkdir()
    for side, tok in (("src", src_tok), ("tgt", tgt_tok)):
        (tmp / "tokenizer" / f"{side}.model").write_bytes(open(tok.model_path, "rb").read())
    (tmp / "config.yaml").write_text(yaml.safe_dump(OmegaConf.to_container(cfg, resolve=True), sort_keys=False))
    torch.save({"model": model.state_dict(), "step": 0}, tmp / "checkpoints" / "best.pt")
    return tmp


def export(run, out, quantization="float32"):
    return export_run(ExportJob(str(run), "best", "ctranslate2", quantization, str(out)))


def ct2_pieces(tok, lines):
    return [tok.pieces(ids) for ids in tok.encode(lines)]


def ours_logprobs(model, src: list[str], tgt_pieces: list[list[str]]) -> list[np.ndarray]:
    """nmt's forced per-token log-probabilities (target pieces + eos) of each pair."""
    tok = model.trained.tgt_tok
    texts = tok.decode([[tok.pieces(range(len(tok))).index(p) for p in pieces] for pieces in tgt_pieces])
    return [np.array(r["token_logprobs"]) for r in model.score(src, texts)]


@pytest.mark.parametrize("variant", sorted(EXPORTED))
def test_exported_variant_scores_like_nmt(variant, tokenizers, tmp_path):
    """float32 export: CTranslate2's teacher-forced token log-probabilities (a padded batch of 5 pairs of 1 to
    20 words) and its greedy decoding's per-step log-probabilities over the whole vocabulary (max 25 steps)
    equal nmt's within 1e-4."""
    need_ctranslate2()
    torch.set_num_threads(1)
    run = variant_run(tmp_path / "run", tokenizers, EXPORTED[variant])
    model = nmt.load(run, device="cpu")
    translator = ctranslate2.Translator(str(export(run, tmp_path / "ct2")), device="cpu", intra_threads=1)
    src_tok, tgt_tok = tokenizers
    src_pieces = ct2_pieces(src_tok, SOURCES)
    forced = translator.score_batch(src_pieces, ct2_pieces(tgt_tok, TARGETS))
    for theirs, mine in zip(forced, ours_logprobs(model, SOURCES, ct2_pieces(tgt_tok, TARGETS))):
        np.testing.assert_allclose(np.array(theirs.log_probs), mine, atol=1e-4)
    greedy = translator.translate_batch(src_pieces, beam_size=1, max_decoding_length=25, min_decoding_length=0,
                                        return_logits_vocab=True)
    vocab = tgt_tok.pieces(range(len(tgt_tok)))
    for src, result in zip(SOURCES, greedy):
        ids = [vocab.index(p) for p in result.hypotheses[0]]
        theirs = np.stack([np.asarray(step) for step in result.logits[0]])  # (steps, V)
        theirs = theirs - np.log(np.exp(theirs - theirs.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
            - theirs.max(-1, keepdims=True)  # log_softmax
        mine = step_logprobs(model, src, ids)  # (len(ids) + 1, V)
        np.testing.assert_allclose(theirs, mine[: len(theirs)], atol=1e-4)


def step_logprobs(model, src: str, ids: list[int]) -> np.ndarray:
    """nmt's forced log-probabilities over the whole target vocabulary after bos and each of `ids`:
    (len(ids) + 1, V)."""
    t = model.trained
    tok = t.tgt_tok
    b = forced_batches(t.src_tok.encode([src]), [ids], tok.pad_id, tok.bos_id, tok.eos_id, 1, "cpu")[0]
    with torch.no_grad():
        logits = t.model(b.src, b.src_lengths, b.tgt_in)[0].logits  # (1, len(ids) + 1, V)
    return F.log_softmax(logits.float(), -1)[0].numpy()



@pytest.mark.parametrize("variant", sorted(REFUSED))
def test_what_ctranslate2_would_compute_differently_is_refused_by_name(variant, tokenizers, tmp_path):
    """The run loads and translates with nmt, but nmt-export names the setting CTranslate2 would compute
    differently and writes nothing: `out` is not created."""
    overrides, phrase = REFUSED[variant]
    run = variant_run(tmp_path / "run", tokenizers, overrides)
    with pytest.raises(RunDirError, match=re.escape(phrase)):
        export(run, tmp_path / "ct2")
    assert not (tmp_path / "ct2").exists()
