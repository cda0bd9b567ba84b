"""nmt-score: the trained model's log-probability of given translations, one JSON line per sentence pair.

    nmt-score run_dir=<run> src=FILE tgt=FILE [out=FILE] [checkpoint=best|last|avg_last5|PATH]
"""
from __future__ import annotations

from nmt.cli.errors import job_command
from nmt.evaluation.score import ScoreJob, score_run

PROG = "nmt-score"

main = job_command(PROG, "score", ScoreJob, score_run)

if __name__ == "__main__":
    main()
