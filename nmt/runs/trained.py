"""A trained run loaded back from its directory: model, tokenizers, config and corpus splits; and the short
name of its attention (how runs are labelled in nmt-compare, TensorBoard HParams and plots)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from nmt.common import file_sha256
from nmt.data.corpus import CorpusError
from nmt.data.tokenizer import SubwordTokenizer
from nmt.models.build import build_model, build_corpus
from nmt.models.ensemble import Ensemble
from nmt.models.seq2seq import Seq2Seq
from nmt.runs import checkpoint as ckpt
from nmt.runs.config import RunConfig
from nmt.runs.run_dir import RunDirError


@dataclass
class TrainedRun:
    config: RunConfig        # the run's resolved config.yaml (data paths absolute, or moved by data_root)
    model: Seq2Seq
    src_tok: SubwordTokenizer
    tgt_tok: SubwordTokenizer
    step: int

    def load_split(self, split: str):
        """The run's corpus split `split` (a key of data.splits, or a corpus split name) as a datasets.Dataset
        with columns src, tgt. A missing corpus names the fix that works for every tool: data_root=."""
        data = self.config.data
        try:
            return build_corpus(data.corpus).load(data.split_name(split))
        except CorpusError as e:  # the corpus's own hint names nmt-train's keys (data.root, NMT_DATA_DIR)
            raise CorpusError(f"{str(e).split('; set data.root=')[0]}\n  the run reads its corpus from "
                              f"data.root={data.root}; pass data_root=<the directory that holds it>") from e


def checkpoint_path(run_dir: Path, which: str) -> Path:
    """which = 'best' | a name in <run>/checkpoints without .pt (avg_last5 from nmt-average, step_500) |
    a path to a .pt file; the name is looked up first."""
    named = run_dir / "checkpoints" / f"{which}.pt"
    path = named if named.is_file() or which == "best" else Path(which)
    if not path.is_file():
        looked = str(named) if path == named else f"{named} or {path}"
        names = sorted(p.stem for p in (run_dir / "checkpoints").glob("*.pt"))
        raise RunDirError(f"checkpoint={which}: no file {looked}; use checkpoint=best|last|<a name in "
                          f"{run_dir / 'checkpoints'}: {', '.join(names) or 'none there'}>|<path to .pt>")
    return path


def checkpoint_label(which: str) -> str:
    """A checkpoint choice as a file-name part: best, last and names (avg_last5) as given, a path as 'ckpt'."""
    return which if which.replace("_", "").replace("-", "").isalnum() else "ckpt"


def load_trained(run_dir: Path, which: str, device: torch.device, data_root: str | None = None) -> TrainedRun:
    """which = 'best' | 'last' | a name in <run>/checkpoints (avg_last5) | a checkpoint path (checkpoint_path);
    data_root (not None) moves the stored corpus paths."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise RunDirError(f"run_dir={run_dir} is not a run directory (no config.yaml); pass the directory "
                          "nmt-train wrote (outputs/<date>/<time>, or the run_dir= you gave it)")
    config = RunConfig.load(run_dir / "config.yaml")
    if data_root is not None:
        config = config.with_data(config.data.rebased(data_root))
    src_tok = SubwordTokenizer.load(str(run_dir / "tokenizer" / "src.model"))
    tgt_tok = SubwordTokenizer.load(str(run_dir / "tokenizer" / "tgt.model"))
    if which == "last":
        found = ckpt.load_latest(run_dir / "checkpoints")
        if found is None:
            raise RunDirError(f"no loadable checkpoints/step_*.pt in {run_dir}")
        state = found[1]
    else:
        state = ckpt.load(checkpoint_path(run_dir, which))
    model = build_model(config.model, len(src_tok), len(tgt_tok), tgt_tok.pad_id)
    model.load_state_dict(state["model"])
    step = state.get("step", state.get("progress", {}).get("step", 0))
    return TrainedRun(config, model.to(device).eval(), src_tok, tgt_tok, step)


def load_runs(run_dirs, which: str, device: torch.device, data_root: str | None = None) -> TrainedRun:
    """One run dir (a str or path): load_trained. A list of them: an ensemble (nmt.models.ensemble) of
    their `which` checkpoints, whose steps average the models' probabilities. Its config, tokenizers and
    corpus are the first run's; every run must share its sentencepiece models (the same ids mean the same
    pieces), else RunDirError names the runs that differ."""
    if isinstance(run_dirs, (str, Path)):
        return load_trained(Path(run_dirs), which, device, data_root)
    runs = [load_trained(Path(d), which, device, data_root) for d in run_dirs]
    if len(runs) == 1:
        return runs[0]
    first = runs[0]
    differ = [str(d) for d, r in zip(run_dirs[1:], runs[1:])
              if any(file_sha256(a.model_path) != file_sha256(b.model_path)
                     for a, b in ((r.src_tok, first.src_tok), (r.tgt_tok, first.tgt_tok)))]
    if differ:
        raise RunDirError(f"an ensemble needs runs with the same sentencepiece models; {', '.join(differ)} "
                          f"differ from {run_dirs[0]}: ensemble runs trained on the same data and data.tokenizer")
    return TrainedRun(first.config, Ensemble([r.model for r in runs]).eval(), first.src_tok, first.tgt_tok, first.step)


def attention_label(model: dict) -> str:
    """A short name of a model's attention from the `label` of its attention configs, e.g.
    "global-general/luong", "hybrid local_p-general/luong",
    "transformer self:global-scaled_dot x4 cross:global-scaled_dot x4". A Transformer's decoder self-attention is
    named too ("dec:...") when it is not the encoder's made causal (an average attention decoder, a different
    position method), so that runs differing there get different names."""
    if model["family"] == "transformer":
        enc, cross = _slot_label(model["encoder"]["self_attention"]), _slot_label(model["decoder"]["cross_attention"])
        dec = _slot_label(model["decoder"]["self_attention"])
        own = "" if dec == enc.replace("global", "causal", 1) else f" dec:{dec}"
        return f"transformer self:{enc}{own} cross:{cross}"
    label = _label(model["attention"])
    return f"hybrid {label}" if model["family"] == "hybrid" else label


def _slot_label(slot: dict) -> str:
    """A Transformer slot's label, with its key/value heads when fewer than its query heads (grouped-query)."""
    kv = slot.get("num_kv_heads")
    return _label(slot) + ("" if kv is None or kv == slot.get("num_heads") else f" kv{kv}")


def _label(attention: dict) -> str:
    """An attention config's label; runs saved before labels existed show their class name."""
    return attention["label"] if "label" in attention else attention["_target_"].rsplit(".", 1)[-1]
