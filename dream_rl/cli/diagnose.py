"""``dream-rl diagnose``: memory diagnostics (observability gap, memory length) of trained runs."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

__all__ = ["add_diagnose", "cmd_diagnose"]

DESCRIPTION = """\
Memory diagnostics from the final scores of trained runs (dream_rl.experiments.diagnostics); builds
no env and loads no model.

Observability gap: per env, the memoryless policy (--baseline, default mlp) scored on the env and on
its fully observable twin (dream_rl/<Name>FullObs-v0); the gap is twin minus env. Each other policy's
score on the env gives the share of the gap it recovers (0: no better than no memory, 1: as good as
being shown the hidden information), aggregated over envs (IQM and mean, stratified-bootstrap CIs).
Envs whose gap is below --min-gap, or whose gap's 95% interval reaches 0, are left out of the shares.
Runs: configs/diagnostics_gap.yaml.

Memory length: on env labels <name>-L<length> (the passive T-maze at corridor lengths), the longest
length each policy solves (success, mean over seeds, at least --threshold).
Runs: configs/diagnostics_memory_length.yaml.

Each SOURCE is an experiment folder (<output_dir>/<name>/: every run evaluated so far), a folder
holding the scores.csv that `dream-rl report` writes, or such a file; a run found in several sources
keeps the first one's score. Writes diagnostics.md, scores.csv (every run read) and, where the scores
hold that diagnostic, gap.csv, recovered.csv, recovered_aggregate.csv, gap.png, memory_length.csv,
memory_length_summary.csv and memory_length.png into --out.
"""


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value


def add_diagnose(commands: argparse._SubParsersAction) -> None:
    diagnose = commands.add_parser(
        "diagnose",
        help="memory diagnostics of trained runs: observability gap, memory length",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    diagnose.add_argument("sources", nargs="+", metavar="SOURCE",
                          help="an experiment folder, a folder holding scores.csv, or a scores.csv file")
    diagnose.add_argument("--out", metavar="DIR", default=None,
                          help="where to write the tables and figures (default: SOURCE/diagnostics for a folder, "
                               "the scores.csv's folder/diagnostics for a file; the first SOURCE)")
    diagnose.add_argument("--baseline", metavar="LABEL", default="mlp",
                          help="the memoryless policy label the gap is measured with (default: mlp)")
    diagnose.add_argument("--min-gap", type=_fraction, default=0.1, metavar="G",
                          help="smallest gap (normalized score) an env needs to count in the shares (default: 0.1)")
    diagnose.add_argument("--threshold", type=_fraction, default=0.9, metavar="S",
                          help="success a policy needs to solve a T-maze length (default: 0.9)")
    diagnose.set_defaults(handler=cmd_diagnose)


def default_out(source: Path) -> Path:
    """``<source>/diagnostics`` for a folder, ``<its folder>/diagnostics`` for a file."""
    return (source if source.is_dir() else source.parent) / "diagnostics"


def cmd_diagnose(args: argparse.Namespace) -> int:
    from dream_rl.experiments.diagnostics import write_diagnostics  # matplotlib: loaded when it runs, not for --help

    sources = [Path(source) for source in args.sources]
    out = Path(args.out) if args.out is not None else default_out(sources[0])
    report = write_diagnostics(sources, out, baseline=args.baseline, min_gap=args.min_gap, threshold=args.threshold)
    for note in report.notes:
        print(note, file=sys.stderr)
    print(report.text)
    print("Written: " + ", ".join(str(path) for path in report.files))
    return 0
