"""`nmt-<cmd> --help` (configs/hydra/help/<cmd>.yaml): one line for every key the command accepts, its
current value, and no training group in the help of a command that rejects them."""
import contextlib
import importlib
import io
import re
import sys

import pytest
from helpers import compose_cfg
from omegaconf import OmegaConf

COMMANDS = ["train", "evaluate", "translate", "align", "explain", "score", "average", "export"]


def leaves(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from leaves(v, f"{prefix}{k}.")
        else:
            yield prefix + k


def run_help(command: str, *overrides: str) -> str:
    """`nmt-<command> [overrides] --help` through the console script's own main(), in this process."""
    main = importlib.import_module(f"nmt.cli.{command}").main
    argv, sys.argv = sys.argv, [f"nmt-{command}", *overrides, "--help"]
    try:
        with contextlib.redirect_stdout(io.StringIO()) as out, pytest.raises(SystemExit) as done:
            main()
    finally:
        sys.argv = argv
    assert done.value.code in (0, None)
    return out.getvalue()


@pytest.fixture(scope="module")
def helps() -> dict[str, str]:
    return {**{c: run_help(c) for c in COMMANDS}, "translate_beam7": run_help("translate", "decode.beam_size=7")}


def key_lines(text: str) -> list[str]:
    """The first word of each `  key   description` line under == Keys ==."""
    body = text.split("== Keys", 1)[1]
    return [m.group(1) for m in re.finditer(r"^  ([a-z_][\w.]*(?:\.\*)?) ", body, re.M)]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_one_line_per_key(helps, command):
    overrides = ["run_dir=x", "src=x"] if command == "align" else ["run_dir=x"] if command != "train" else []
    keys = list(leaves(OmegaConf.to_container(compose_cfg(overrides, command), resolve=False)))
    listed = key_lines(helps[command])
    assert len(listed) == len(set(listed)), listed  # one line each
    wildcards = [k[:-1] for k in listed if k.endswith(".*")]  # "model.encoder.*" covers model.encoder.<any>
    missing = [k for k in keys if k not in listed and not any(k.startswith(w) for w in wildcards)]
    assert missing == [], f"nmt-{command} --help does not list {missing}"
    unknown = [k for k in listed if not k.endswith(".*") and k not in keys]
    assert unknown == [], f"nmt-{command} --help lists keys it does not accept: {unknown}"


@pytest.mark.parametrize("command", ["evaluate", "translate", "align", "explain", "score", "average", "export"])
def test_commands_on_a_run_do_not_offer_training_groups(helps, command):
    text = helps[command]
    assert "== Groups" not in text and not re.search(r"^(model|optim|trainer|data|logger)[:/]", text, re.M)
    assert not [k for k in key_lines(text) if k.split(".")[0] in ("model", "optim", "trainer", "data", "logger")]


def shown_values(text: str) -> dict[str, str]:
    """{key: the value shown for it} under == Keys ==: a line's trailing `[value]`, `(default: none)` as
    "None", and `name [value]` inside a wildcard line (`data.tokenizer.*  ...: vocab_size [8000]`)."""
    body, shown = text.split("== Keys", 1)[1], {}
    for m in re.finditer(r"^  ([a-z_][\w.]*(?:\.\*)?) +(.*)$", body, re.M):
        key, rest = m.groups()
        if key.endswith(".*"):
            shown.update({key[:-1] + name: value for name, value in re.findall(r"(\w+) \[([^\]]*)\]", rest)})
        elif (value := re.search(r"(?:^|  )\[(.*)\]$|\(default: (none)\)$", rest)) is not None:
            shown[key] = value.group(1) if value.group(1) is not None else "None"
    return shown


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_the_composed_default_of_every_key(helps, command):
    """Every value the help prints is the composed config's value of that key (str of the resolved value),
    and every key with a value in the config shows one."""
    overrides = ["run_dir=x", "src=x"] if command == "align" else ["run_dir=x"] if command != "train" else []
    cfg = OmegaConf.to_container(compose_cfg(overrides, command), resolve=True)
    shown = shown_values(helps[command])
    for key, value in shown.items():
        want = OmegaConf.select(OmegaConf.create(cfg), key, throw_on_missing=False)
        want = OmegaConf.to_container(want) if OmegaConf.is_config(want) else want
        assert value == str(want), f"nmt-{command} --help shows {key} [{value}], the config says {want!r}"
    listed = [k for k in key_lines(helps[command]) if not k.endswith(".*")]
    required = [o.split("=")[0] for o in overrides]  # ??? in the YAML: the help says "required"
    bare = [k for k in listed
            if k not in shown and k not in required and OmegaConf.select(OmegaConf.create(cfg), k) is not None]
    assert bare == [], f"nmt-{command} --help shows no value for {bare}"


def test_help_shows_current_values(helps):
    """The values follow the command line: decode.beam_size=7 shows [7] where the YAML's 5 was."""
    assert re.search(r"^  decode\.beam_size .*  \[5\]$", helps["translate"], re.M)
    assert re.search(r"^  decode\.beam_size .*  \[7\]$", helps["translate_beam7"], re.M)
    assert shown_values(helps["translate_beam7"])["decode.beam_size"] == "7"
