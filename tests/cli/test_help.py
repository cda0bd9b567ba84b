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


def test_help_shows_current_values(helps):
    assert re.search(r"^  decode\.beam_size .*\[5\]$", helps["translate"], re.M)
    assert re.search(r"^  decode\.beam_size .*\[7\]$", helps["translate_beam7"], re.M)
    assert re.search(r"^  trainer\.max_steps .*\[\d+\]$", helps["train"], re.M)
