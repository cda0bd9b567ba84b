"""nmt-export: a trained Transformer run as a CTranslate2 model directory.

    nmt-export run_dir=<run> out=ct2_model [quantization=int8]
"""
from __future__ import annotations

from nmt.cli.errors import job_command
from nmt.runs.export import ExportJob, export_run

PROG = "nmt-export"

main = job_command(PROG, "export", ExportJob, lambda settings: print(export_run(settings)))

if __name__ == "__main__":
    main()
