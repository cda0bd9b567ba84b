"""nmt-align: word alignments from a trained model's attention; AER against a gold file.

    nmt-align run_dir=<run> src=FILE tgt=FILE gold=FILE    # AER / precision / recall per slot, layer, head
    nmt-align run_dir=<run> src=FILE tgt=FILE out=ALIGN     # Pharaoh "i-j" word alignments
"""
from __future__ import annotations

from nmt.cli.errors import job_command
from nmt.alignment.pipeline import AlignJob, align_run

PROG = "nmt-align"

main = job_command(PROG, "align", AlignJob, align_run)

if __name__ == "__main__":
    main()
