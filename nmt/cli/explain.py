"""nmt-explain: does the attention explain the output? Counterfactual weights per slot, one table.

    nmt-explain run_dir=<run> split=valid
Writes <run_dir>/explain.md and explain.json (or out=FILE and FILE.json) and prints the table.
"""
from __future__ import annotations

from nmt.cli.errors import job_command
from nmt.alignment.explain import ExplainJob, explain_run

PROG = "nmt-explain"

main = job_command(PROG, "explain", ExplainJob, explain_run)

if __name__ == "__main__":
    main()
