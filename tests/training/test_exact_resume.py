"""Resume continues bit-identically where training draws random numbers: dropout > 0 and hard attention
(Gumbel noise). Both depend on the checkpoint's RNG states; test_resume.py's model draws none.
In-process (train(cfg) twice), as a resumed nmt-train does in a fresh process: seed, build, restore.
The reference builds its batches in the loop (trainer.prefetch=0), the cut run in a thread ahead
(trainer.prefetch=2): the same weights show that prefetching changes nothing, resume included."""
import threading

import pytest
import torch
from helpers import tb_scalars, toy_cfg

from helpers import train

STEPS, CUT = 12, 6  # trainer.save_every=3: the first leg stops at its own step_6.pt
RUN = ["trainer.save_every=3", "trainer.valid_max_sentences=4", "data.corpus.eval_size=4", "decode.beam_size=1"]
RANDOM_TRAINING = {
    "dropout": ["model.encoder.dropout=0.3", "model.decoder.dropout=0.3"],
    "hard_attention": ["model/attention=hard"],
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def run(run_dir, cache, steps: int, extra: list[str], prefetch: int, resume: bool = False) -> dict:
    """train() to `steps`; -> the weights of its step checkpoint."""
    train(toy_cfg(run_dir, cache, [*RUN, *extra, f"trainer.max_steps={steps}", f"trainer.resume={resume}",
                                   f"trainer.prefetch={prefetch}"]))
    assert not [t for t in threading.enumerate() if t.name == "nmt-prefetch"], "a prefetch thread outlived train()"
    return torch.load(run_dir / "checkpoints" / f"step_{steps}.pt", weights_only=True)["model"]


@pytest.mark.parametrize("kind", sorted(RANDOM_TRAINING))
def test_resume_with_random_training_equals_uninterrupted(tmp_path, cache, kind):
    extra = RANDOM_TRAINING[kind]
    ref = run(tmp_path / "ref", cache, STEPS, extra, prefetch=0)
    run(tmp_path / "cut", cache, CUT, extra, prefetch=2)
    cut = run(tmp_path / "cut", cache, STEPS, extra, prefetch=2, resume=True)
    for name, tensor in ref.items():
        assert torch.equal(tensor, cut[name]), f"{name} differs after resuming ({kind})"
    ref_loss, cut_loss = tb_scalars(tmp_path / "ref", "train/loss"), tb_scalars(tmp_path / "cut", "train/loss")
    assert ref_loss == cut_loss and max(ref_loss) == STEPS

