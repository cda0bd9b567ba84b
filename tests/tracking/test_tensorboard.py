"""A short toy training run leaves attention images, attention statistics and hparams in its
TensorBoard events (read back with TensorBoard's own reader), and final probe PNGs in the run dir."""
import io
import json
import subprocess
import sys

import pytest
import torch
from helpers import TINY_RNN, TINY_TRANSFORMER, TOY_TRAIN, compose_cfg, toy_cfg
from hydra.utils import instantiate
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from helpers import train
from nmt.training.trainer import Callbacks
from nmt.data.tokenizer import SubwordTokenizer
from nmt.inspection.heatmaps import image_shape

FAST = ["trainer.num_threads=1", "logger.probe_sentences=2", "logger.stats_sentences=10"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


class ValidOutputs(Callbacks):
    """Each validation's greedy output ids by step: the probes' outputs (logger.probe_beam = 1)."""

    def __init__(self):
        self.tokens: dict[int, list[list[int]]] = {}

    def on_validation(self, trainer, result):
        self.tokens[trainer.progress.step] = [list(t) for t in result["tokens"]]


@pytest.fixture(scope="module")
def rnn_run(tmp_path_factory, cache):
    """Tiny RNN with local-p attention: two validations (steps 5 and 10)."""
    run_dir = tmp_path_factory.mktemp("rnn") / "run"
    cfg = toy_cfg(run_dir, cache, ["model/attention=local_p", "trainer.max_steps=10", "trainer.valid_every=5",
                                   *FAST])
    outputs = ValidOutputs()
    return run_dir, cfg, train(cfg, [outputs]), outputs.tokens


@pytest.fixture(scope="module")
def transformer_run(tmp_path_factory, cache):
    """Tiny 2-layer 2-head Transformer: one validation (step 5)."""
    run_dir = tmp_path_factory.mktemp("transformer") / "run"
    cfg = compose_cfg([o for o in TOY_TRAIN if o not in TINY_RNN] + TINY_TRANSFORMER +
                      [f"run_dir={run_dir}", f"data.cache_dir={cache}", "trainer.max_steps=5",
                       "trainer.valid_every=5", *FAST])
    outputs = ValidOutputs()
    return run_dir, cfg, train(cfg, [outputs]), outputs.tokens


def events(run_dir) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def source_lengths(cfg, run_dir, n: int) -> list[int]:
    src = instantiate(cfg.data.corpus).load(cfg.data.splits.valid)["src"][:n]
    return [len(ids) for ids in SubwordTokenizer.load(str(run_dir / "tokenizer" / "src.model")).encode(src)]


def check_images(acc, tag: str, n_keys: int | None, queries: dict[int, int]) -> None:
    """Each image (one per validation step, queries = {step: query rows}) is a PNG whose size matches its
    event header and the heatmap's size rule for n_keys x its step's queries (n_keys None: as many keys
    as queries, the decoder's self-attention)."""
    images = acc.Images(tag)
    assert [im.step for im in images] == list(queries), tag
    for im in images:
        png = Image.open(io.BytesIO(im.encoded_image_string))
        assert png.format == "PNG" and png.size == (im.width, im.height)
        rows = queries[im.step]
        assert (im.height, im.width) == image_shape(rows if n_keys is None else n_keys, rows), (tag, im.step)


def output_rows(tokens: dict[int, list[list[int]]], probe: int) -> dict[int, int]:
    """{validation step: the probe's output length + 1 (eos)}: the query rows of its decoder maps."""
    return {step: len(out[probe]) + 1 for step, out in tokens.items()}


def test_rnn_run_logs_cross_attention_images_and_stats_at_every_validation(rnn_run):
    run_dir, cfg, _, tokens = rnn_run
    acc = events(run_dir)
    images = set(acc.Tags()["images"])
    assert images == {"attention/probe0/cross/head0", "attention/probe1/cross/head0"}
    assert list(tokens) == [5, 10]
    for i, n_src in enumerate(source_lengths(cfg, run_dir, 2)):
        check_images(acc, f"attention/probe{i}/cross/head0", n_src, output_rows(tokens, i))
    scalars = set(acc.Tags()["scalars"])
    for stat in ("entropy", "eos_mass", "monotonicity", "centre_error"):
        assert [e.step for e in acc.Scalars(f"attn_stats/cross/{stat}")] == [5, 10]
    assert {"valid/bleu", "test/bleu_beam", "test/chrf_beam", "test/ter_beam"} <= scalars


def test_transformer_run_logs_every_layer_and_head(transformer_run):
    run_dir, cfg, metrics, tokens = transformer_run
    acc = events(run_dir)
    slots = [f"{part}.{layer}.{kind}" for layer in (0, 1) for part, kind in
             (("enc", "self"), ("dec", "self"), ("dec", "cross"))]
    expected = {f"attention/probe{p}/{slot}/head{h}" for p in (0, 1) for slot in slots for h in (0, 1)}
    assert set(acc.Tags()["images"]) == expected
    n_src = source_lengths(cfg, run_dir, 1)[0]
    assert list(tokens) == [5]
    check_images(acc, "attention/probe0/dec.1.cross/head1", n_src, output_rows(tokens, 0))
    check_images(acc, "attention/probe0/enc.0.self/head0", n_src, {5: n_src})
    check_images(acc, "attention/probe1/dec.0.self/head0", None, output_rows(tokens, 1))
    scalars = set(acc.Tags()["scalars"])
    for slot in slots:
        assert f"attn_stats/{slot}/entropy" in scalars
        assert (f"attn_stats/{slot}/eos_mass" in scalars) == (not slot.startswith("dec.") or slot.endswith("cross"))
    assert set(metrics["attention_stats"]) == set(slots)


def hparams_of(acc) -> dict[str, HParamsPluginData]:
    return {tag: HParamsPluginData.FromString(content)
            for tag, content in acc.PluginTagToContent("hparams").items()}


@pytest.mark.parametrize("which,attention", [("rnn_run", "local_p-general/luong"),
                                             ("transformer_run", "transformer self:global-scaled_dot x2 cross:global-scaled_dot x2")])
def test_hparams_and_final_metrics_are_logged(which, attention, request):
    run_dir, cfg, metrics, _ = request.getfixturevalue(which)
    acc = events(run_dir)
    data = hparams_of(acc)
    start = data["_hparams_/session_start_info"].session_start_info.hparams
    assert start["attention"].string_value == attention
    assert start["seed"].number_value == cfg.seed
    assert start["optim.lr"].number_value == pytest.approx(cfg.optim.lr)
    assert start["parameters"].number_value == metrics["parameters"]
    tags = {m.name.tag for m in data["_hparams_/experiment"].experiment.metric_infos}
    assert {"hparams/test_bleu", "hparams/valid_bleu", "hparams/test_chrf", "hparams/test_ter"} <= tags
    assert acc.Scalars("hparams/test_ter")[-1].value == pytest.approx(metrics["test"]["ter"])


def test_run_dir_keeps_final_probe_maps_references_and_resource_figures(rnn_run, transformer_run):
    for run_dir, cfg, metrics, _ in (rnn_run, transformer_run):
        on_disk = json.loads((run_dir / "metrics.json").read_text())
        assert on_disk["decode_sentences_per_s"] > 0 and on_disk["peak_memory_mb"] > 0
        assert on_disk["peak_memory_kind"] in ("cpu_peak_rss", "cpu_max_rss_process")
        assert len((run_dir / "test.ref.txt").read_text().splitlines()) == cfg.data.corpus.eval_size
        probes = torch.load(run_dir / "attention" / "probes.pt", weights_only=True)
        assert len(probes) == 2 and probes[0]["out_pieces"][-1] == "</s>"
        for i, probe in enumerate(probes):
            for slot in probe["maps"]:
                assert Image.open(run_dir / "attention" / f"probe{i}_{slot}.png").format == "PNG"
    assert "centre_error" in rnn_run[2]["attention_stats"]["cross"]


def test_translate_writes_one_attention_png_per_sentence(rnn_run, tmp_path):
    run_dir, cfg, _, _ = rnn_run
    src = instantiate(cfg.data.corpus).load(cfg.data.splits.test)["src"][:2]
    (tmp_path / "in.txt").write_text(f"{src[0]}\n\n{src[1]}\n")
    proc = subprocess.run([sys.executable, "-m", "nmt.cli.translate", f"run_dir={run_dir}",
                           f"input={tmp_path / 'in.txt'}", f"attention_png={tmp_path / 'png'}", "decode.beam_size=2",
                           "device=cpu"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout.split("\n")[:-1]
    assert len(out) == 3 and out[1] == ""
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["sent0000.png", "sent0002.png"]
    assert Image.open(tmp_path / "png" / "sent0002.png").format == "PNG"
