"""What a user watching nmt-train sees: loss, ppl, lr and tokens/s on the console every log_every steps,
on every validation line, beside the progress bar and in train.log."""
import os
import re
import subprocess
import sys

from helpers import TINY_RNN, toy_cfg
from omegaconf import OmegaConf

from helpers import train
from nmt.training.trainer import BudgetBar, Progress, TrainSettings

TRAIN_LINE = r"loss \d+\.\d{3} ppl \d+\.\d{2} lr \d\.\d{2}e[-+]\d{2} \d+ tok/s"


def test_train_and_validation_lines_carry_loss_ppl_lr_and_speed(tmp_path, caplog):
    cfg = toy_cfg(tmp_path / "run", tmp_path / "cache", ["trainer.max_steps=4", "trainer.log_every=2",
                                                         "trainer.valid_every=4", "trainer.num_threads=1",
                                                         "logger.probe_sentences=0"])
    with caplog.at_level("INFO", logger="nmt.training.trainer"):
        train(cfg)
    lines = [r.getMessage() for r in caplog.records if r.name == "nmt.training.trainer"]
    train_lines = [x for x in lines if re.match(r"step \d+ train: ", x)]
    assert [re.fullmatch(rf"step (\d) train: {TRAIN_LINE}", x).group(1) for x in train_lines] == ["2", "4"]
    valid = [x for x in lines if " valid: " in x]
    assert len(valid) == 1 and re.fullmatch(rf"step 4 valid: bleu .* \| train: {TRAIN_LINE}", valid[0]), valid


def test_progress_bar_shows_the_train_summary_and_the_best_bleu():
    trainer = OmegaConf.to_container(toy_cfg("unused", "unused", []).trainer)
    bar = BudgetBar(TrainSettings(**trainer), steps_per_epoch=40, progress=Progress(), enabled=False)
    bar.train("loss 2.000 ppl 7.39 lr 1.00e-03 900 tok/s")
    assert bar.bar.postfix == "loss 2.000 ppl 7.39 lr 1.00e-03 900 tok/s"
    bar.best(12.345)
    bar.train("loss 1.500 ppl 4.48 lr 9.00e-04 950 tok/s")
    assert bar.bar.postfix == "loss 1.500 ppl 4.48 lr 9.00e-04 950 tok/s | best bleu 12.35"


def test_nmt_train_writes_the_lines_to_train_log_and_the_bar(tmp_path):
    """The console script, as a user runs it: Hydra's train.log holds the train and validation lines, and
    the progress bar (stderr) shows the summary."""
    overrides = ["data=toy", "data.corpus.size=200", "data.corpus.eval_size=10", "trainer=cpu", *TINY_RNN,
                 "trainer.max_tokens=400", "trainer.max_steps=4", "trainer.log_every=2", "trainer.valid_every=4",
                 "trainer.num_threads=1", "logger.probe_sentences=0", "decode.beam_size=1",
                 f"run_dir={tmp_path / 'run'}", f"data.cache_dir={tmp_path / 'cache'}"]
    proc = subprocess.run([sys.executable, "-m", "nmt.cli.train", *overrides], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (tmp_path / "run" / "train.log").read_text()
    assert re.search(rf"step 2 train: {TRAIN_LINE}", log)
    assert re.search(rf"step 4 valid: .* \| train: {TRAIN_LINE}", log)
    assert re.search(rf"\| *4/4 .*{TRAIN_LINE}", proc.stderr), proc.stderr[-2000:]  # the bar's postfix
