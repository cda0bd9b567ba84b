"""Test helpers: compose the real configs with tiny sizes; a word-level vocabulary for real pairs."""
from __future__ import annotations

import torch
from hydra import compose, initialize_config_dir

from nmt.cli.common import config_dir, register_resolvers
from nmt.models.build import build_model

PAD, UNK, BOS, EOS = 0, 1, 2, 3

TINY_RNN = ["model.encoder.emb_size=16", "model.encoder.hidden_size=16", "model.decoder.emb_size=16",
            "model.decoder.hidden_size=24", "model.encoder.dropout=0.0", "model.decoder.dropout=0.0",
            "model.tie_embeddings=false"]

TINY_TRANSFORMER = ["model=transformer", "model.encoder.d_model=16", "model.encoder.ff_size=32",
                    "model.encoder.num_layers=2", "model.decoder.ff_size=32", "model.decoder.num_layers=2",
                    "model.encoder.self_attention.num_heads=2", "model.decoder.self_attention.num_heads=2",
                    "model.decoder.cross_attention.num_heads=2", "model.encoder.dropout=0.0",
                    "model.decoder.dropout=0.0"]


def compose_cfg(overrides: list[str], name: str = "train"):
    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def train(cfg, callbacks=()):
    """What nmt-train does with a composed config: typed settings once (nmt.cli.train.run_settings), then
    nmt.training.session.train."""
    from nmt.cli.train import run_settings
    from nmt.training import session
    return session.train(run_settings(cfg), callbacks)


def tiny_model(overrides: list[str], src_vocab: int = 30, tgt_vocab: int = 30, base=TINY_RNN):
    cfg = compose_cfg(["trainer=cpu", *base, *overrides], "train")
    return build_model(cfg.model, src_vocab, tgt_vocab, PAD)


class WordVocab:
    """Whitespace tokens -> ids, with the sentencepiece special ids' layout."""

    def __init__(self, sentences: list[str]):
        words = sorted({w for s in sentences for w in s.split()})
        self.itos = ["<pad>", "<unk>", "<s>", "</s>", *words]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self):
        return len(self.itos)

    def encode(self, s: str) -> list[int]:
        return [self.stoi.get(w, UNK) for w in s.split()]


def pad_batch(seqs: list[list[int]], bos: bool = False, eos: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (B, T) padded ids, (B,) lengths."""
    seqs = [([BOS] if bos else []) + s + ([EOS] if eos else []) for s in seqs]
    out = torch.full((len(seqs), max(map(len, seqs))), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s)
    return out, torch.tensor([len(s) for s in seqs])


def real_batch(pairs: list[tuple[str, str]]):
    """Word-level tensors for real pairs: src (+eos), tgt_in (bos+), tgt_out (+eos)."""
    sv, tv = WordVocab([s for s, _ in pairs]), WordVocab([t for _, t in pairs])
    src, src_len = pad_batch([sv.encode(s) for s, _ in pairs], eos=True)
    tgt_in, _ = pad_batch([tv.encode(t) for _, t in pairs], bos=True)
    tgt_out, _ = pad_batch([tv.encode(t) for _, t in pairs], eos=True)
    return sv, tv, src, src_len, tgt_in, tgt_out


def overfit(model, src, src_len, tgt_in, tgt_out, steps: int, lr: float = 0.01) -> float:
    """Full-batch Adam through the trainer's own train_step; returns the final mean token NLL."""
    from nmt.data.batching import Batch
    from nmt.training.step import StepParts, train_step
    ntok = int((tgt_out != PAD).sum())
    batch = Batch(src, src_len, tgt_in, tgt_out, torch.arange(len(src)), ntok)
    parts = StepParts(model, model, torch.optim.Adam(model.parameters(), lr=lr), PAD, label_smoothing=0.0,
                      clip_grad_norm=1.0, amp=False, device=torch.device("cpu"), world=1)
    model.train()
    for _ in range(steps):
        out = train_step(parts, [batch], ntok)
    return float(out["nll_sum"]) / ntok


TOY_TRAIN = ["data=toy", "data.corpus.size=300", "data.corpus.eval_size=20", "trainer=cpu",
             *TINY_RNN, "trainer.max_tokens=400", "trainer.log_every=2", "trainer.valid_every=1000",
             "trainer.save_every=5", "decode.beam_size=2", "logger.progress_bar=false",
             "optim.warmup_steps=5", "trainer.keep_last=3"]


def toy_cfg(run_dir, cache_dir, overrides: list[str]):
    """A composed train config on the generated toy task with a tiny RNN."""
    return compose_cfg([*TOY_TRAIN, f"run_dir={run_dir}", f"data.cache_dir={cache_dir}", *overrides])


def tb_scalars(run_dir, tag: str) -> dict[int, float]:
    """step -> value of a scalar, read back with TensorBoard's own reader (purged steps dropped)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars(tag)}


class ExplodingCorpus:
    """A corpus config target that fails the test if any split is read (data.corpus._target_)."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def load(self, split: str):
        raise AssertionError(f"the corpus was read (split {split!r}) before the config was validated")


def raised(call) -> type | None:
    """The type of what call() raises, or None. Catches pytest's skip and fail too (BaseExceptions), so a
    test can assert that something *fails* under CI: inside pytest.raises(fail.Exception) an unexpected
    skip would escape and report the test as skipped instead of failed."""
    try:
        call()
    except BaseException as e:  # noqa: BLE001 - skip and fail are BaseExceptions
        return type(e)
    return None


def job_cfg(overrides: list[str], name: str):
    """nmt-align's / nmt-explain's typed settings from a command line, as their entry points build them."""
    from nmt.alignment.explain import ExplainJob
    from nmt.alignment.pipeline import AlignJob
    from nmt.cli.common import job
    return job({"align": AlignJob, "explain": ExplainJob}[name], compose_cfg(overrides, name))
