"""nmt-average: average a run's newest step checkpoints into checkpoints/avg_last<N>.pt.

    nmt-average run_dir=<run> last=5        # then checkpoint=avg_last5 in nmt-evaluate, -translate, -align, -score
"""
from __future__ import annotations

from nmt.cli.errors import job_command
from nmt.runs.average import AverageJob, average_run

PROG = "nmt-average"

main = job_command(PROG, "average", AverageJob, lambda settings: print(average_run(settings)))

if __name__ == "__main__":
    main()
