"""``dream-rl tune``: search hyper-parameters of a config with Optuna (:mod:`dream_rl.experiments.tune`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from dream_rl.cli.common import add_config_arguments
from dream_rl.errors import ConfigError

__all__ = ["add_tune", "add_tune_command", "cmd_tune"]


def add_tune(commands: argparse._SubParsersAction) -> None:
    add_tune_command(commands, add_config_arguments)


def add_tune_command(commands: Any, add_config_arguments: Callable[[Any], None] = add_config_arguments) -> None:
    """Add ``dream-rl tune`` to the CLI's subparsers (``add_config_arguments`` adds CONFIG and
    the KEY.PATH=VALUE overrides, as for the other commands)."""
    tune = commands.add_parser(
        "tune",
        help="search hyper-parameters of a config with Optuna",
        description=(
            "Search the algo and policy_kwargs values declared under `tune: space:` in CONFIG with Optuna "
            "(TPE sampler, median pruning on the periodic evaluations). Each trial trains every env and seed "
            "of the config; its value is the mean normalized evaluation score (tune.objective: final, the last "
            "evaluation, or auc, the area under the learning curve). Writes best_config.yaml, ready for "
            "`dream-rl compare`, and trials.csv in <output_dir>/<name>/. See configs/tune_tmaze.yaml."
        ),
    )
    add_config_arguments(tune)
    tune.add_argument("--trials", type=int, required=True, metavar="N",
                      help="number of trials to run (more are added to an existing study)")
    tune.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="Optuna storage shared by workers and machines: an RDB URL (sqlite:///study.db, postgresql://...), "
        "a journal file (PATH.log, PATH.journal or journal:PATH) or an SQLite file (PATH.db, .sqlite, .sqlite3); "
        "anything else is refused. Default: <output_dir>/<name>/study.db (SQLite)",
    )
    tune.add_argument("--workers", type=int, default=1, metavar="N",
                      help="processes running trials at once on this machine (default: 1)")
    tune.add_argument("--study-name", default=None, metavar="S", help="study name in the storage (default: the config's name)")
    tune.set_defaults(handler=cmd_tune)


def cmd_tune(args: Any) -> int:
    """``dream-rl tune``: bad input raises ConfigError (exit 2 in the CLI's main)."""
    try:
        import optuna  # noqa: F401  (an optional extra: say how to install it before anything else)
    except ImportError as error:
        raise ConfigError(f"dream-rl tune needs Optuna: pip install 'dream-rl[tune]' ({error})") from None
    from dream_rl.experiments.tune import run_tuning  # torch and SB3: loaded when it runs, not for --help

    try:
        run_tuning(args.config, args.overrides, n_trials=args.trials, storage=args.storage,
                   study_name=args.study_name, workers=args.workers)
    except KeyboardInterrupt:  # the running trial is lost; finished ones stay in the study
        print("\ndream-rl tune: interrupted; the study keeps its finished trials: run the same command to add more",
              file=sys.stderr)
        return 130
    return 0
