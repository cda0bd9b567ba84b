"""Every config composes and instantiates; bad choices and values fail before training, naming the fix."""
from dataclasses import asdict
from pathlib import Path

import pytest
from helpers import compose_cfg
from hydra.errors import MissingConfigException
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from nmt.cli.common import config_dir
from nmt.models.build import build_model
from nmt.training.optim import OptimSettings
from nmt.training.trainer import TrainSettings

CONFIGS = Path(config_dir())


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def leaf_keys(d: dict, prefix: str = "") -> list[str]:
    """Dotted keys of the leaves of a nested dict."""
    return [k for key, v in d.items()
            for k in (leaf_keys(v, f"{prefix}{key}.") if isinstance(v, dict) and v else [prefix + key])]


@pytest.mark.parametrize("model", options("model"))
def test_every_model_config_builds(model):
    cfg = compose_cfg([f"model={model}", "trainer=cpu"])
    net = build_model(cfg.model, 97, 89, 0)
    assert net.generator.out_features == 89 and net.num_parameters() > 0


@pytest.mark.parametrize("attention", options("model/attention"))
def test_every_attention_config_builds_in_the_rnn(attention):
    """The decoder holds the class the YAML's _target_ names."""
    cfg = compose_cfg([f"model/attention={attention}", "trainer=cpu"])
    module = build_model(cfg.model, 50, 50, 0).decoder.attention
    assert type(module) is get_class(cfg.model.attention._target_)


@pytest.mark.parametrize("group,name", [(g, n) for g in ("optim", "trainer") for n in options(g)])
def test_every_optim_and_trainer_config_validates(group, name):
    """Each option builds its typed settings, which hold exactly the YAML's values."""
    cfg = compose_cfg([f"{group}={name}"] + ([] if group == "trainer" else ["trainer=cpu"]))
    for settings, node in ((OptimSettings, cfg.optim), (TrainSettings, cfg.trainer)):
        values = OmegaConf.to_container(node, resolve=True)
        assert asdict(settings(**values)) == values


@pytest.mark.parametrize("data", options("data"))
def test_every_data_config_composes_and_its_corpus_instantiates(data, tmp_path):
    cfg = compose_cfg([f"data={data}", "trainer=cpu", f"data.root={tmp_path}"])
    corpus = instantiate(cfg.data.corpus)
    assert type(corpus) is get_class(cfg.data.corpus._target_) and callable(corpus.load)
    assert set(cfg.data.splits) == {"train", "valid", "test"}


@pytest.mark.parametrize("data", options("data"))
def test_every_data_config_sets_every_key_of_the_shared_base(data):
    """configs/data/base/common.yaml leaves src_lang, tgt_lang, splits and corpus ??? (required)."""
    cfg = compose_cfg([f"data={data}", "trainer=cpu"])
    assert OmegaConf.missing_keys(cfg.data) == set()
    assert list(cfg.data) == ["root", "src_lang", "tgt_lang", "max_len", "train_max_tgt_len", "cache_dir", "alignment",
                              "splits", "corpus", "tokenizer"]
    if data.startswith("multi30k_"):  # configs/data/base/multi30k.yaml + the pair of the file name
        assert data == f"multi30k_{cfg.data.src_lang}_{cfg.data.tgt_lang}"


@pytest.mark.parametrize("name", options("experiment"))
def test_every_experiment_composes(name):
    """Every key the experiment file sets (hydra's sweep aside) has its value in the composed config, and
    the model builds with the model group the experiment chose."""
    cfg = compose_cfg([f"+experiment={name}", "trainer=cpu"])
    own = OmegaConf.load(CONFIGS / "experiment" / f"{name}.yaml")
    chosen = {k.split("/")[-1]: v for d in own.pop("defaults", []) if isinstance(d, dict) for k, v in d.items()}
    own.pop("hydra", None)  # the sweep settings: not part of the job's config
    for key in leaf_keys(OmegaConf.to_container(own)):
        assert OmegaConf.select(cfg, key) == OmegaConf.select(own, key), key
    net = build_model(cfg.model, 60, 60, 0)
    if "model" in chosen:
        assert cfg.model.family == compose_cfg([f"model={chosen['model']}", "trainer=cpu"]).model.family
        assert net.generator.out_features == 60


def test_wrong_choice_lists_the_options():
    with pytest.raises(MissingConfigException) as err:
        compose_cfg(["model/attention=luong_nope", "trainer=cpu"])
    assert "luong_general" in str(err.value) and "bahdanau" in str(err.value)


@pytest.mark.parametrize("override,message", [
    ("optim.name=sgd", "optim.name must be one of"),
    ("optim.schedule=cosine", "optim.schedule must be one of"),
    ("trainer.max_tokens=0", "trainer.max_tokens must be >= 1"),
    ("model.encoder.cell=transformer", "cell must be one of"),
    ("model.attention.flow=joey", "flow must be one of"),
])
def test_bad_values_fail_with_the_option_named(override, message):
    cfg = compose_cfg([override, "trainer=cpu"])
    with pytest.raises(ValueError, match=message):
        OptimSettings(**OmegaConf.to_container(cfg.optim))
        TrainSettings(**OmegaConf.to_container(cfg.trainer))
        build_model(cfg.model, 50, 50, 0)


@pytest.mark.parametrize("argv,expected", [
    ([], ["trainer=gpu"]),
    (["-m", "model/attention=a,b", "--cfg", "job"], ["-m", "trainer=gpu", "model/attention=a,b", "--cfg", "job"]),
    (["trainer=cpu", "-m"], ["trainer=cpu", "-m"]),
])
def test_gpu_trainer_is_picked_when_cuda_is_there(argv, expected):
    from nmt.cli.common import default_trainer_override
    assert default_trainer_override(argv, cuda=True) == expected
    assert default_trainer_override(argv, cuda=False) == argv


def test_wheel_lists_every_package_and_ships_the_configs():
    """pyproject lists packages explicitly (configs/ is mapped to nmt.configs): keep it complete."""
    import tomllib
    project = tomllib.loads((CONFIGS.parent / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(CONFIGS.parent).parts)
               for p in (CONFIGS.parent / "nmt").rglob("__init__.py")}
    assert set(project["packages"]) == on_disk | {"nmt.configs"}
    assert project["package-dir"]["nmt.configs"] == "configs"
