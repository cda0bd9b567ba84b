"""Is a run's test BLEU different from the baseline's? The paired bootstrap over test sentences
(nmt.scoring.paired_bootstrap: two-sided, resampled differences shifted to mean 0), one seed per system;
nmt.evaluation.seeds pools seeds with the same test."""
from __future__ import annotations

import logging


from nmt.models.build import build_corpus
from nmt.runs.sweep import Run
from nmt.scoring import paired_bootstrap

log = logging.getLogger("nmt.compare")


def references(run: Run) -> list[str] | None:
    """test.ref.txt (written by nmt-train), else the test split loaded again from the run's data config."""
    ref = run.path / "test.ref.txt"
    if ref.is_file():
        return ref.read_text(encoding="utf-8").splitlines()
    try:
        data = run.config.data
        return list(build_corpus(data.corpus).load(data.split_name("test"))["tgt"])
    except Exception as e:  # noqa: BLE001 - any failure only costs the significance column
        log.warning("%s: no test.ref.txt and the test split could not be loaded (%s)", run.name, e)
        return None


def significance(runs: list[Run], baseline: Run, samples: int) -> dict[str, float]:
    """{run name: p} of every other run's test BLEU against the baseline's: paired bootstrap resampling of the
    test sentences (Koehn 2004; nmt.scoring.paired_bootstrap); {} when hypotheses or references are missing."""
    refs = references(baseline)
    systems = [(r.name, (r.path / "test.beam.hyp.txt").read_text(encoding="utf-8").splitlines())
               for r in [baseline, *[r for r in runs if r is not baseline]]
               if (r.path / "test.beam.hyp.txt").is_file()]
    systems = [(n, h) for n, h in systems if refs is not None and len(h) == len(refs)]
    if not systems or systems[0][0] != baseline.name or len(systems) < 2:
        log.warning("significance test skipped: needs test.beam.hyp.txt of the baseline and another run, "
                    "and the references")
        return {}
    return paired_bootstrap(systems, refs, samples)
