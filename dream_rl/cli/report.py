"""``dream-rl report``: the comparison table and plots of trained runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dream_rl.cli.common import add_config_arguments
from dream_rl.errors import ConfigError
from dream_rl.experiments.config import ExperimentConfig, load_config

__all__ = ["add_report", "cmd_report", "print_report"]


def add_report(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser(
        "report",
        help="write the comparison table and plot of trained runs",
        description=(
            "Write comparison.md, comparison.csv and learning_curves.png for the runs of CONFIG, or of an "
            "experiment directory (<output_dir>/<name>/, which holds the resolved config.yaml), per env, and "
            "with several envs the aggregate over envs (IQM with 95% bootstrap CIs, probability of improvement "
            "over report.baseline, performance profiles). Runs without evaluations are left out with a note."
        ),
    )
    add_config_arguments(report, "CONFIG|DIR")
    report.set_defaults(handler=cmd_report)


def print_report(config: ExperimentConfig) -> None:
    """Write the report of ``config``'s runs and print its tables (notes on stderr)."""
    from dream_rl.experiments.report import write_report  # matplotlib: loaded when a report is written, not for --help

    report = write_report(config, log=lambda line: print(line, file=sys.stderr))
    print()
    print(report.text)
    print("Written: " + ", ".join(str(path) for path in report.files))


def cmd_report(args: argparse.Namespace) -> int:
    path = Path(args.config)
    folder = None
    if path.is_dir():
        if not (path / "config.yaml").is_file():
            raise ConfigError(f"{path} has no config.yaml: give an experiment directory (<output_dir>/<name>/) or a config file")
        folder, path = path, path / "config.yaml"
    # data only: a report reads CSV and YAML files, and builds or imports nothing named in them
    config = load_config(path, args.overrides, build_envs=False)
    overridden = {text.partition("=")[0].strip() for text in args.overrides}
    if folder is not None and not overridden & {"output_dir", "name"}:
        # the runs are in the folder given, wherever it was copied to: its config.yaml's output_dir
        # (relative to where it was trained, or pointing anywhere) is neither read nor written
        experiment = _experiment_folder(config, folder if folder.name not in ("", ".", "..") else folder.resolve())
        config = config.model_copy(update={"output_dir": str(experiment.parent), "name": experiment.name})
    print_report(config)
    return 0


def _experiment_folder(config: ExperimentConfig, folder: Path) -> Path:
    """The experiment folder of ``folder``: ``folder`` itself, or for a run folder (whose config.yaml
    holds one run, ``[<env>/]<policy>/seed_<k>``) the folder that many levels up."""
    runs = config.runs()
    if len(runs) == 1 and (folder / "run_info.json").is_file():
        parts = runs[0].run_dir.relative_to(config.experiment_dir).parts
        if folder.parts[-len(parts):] == parts:
            return folder.parents[len(parts) - 1]
    return folder
