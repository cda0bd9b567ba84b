"""Every nmt-* command the user docs show (README.md, data/README.md, docs/**/*.md) parses: each one goes
through the same composition and checks its command runs before anything is read or trained
(nmt.cli.errors.compose_checked, then the typed settings), in this one Python, nothing executed. A
command that does not parse fails here, named by its file and line.

What counts as a command: a simple command, in a ```bash / ```sh / unlabelled fence, a 4-space indented
block or an inline `code` span, whose program is an nmt-* console script or `-m nmt.cli.<name>` (python
or torchrun). Shell syntax is read as the shell reads it (shlex): `VAR=... nmt-x`, pipes, `&&`, `;`,
redirections, `\\` line continuations and `#` comments. `-m` multiruns compose once per swept value
(the command line's sweeps and the experiment's hydra.sweeper.params, the other sweeps at their first
value). Placeholders (`<run>`, `FILE`, `N`, `$A`, ...) are composed but not type-checked; a command
naming no placeholder is also typed (nmt-train: nmt.cli.train.run_settings; the others: the decode
group and the command's job settings), as the command would be. nmt-compare's arguments go through
its own argparse parser.
"""
from __future__ import annotations

import importlib
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from nmt.cli.common import config_dir, decode_settings, job
from nmt.cli.errors import compose_checked

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", REPO / "data" / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
# program -> (its config, the job settings class its module builds; None: no job class)
HYDRA_PROGRAMS = {"nmt-train": ("train", None), "nmt-evaluate": ("evaluate", None),
                  "nmt-translate": ("translate", None), "nmt-align": ("align", "AlignJob"),
                  "nmt-explain": ("explain", "ExplainJob"), "nmt-score": ("score", "ScoreJob"),
                  "nmt-average": ("average", "AverageJob"), "nmt-export": ("export", "ExportJob")}
PROGRAMS = {*HYDRA_PROGRAMS, "nmt-compare"}
SHELL_FENCES = {"", "bash", "sh", "shell", "console"}
FENCE = re.compile(r"^([ \t]*)```(\w*)[^\n]*\n(.*?)^\1```", re.S | re.M)
INLINE = re.compile(r"(?<!`)`([^`]+)`(?!`)")
ANGLE = re.compile(r"<([A-Za-z][\w ./-]*)>")  # <run>, <a run dir>: a placeholder, not a redirection
PLACEHOLDER = re.compile(r"@[\w./-]+@|\$\w|\.\.\.|^[A-Z][A-Z_]*$")
LAUNCHERS = {"env", "time", "/usr/bin/time", "nohup"}  # run the command that follows them
OPERATORS = {"|", "||", "&&", ";", "&"}
REDIRECTS = {"<", ">", ">>", "<<", ">&", "<&"}
# Commands the docs show *because* they are refused: each must still be refused, with this message.
REFUSED = {
    "nmt-train trainer.max_step=40": "did you mean trainer.max_steps=40",
    "nmt-score chunk=0": "chunk must be >= 1",
    "nmt-average last=0": "last must be >= 1",
    "nmt-export quantization=int4": "quantization",
}


@dataclass(frozen=True)
class DocCommand:
    file: str   # relative to the repository
    line: int   # 1-based, where the command starts
    program: str
    args: tuple[str, ...]
    inline: bool = False  # from an inline `code` span (a bare program name there is a mention)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.program} {' '.join(self.args)}".rstrip()


# --- finding the commands -----------------------------------------------------------------------------

def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def blank_out(text: str, start: int, end: int) -> str:
    """The text with [start, end) replaced by spaces, newlines kept (so offsets and lines stay)."""
    return text[:start] + re.sub(r"[^\n]", " ", text[start:end]) + text[end:]


def code_snippets(text: str) -> list[tuple[int, str, bool]]:
    """(first line, shell code, inline?) of every shell fence, indented code block and inline code span."""
    found, rest = [], text
    for m in FENCE.finditer(text):
        if m.group(2) in SHELL_FENCES:
            found.append((line_of(text, m.start(3)), m.group(3), False))
        rest = blank_out(rest, m.start(), m.end())
    lines, block, start = rest.split("\n"), [], 0
    for i, line in enumerate(lines + [""]):
        indented = line.startswith("    ") and line.strip()
        if indented and (block or i == 0 or not lines[i - 1].strip()):
            start = start if block else i + 1
            block.append(line[4:])
            rest = blank_out(rest, sum(len(x) + 1 for x in lines[:i]), sum(len(x) + 1 for x in lines[:i + 1]))
        elif block and line.strip():
            found.append((start, "\n".join(block), False))
            block = []
        elif block:
            block.append("")
    if block:
        found.append((start, "\n".join(block), False))
    for m in INLINE.finditer(rest):
        found.append((line_of(rest, m.start()), m.group(1).replace("\\|", "|").replace("\n", " "), True))
    return found


def logical_lines(code: str) -> list[tuple[int, str]]:
    """(line offset, line) with `\\` continuations joined."""
    out, pending, first = [], "", 0
    for i, line in enumerate(code.split("\n")):
        if not pending:
            first = i
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((first, pending + line))
        pending = ""
    if pending:
        out.append((first, pending))
    return out


def simple_commands(line: str) -> list[list[str]]:
    """The shell's words of each simple command of one line (pipes, &&, ; split; redirections dropped)."""
    line = ANGLE.sub(lambda m: "@" + m.group(1).replace(" ", "_") + "@", line)
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands, current, skip = [], [], False
    for token in lexer:
        if skip:
            skip = False
        elif token in OPERATORS:
            commands.append(current)
            current = []
        elif token in REDIRECTS:
            skip = True
        else:
            current.append(token)
    return [c for c in commands + [current] if c]


def program_of(words: list[str]) -> tuple[str, list[str]] | None:
    """(nmt-x, its arguments) when the command runs nmt-x (after VAR=value assignments, env, time) or
    `python|python3|torchrun ... -m nmt.cli.x`, else None (prose, or another program)."""
    while words and (re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]) or words[0] in LAUNCHERS):
        words = words[1:]
        while words and words[0].startswith("-"):  # /usr/bin/time -v
            words = words[1:]
    if words and words[0] in PROGRAMS:
        return words[0], words[1:]
    if words and words[0] in {"python", "python3", "torchrun"} and "-m" in words:
        module = words[words.index("-m") + 1:][:1]
        if module and module[0].startswith("nmt.cli."):
            return "nmt-" + module[0].removeprefix("nmt.cli."), words[words.index("-m") + 2:]
    return None


def doc_commands(path: Path, text: str | None = None) -> list[DocCommand]:
    text = path.read_text(encoding="utf-8") if text is None else text
    name = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name
    found = []
    for first, code, inline in code_snippets(text):
        for offset, line in logical_lines(code):
            try:
                commands = simple_commands(line)
            except ValueError as e:  # unbalanced quotes: not pasteable if it names a program
                if any(p in line for p in PROGRAMS):
                    found.append(DocCommand(name, first + offset, "shell", (f"{e}: {line.strip()}",), inline))
                continue
            for words in commands:
                hit = program_of(words)
                if hit is not None:
                    found.append(DocCommand(name, first + offset, hit[0], tuple(hit[1]), inline))
    return found


def all_commands() -> list[DocCommand]:
    return [c for path in DOCS for c in doc_commands(path)]


# --- checking one command ------------------------------------------------------------------------------

def has_placeholder(args) -> bool:
    return any(PLACEHOLDER.search(v) for a in args for v in [a, a.split("=", 1)[-1]])


def sweeps(config: str, overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override lists a run of this command composes: one, or one per swept value (-m)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    swept = {o.get_key_element(): list(o.sweep_string_iterator()) for o in parsed if o.is_sweep_override()}
    if not multirun:
        return [overrides]
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        hydra_cfg = compose(config, [*fixed, *(f"{k}={v[0]}" for k, v in swept.items())], return_hydra_config=True)
    given = {o.get_key_element() for o in parsed}  # the command line's value or list replaces the experiment's
    params = {k: [str(v).strip() for v in str(values).split(",")]
              for k, values in (hydra_cfg.hydra.sweeper.params or {}).items() if k not in given}
    swept = {**params, **swept}  # (as Hydra's BasicSweeper merges them)
    fixed = [o for o in fixed if not o.startswith("hydra.sweep.")]  # composed above; no job config changes
    if not swept:
        return [fixed]
    first = {k: f"{k}={v[0]}" for k, v in swept.items()}
    return [[*fixed, *{**first, key: f"{key}={value}"}.values()] for key, values in swept.items() for value in values]


def check_hydra(command: DocCommand) -> None:
    """Compose (and, without placeholders, type) the command's config as its entry point does."""
    config, _ = HYDRA_PROGRAMS[command.program]
    flags = [a for a in command.args if a.startswith("-")]
    unknown = set(flags) - {"-m", "--multirun", "--cfg", "-c", "--resolve"}
    assert not unknown, f"{command}: flags {sorted(unknown)} are not checked here; add them to check_hydra"
    overrides = [a for a in command.args if not a.startswith("-") and a not in {"job", "hydra", "all"}
                 and not left_to_the_reader(a)]
    for path, there in USER_PATHS.items():
        overrides = [a.replace(path, there) for a in overrides]
    for run in sweeps(config, overrides, multirun=bool({"-m", "--multirun"} & set(flags))):
        error = checked_run(command.program, tuple(run))
        if error is not None:
            raise AssertionError(f"{command}: {error}")


def left_to_the_reader(arg: str) -> bool:
    """`...` (more of the same), a bare `<overrides>`, or a config group's `<name>`: nothing to compose."""
    key, _, value = arg.partition("=")
    group = (Path(config_dir()) / key.lstrip("+~")).is_dir()
    return arg == "..." or re.fullmatch(r"@[\w./-]+@", arg) is not None or (group and PLACEHOLDER.search(value))


CHECKED: dict[tuple, str | None] = {}  # (program, overrides) -> None or the error: each composed once


def checked_run(program: str, run: tuple[str, ...]) -> str | None:
    if (program, run) not in CHECKED:
        try:
            settings_check(program, list(run))
            CHECKED[program, run] = None
        except Exception as e:  # the entry point's errors: Hydra's, UserError, ValueError, TypeError
            CHECKED[program, run] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
    return CHECKED[program, run]


def settings_check(program: str, run: list[str]) -> None:
    config, job_class = HYDRA_PROGRAMS[program]
    cfg = compose_checked(config, run)
    missing = [str(k) for k in cfg if OmegaConf.is_missing(cfg, k)]
    if has_placeholder(run) or missing or cfg.get("trainer", {}).get("resume"):
        return  # parsed and composed; its values are the user's to fill in (or the resumed run's own)
    if program == "nmt-train":
        from nmt.cli.train import run_settings
        run_settings(cfg)
        return
    if "decode" in cfg:
        decode_settings(cfg)
    if job_class is not None:
        job(getattr(importlib.import_module(f"nmt.cli.{config}"), job_class), cfg)


def check_compare(command: DocCommand) -> None:
    from nmt.cli.compare import parse_args
    args = [a.strip("[]") for a in command.args if a.strip("[]")]  # the usage line's [--option VALUE]
    args = [{"N": "1000", "I": "0"}.get(a, a) for a in args]  # its metavariables for numbers
    try:
        parse_args(args)
    except SystemExit:
        raise AssertionError(f"{command}: nmt-compare's argparse refuses it (see above)") from None


def check(command: DocCommand) -> None:
    assert command.program != "shell", f"{command}: the shell cannot split this line"
    if command.program == "nmt-compare" and command.inline and not command.args:
        return  # `nmt-compare` named in prose
    if command.program == "nmt-compare":
        check_compare(command)
        return
    try:
        check_hydra(command)
    except AssertionError:
        raise
    except Exception as e:  # Hydra's parser on a multirun's overrides
        raise AssertionError(f"{command}: {type(e).__name__}: {str(e).splitlines()[0]}") from None


def command_id(command: DocCommand) -> str:
    return f"{command.file}:{command.line}"


COMMANDS = all_commands()
USER_PATHS: dict[str, str] = {}  # a path the docs use for the reader's own files -> one that holds them


@pytest.fixture(autouse=True, scope="module")
def _user_conf(tmp_path_factory):
    """The README's own attention type: model/attention/my_attention.yaml under /path/to/conf (here a copy
    of luong_general)."""
    conf = tmp_path_factory.mktemp("conf")
    (conf / "model" / "attention").mkdir(parents=True)
    shutil.copy(REPO / "configs" / "model" / "attention" / "luong_general.yaml",
                conf / "model" / "attention" / "my_attention.yaml")
    USER_PATHS["/path/to/conf"] = str(conf)


@pytest.mark.parametrize("command", [c for c in COMMANDS if str(c).split(": ", 1)[1] not in REFUSED],
                         ids=command_id)
def test_every_doc_command_parses(command):
    check(command)


@pytest.mark.parametrize("shown, message", sorted(REFUSED.items()))
def test_the_commands_the_docs_show_as_refused_are_refused(shown, message):
    commands = [c for c in COMMANDS if str(c).split(": ", 1)[1] == shown]
    assert commands, f"`{shown}` is no longer in the docs: remove it from REFUSED"
    command = commands[0]
    config = HYDRA_PROGRAMS[command.program][0]
    try:  # typed only with run_dir, src, ... given (they need not exist)
        cfg = compose_checked(config, list(command.args))
        filled = [f"{k}=x" for k in cfg if OmegaConf.is_missing(cfg, k)]
    except Exception:  # refused while composing: nothing to fill in
        filled = []
    command = DocCommand(command.file, command.line, command.program, (*command.args, *filled))
    with pytest.raises(AssertionError, match=re.escape(message)):
        check(command)


# --- the finder and the checker themselves -------------------------------------------------------------

PAGE = """# Page

```bash
NMT_DATA_DIR=../data nmt-train model/attention=luong_dot \\
    run_dir=runs/x   # a comment nmt-evaluate
echo "Ein Hund." | nmt-translate run_dir=runs/x && nmt-evaluate run_dir=[runs/a,runs/b] split=test
nmt-translate run_dir=<run> < input.de > out.en
torchrun --nproc_per_node 2 -m nmt.cli.train trainer=gpu
python3 scripts/other.py --work w
```

```python
nmt.load("nmt-train")
```

Prose with `nmt-train -m +experiment=tour +tour=local_m,local_p` inline,
and a table | `printf 'x\\n' \\| nmt-translate run_dir=<run>` |.

    nmt-compare <sweep> --baseline luong_general
"""


def test_the_finder_reads_shell_syntax_from_fences_inline_code_and_indented_blocks():
    found = [(c.line, c.program, c.args) for c in doc_commands(REPO / "PAGE.md", PAGE)]
    assert found == [
        (4, "nmt-train", ("model/attention=luong_dot", "run_dir=runs/x")),
        (6, "nmt-translate", ("run_dir=runs/x",)),
        (6, "nmt-evaluate", ("run_dir=[runs/a,runs/b]", "split=test")),
        (7, "nmt-translate", ("run_dir=@run@",)),
        (8, "nmt-train", ("trainer=gpu",)),
        (19, "nmt-compare", ("@sweep@", "--baseline", "luong_general")),
        (16, "nmt-train", ("-m", "+experiment=tour", "+tour=local_m,local_p")),
        (17, "nmt-translate", ("run_dir=@run@",)),
    ]


def test_a_multirun_composes_every_swept_value():
    runs = sweeps("train", ["+experiment=compare_attention", "seed=1"], multirun=True)
    attention = {o for run in runs for o in run if o.startswith("model/attention=")}
    assert attention == {f"model/attention={a}" for a in ("luong_general", "local_m", "local_p", "hard")}
    seeds = {o for run in runs for o in run if o.startswith("seed=")}
    assert seeds == {"seed=1"}  # the command line's seed replaces the experiment's 1,2,3
    runs = sweeps("train", ["+experiment=compare_attention", "seed=4,5", "model/attention=hard"], multirun=True)
    assert runs == [["+experiment=compare_attention", "model/attention=hard", "seed=4"],
                    ["+experiment=compare_attention", "model/attention=hard", "seed=5"]]
    assert sweeps("train", ["seed=1"], multirun=False) == [["seed=1"]]


def test_a_broken_command_fails_naming_its_file_and_line():
    page = PAGE + "\n```bash\nnmt-train data=tsv data.corpus.path_template=/x/{split}.tsv\n```\n"
    [broken] = [c for c in doc_commands(REPO / "docs" / "PAGE.md", page) if "path_template" in str(c)]
    with pytest.raises(AssertionError, match=r"docs/PAGE\.md:22: nmt-train .*path_template"):
        check(broken)
    [quoted] = [c for c in doc_commands(REPO / "PAGE.md", page.replace("=/x/{split}.tsv", "='\"/x/{split}.tsv\"'"))
                if "path_template" in str(c)]
    check(quoted)
    typo = DocCommand("README.md", 7, "nmt-evaluate", ("run_dir=runs/x", "decode.beam=5"))
    with pytest.raises(AssertionError, match=r"README\.md:7: .*did you mean decode\.beam_size=5"):
        check(typo)
    bad_value = DocCommand("README.md", 8, "nmt-train", ("trainer.valid_every=0",))
    with pytest.raises(AssertionError, match=r"README\.md:8: .*valid_every"):
        check(bad_value)
    with pytest.raises(AssertionError, match=r"README\.md:9: nmt-compare .*argparse"):
        check(DocCommand("README.md", 9, "nmt-compare", ("sweep", "--probe", "first")))


def test_the_docs_hold_the_commands_of_every_program():
    assert len(COMMANDS) >= 100
    assert {c.program for c in COMMANDS} >= PROGRAMS
    assert {c.file for c in COMMANDS} >= {"README.md", "data/README.md", "docs/alignment.md", "docs/faults.md"}
