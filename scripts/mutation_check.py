"""Mutation check: put one plausible one-line bug into a temporary copy of the repository and see which
tests catch it (issue 19, Sec. 5). Every mutation must be caught; docs/mutations.md holds the table.

    NMT_DATA_DIR=/path/to/data python3 scripts/mutation_check.py [--only NAME ...] [--all] [--out FILE]
    python3 scripts/mutation_check.py --adhoc FILE 'ORIGINAL LINE' 'MUTATED LINE' TEST_FILE [TEST_FILE ...]

For each mutation: the working tree is copied to a temporary directory (no .git, no caches), the one
line is replaced there (the original must occur exactly once in the file, compared without leading
and trailing white space; the replacement keeps its indentation), and the mutation's test files run
in the copy with `python -m pytest -q -x` and PYTHONPATH set to the copy, so the copy's `nmt` is the
one imported (also by the subprocesses the tests start). First the same test files run on an
unmutated copy: a mutation only counts as caught when the real code passes them.

Results: caught (a test failed), SURVIVED (all passed), ERROR (pytest could not run the tests, e.g.
a collection error: not a catch), ANCHOR MISSING (the original line is not in the file any more:
update MUTATIONS). Exit status 0 only when every mutation was caught.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str           # relative to the repository root
    original: str       # the exact line (leading/trailing white space ignored); must occur once
    mutated: str        # what replaces it (the original's indentation is kept)
    tests: tuple        # test files (or node ids) run against the mutated copy


# The mutations of issue 19, Sec. 5. When the code they point at is rewritten, update `original`
# (and `mutated`) here: the script refuses to guess and reports ANCHOR MISSING.
MUTATIONS = [
    Mutation("length-penalty sign (candidates and stopping bound)", "nmt/decoding/beam.py",
             "return ((5.0 + lengths) / 6.0) ** alpha",
             "return ((5.0 + lengths) / 6.0) ** -alpha",
             ("tests/decoding/test_search.py::test_length_penalty_decides_between_short_and_long",
              "tests/decoding/test_search.py::test_finished_hypotheses_do_not_take_beam_slots",
              "tests/decoding/test_search.py::test_early_stop_equals_search_to_the_length_limit")),
    Mutation("no beam reorder of the Transformer cache", "nmt/decoding/beam.py",
             "{k: v.index_select(0, rows) for k, v in state.items()})",
             "{k: (v if k.startswith('self_') else v.index_select(0, rows)) for k, v in state.items()})",
             ("tests/decoding/test_search.py::test_every_nbest_score_is_the_teacher_forced_log_prob",
              "tests/models/test_transformer.py")),
    Mutation("no RNG restore on resume", "nmt/training/trainer.py",
             'ckpt.set_rng_state(state["rng"], self.dist.rank, self.dist.world, self.device)  # rank r: its own',
             "pass  # mutation: RNG state not restored",
             ("tests/training/test_exact_resume.py",)),
    Mutation("random importance for tau", "nmt/alignment/explain.py",
             "return dot.abs()",
             "return torch.rand_like(dot)",
             ("tests/alignment/test_explain.py",)),
    Mutation("sigma^2 instead of 2 sigma^2 in local-p", "nmt/attention/local_attention.py",
             "weights = weights * torch.exp(-offsets.pow(2) / (2 * self.sigma ** 2))  # Eq. 10",
             "weights = weights * torch.exp(-offsets.pow(2) / (self.sigma ** 2))  # Eq. 10",
             ("tests/attention/test_local_attention.py",)),
    Mutation("S = padded length in local-p", "nmt/attention/local_attention.py",
             "src_len = mask.expand(B, Tq, key_len).sum(-1).to(query.dtype)  # (B, Tq)",
             "src_len = query.new_full((B, Tq), float(key_len))  # (B, Tq)",
             ("tests/attention/test_local_attention.py",)),
    Mutation("AER precision over S", "nmt/alignment/aer.py",
             'return {"precision": ratio(self.hit_possible, self.predicted),',
             'return {"precision": ratio(self.hit_possible, self.sure),',
             ("tests/alignment/test_aer.py",)),
    Mutation("tau between the attention and itself", "nmt/alignment/explain.py",
             "tau = kendall_tau(a.reshape(-1, S), imp.reshape(-1, S).to(a.device), valid)  # (B * T,)",
             "tau = kendall_tau(a.reshape(-1, S), a.reshape(-1, S), valid)  # (B * T,)",
             ("tests/alignment/test_explain.py::test_tau_is_the_mean_over_real_target_tokens_of_tau_b_over_the_real_source",)),
    Mutation("tau counting source padding as valid positions", "nmt/alignment/explain.py",
             "valid = lengths_mask(b.src_lengths, S)[:, None].expand(-1, T, -1).reshape(-1, S)  # (B * T, S)",
             "valid = torch.ones_like(lengths_mask(b.src_lengths, S))[:, None].expand(-1, T, -1).reshape(-1, S)",
             ("tests/alignment/test_explain.py::test_tau_is_the_mean_over_real_target_tokens_of_tau_b_over_the_real_source",)),
    Mutation("beam stop bound at limit - 1", "nmt/decoding/beam.py",
             "bound = raw.max(dim=-1).values / length_penalty(live.limits, alpha)  # (A,) the best a live beam can reach",
             "bound = raw.max(dim=-1).values / length_penalty(live.limits - 1, alpha)  # (A,)",
             ("tests/decoding/test_search.py::test_stop_bound_is_taken_at_the_length_limit",)),
    Mutation("plateau lr scale reset on resume", "nmt/training/optim.py",
             'self.scale, self.best, self.bad = d["scale"], d["best"], d["bad"]',
             'self.scale, self.best, self.bad = 1.0, d["best"], d["bad"]',
             ("tests/training/test_optim.py",)),
    Mutation("top-p keeps the token at which the mass reaches p", "nmt/decoding/sampling.py",
             'return ordered.masked_fill(before >= p, float("-inf")), ids',
             'return ordered.masked_fill(before > p, float("-inf")), ids',
             ("tests/decoding/test_sampling.py::test_topp_nucleus_stops_where_its_mass_reaches_p_exactly",)),
    Mutation("alignment-loss weight λ ignored", "nmt/training/align_loss.py",
             "return spec.weight * align + spec.centre_weight * centre, align + spec.centre_weight * centre",
             "return align + spec.centre_weight * centre, align + spec.centre_weight * centre",
             ("tests/training/test_align_training.py::test_the_step_weighs_each_loss_and_normalises_per_linked_row",)),
    Mutation("alignment-loss normaliser counting links, not linked rows", "nmt/data/align_rows.py",
             "return int(sum(len(np.unique(ts[:, 0])) for ts in links))",
             "return int(sum(len(ts) for ts in links))",
             ("tests/training/test_align_training.py::test_the_step_weighs_each_loss_and_normalises_per_linked_row",)),
    Mutation("local-p's centre loss never added", "nmt/training/align_loss.py",
             "centre = centre_sum(centres[spec.slot], target, spec.half_width)  # ()",
             "pass  # mutation: the centre loss is never added",
             ("tests/training/test_align_training.py::test_the_step_weighs_each_loss_and_normalises_per_linked_row",)),
    Mutation("learned positions exported to CTranslate2 as the sinusoid table", "nmt/runs/export.py",
             "table = part.positions.table.weight.detach() if learned else sinusoid_table(d, MAX_POSITIONS)  # (rows, d)",
             "table = sinusoid_table(d, MAX_POSITIONS)  # (rows, d)",
             ("tests/runs/test_export.py::test_float32_export_translates_like_nmt",)),
]

IGNORE = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "outputs", "multirun", ".pytest_cache")


def apply(copy: Path, m: Mutation) -> str | None:
    """Replace m.original by m.mutated in the copy; -> None, or why the anchor was not found."""
    path = copy / m.file
    if not path.is_file():
        return f"{m.file} does not exist"
    lines = path.read_text(encoding="utf-8").split("\n")
    hits = [i for i, line in enumerate(lines) if line.strip() == m.original.strip()]
    if len(hits) != 1:
        return f"{m.file}: the original line occurs {len(hits)} times (must be once): {m.original!r}"
    line = lines[hits[0]]
    lines[hits[0]] = line[: len(line) - len(line.lstrip())] + m.mutated.strip()
    path.write_text("\n".join(lines), encoding="utf-8")
    return None


def environment(copy: Path) -> dict:
    """PYTHONPATH = the copy (it wins over the editable install's finder); NMT_DATA_DIR kept or set to
    the checkout's ../shared/data, which the copy cannot find beside itself."""
    path = os.pathsep.join([str(copy), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = {**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"}
    shared = REPO.parent / "shared" / "data"
    if "NMT_DATA_DIR" not in env and (shared / "multi30k").is_dir():
        env["NMT_DATA_DIR"] = str(shared)
    return env


def run_tests(copy: Path, tests: tuple, stop_first: bool, timeout: float) -> tuple[int, list[str], str]:
    """-> (pytest's exit status, failed test ids, output tail) of the tests run inside the copy."""
    cmd = [sys.executable, "-m", "pytest", "-q", *(["-x"] if stop_first else []), "-p", "no:randomly", *tests]
    try:
        out = subprocess.run(cmd, cwd=copy, env=environment(copy), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, [], f"timed out after {timeout:.0f} s"
    text = out.stdout + out.stderr
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", text, flags=re.M)
    return out.returncode, failed, text[-3000:]


def check_import(copy: Path) -> None:
    """The copy's nmt must be the one imported, or every result below would be about the checkout."""
    out = subprocess.run([sys.executable, "-c", "import nmt; print(nmt.__file__)"], cwd=tempfile.gettempdir(),
                         env=environment(copy), capture_output=True, text=True, check=True)
    if not out.stdout.strip().startswith(str(copy)):
        raise SystemExit(f"the copy's nmt is not the one imported ({out.stdout.strip()}): cannot check mutations")


def check_one(m: Mutation, stop_first: bool, timeout: float) -> dict:
    """Copy, mutate, run: -> {"mutation", "result", "caught_by", "seconds", "detail"}."""
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="nmt-mutation-") as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(REPO, copy, ignore=IGNORE)
        check_import(copy)
        why = apply(copy, m)
        if why is not None:
            return {"mutation": m, "result": "ANCHOR MISSING", "caught_by": [], "seconds": 0.0, "detail": why}
        rc, failed, tail = run_tests(copy, m.tests, stop_first, timeout)
    result = {0: "SURVIVED", 1: "caught"}.get(rc, "ERROR")
    return {"mutation": m, "result": result, "caught_by": failed, "seconds": time.time() - t0, "detail": tail}


def baseline(mutations: list[Mutation], timeout: float) -> None:
    """The unmutated copy must pass every test file used below; else no result would mean anything."""
    tests = tuple(dict.fromkeys(t for m in mutations for t in m.tests))
    with tempfile.TemporaryDirectory(prefix="nmt-mutation-") as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(REPO, copy, ignore=IGNORE)
        check_import(copy)
        rc, failed, tail = run_tests(copy, tests, False, timeout)
    if rc != 0:
        raise SystemExit(f"the unmutated code fails its own tests ({', '.join(failed) or rc}):\n{tail}")
    print(f"baseline: {len(tests)} test files pass on the unmutated copy", flush=True)


def markdown(results: list[dict]) -> str:
    lines = ["| mutation | file | result | caught by (first failing test) | seconds |", "|---|---|---|---|---:|"]
    for r in results:
        m = r["mutation"]
        by = "<br>".join(f"`{t}`" for t in r["caught_by"]) or ("–" if r["result"] != "ANCHOR MISSING" else r["detail"])
        lines.append(f"| {m.name} | `{m.file}` | {r['result']} | {by} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="mutations whose name contains NAME")
    parser.add_argument("--all", action="store_true", help="run every test (no -x): list all that catch each")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run on the unmutated copy")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per pytest run")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    parser.add_argument("--adhoc", nargs="+", metavar="ARG",
                        help="FILE ORIGINAL MUTATED TEST...: one mutation given on the command line")
    return parser.parse_args(argv)


def select(args: argparse.Namespace) -> list[Mutation]:
    if args.adhoc:
        if len(args.adhoc) < 4:
            raise SystemExit("--adhoc needs FILE ORIGINAL MUTATED TEST [TEST ...]")
        file, original, mutated, *tests = args.adhoc
        return [Mutation("adhoc", file, original, mutated, tuple(tests))]
    chosen = [m for m in MUTATIONS if not args.only or any(n in m.name for n in args.only)]
    if not chosen:
        raise SystemExit(f"no mutation matches {args.only}; names: {[m.name for m in MUTATIONS]}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    mutations = select(args)
    if not args.no_baseline:
        baseline(mutations, args.timeout)
    results = []
    for m in mutations:
        r = check_one(m, not args.all, args.timeout)
        print(f"{r['result']:>14}  {m.name}  {' '.join(r['caught_by'])}  ({r['seconds']:.0f} s)", flush=True)
        if r["result"] != "caught":
            print(r["detail"], flush=True)
        results.append(r)
    table = markdown(results)
    print(table)
    if args.out:
        args.out.write_text(table, encoding="utf-8")
    return 0 if all(r["result"] == "caught" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
