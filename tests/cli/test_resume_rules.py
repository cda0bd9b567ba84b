"""nmt-train trainer.resume=true: the run's own config, and only the keys a resume may change (nmt.cli.resume)."""
import pytest
from helpers import compose_cfg
from omegaconf import OmegaConf

from nmt.cli.resume import resume_config
from nmt.runs.run_dir import RunDirError

TRAINED = ["data.tokenizer.vocab_size=1000", "model.encoder.hidden_size=64", "model.attention.score=general"]


def stored_cfg(run_dir):
    """What a run trained with TRAINED overrides stores: the resolved config."""
    return OmegaConf.create(OmegaConf.to_container(compose_cfg([*TRAINED, f"run_dir={run_dir}"]), resolve=True))


def test_bare_resume_takes_the_runs_own_config_and_only_the_budget_given(tmp_path):
    stored = stored_cfg(tmp_path)
    given = compose_cfg(["trainer.resume=true", f"run_dir={tmp_path}", "trainer.max_steps=7"])
    out = resume_config(stored, compose_cfg([]), given, ["trainer.resume", "run_dir", "trainer.max_steps"])
    assert out.data.tokenizer.vocab_size == 1000 and out.model.encoder.hidden_size == 64
    assert out.trainer.max_steps == 7 and out.trainer.resume is True
    expected = OmegaConf.merge(stored, {"trainer": {"max_steps": 7, "resume": True}})
    assert OmegaConf.to_container(out) == OmegaConf.to_container(expected)


def test_the_same_overrides_again_are_accepted(tmp_path):
    stored = stored_cfg(tmp_path)
    args = [*TRAINED, "trainer.resume=true", f"run_dir={tmp_path}"]
    out = resume_config(stored, compose_cfg([]), compose_cfg(args), [a.split("=")[0] for a in args])
    assert out.model.attention.score == "general"


def test_a_changed_model_is_refused_key_by_key_with_a_command_that_works(tmp_path):
    stored = stored_cfg(tmp_path)
    args = ["trainer.resume=true", f"run_dir={tmp_path}", "model.attention.score=dot", "trainer.max_steps=9"]
    with pytest.raises(RunDirError) as e:
        resume_config(stored, compose_cfg([]), compose_cfg(args), [a.split("=")[0] for a in args])
    lines = str(e.value).splitlines()
    assert "  model.attention.score: general (run) vs dot (given)" in lines
    assert not any("max_steps" in line and "(run)" in line for line in lines)
    command = next(line for line in lines if "nmt-train" in line).split("nmt-train ", 1)[1].split()
    assert command == ["trainer.resume=true", f"run_dir={tmp_path}", "trainer.max_steps=9"]
    out = resume_config(stored, compose_cfg([]), compose_cfg(command), [a.split("=")[0] for a in command])
    assert out.trainer.max_steps == 9  # the suggested command works


def test_settings_added_since_the_run_was_trained_take_their_defaults(tmp_path):
    """A run trained before decode.nbest existed resumes: the new setting comes from the defaults, while
    the model group (whose keys depend on the type) is left as stored."""
    stored = stored_cfg(tmp_path)
    del stored.decode["nbest"]
    del stored.model["attention"]  # as in a model type without attention: must not be filled in
    given = compose_cfg(["trainer.resume=true", f"run_dir={tmp_path}"])
    out = resume_config(stored, compose_cfg([]), given, ["trainer.resume", "run_dir"])
    assert out.decode.nbest == given.decode.nbest and "attention" not in out.model


SAMPLING_KEYS = ("sampling", "topk", "topp", "temperature", "seed")


@pytest.mark.parametrize("overrides", [[], ["decode.beam_size=1", "decode.sampling=topp", "decode.seed=7"]])
def test_a_run_trained_before_sampling_resumes_with_valid_decode_settings(tmp_path, overrides):
    """decode.sampling, topk, topp, temperature and seed came after runs that store no such keys: the
    resumed config fills them from the defaults (sampling none: search), or takes them from the command
    line, and DecodeSettings (no defaults of its own) builds from it."""
    from nmt.cli.common import decode_settings
    stored = stored_cfg(tmp_path)
    for key in SAMPLING_KEYS:
        del stored.decode[key]
    given = compose_cfg(["trainer.resume=true", f"run_dir={tmp_path}", *overrides])
    out = resume_config(stored, compose_cfg([]), given, ["trainer.resume", "run_dir",
                                                         *(o.split("=")[0] for o in overrides)])
    decode = decode_settings(out)
    assert {k: getattr(decode, k) for k in SAMPLING_KEYS} == {k: given.decode[k] for k in SAMPLING_KEYS}
    assert decode.sampling == ("topp" if overrides else "none")


def test_a_resume_may_change_what_does_not_change_the_result(tmp_path):
    """Threads and prefetching change speed, not the batches or the weights (test_exact_resume runs the
    cut half with prefetch on): a resume may change them."""
    stored = stored_cfg(tmp_path)
    args = ["trainer.resume=true", f"run_dir={tmp_path}", "trainer.prefetch=0", "trainer.num_threads=1"]
    out = resume_config(stored, compose_cfg([]), compose_cfg(args), [a.split("=")[0] for a in args])
    assert out.trainer.prefetch == 0 and out.trainer.num_threads == 1


@pytest.mark.parametrize("alignment, expected", [(None, 0.0), ("links.align", 1.0)])
def test_a_run_stored_with_the_old_centre_weight_default_resumes_unsupervised(tmp_path, alignment, expected):
    """Runs trained before centre_weight became independent of λ stored centre_weight 1.0 beside weight 0
    (off then). Without data.alignment they resume with it read as 0; with an alignment the stored value
    is kept (today's meaning: a centre loss of its own)."""
    stored = stored_cfg(tmp_path)
    stored.trainer.align_loss.weight, stored.trainer.align_loss.centre_weight = 0.0, 1.0
    stored.data.alignment = alignment
    given = compose_cfg(["trainer.resume=true", f"run_dir={tmp_path}"])
    out = resume_config(stored, compose_cfg([]), given, ["trainer.resume", "run_dir"])
    assert out.trainer.align_loss.centre_weight == expected
    assert stored.trainer.align_loss.centre_weight == 1.0  # the stored config itself is not changed
