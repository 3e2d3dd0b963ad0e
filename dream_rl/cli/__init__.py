"""The ``dream-rl`` command line (also ``python -m dream_rl``).

    dream-rl train    CONFIG [KEY.PATH=VALUE ...]   train every env x policy x seed (resumes, skips done
                      [--workers N] [--ray ADDRESS]   runs), N at once or as Ray tasks
    dream-rl compare  CONFIG [KEY.PATH=VALUE ...]   train, then write the comparison table and plot
    dream-rl report   CONFIG|DIR [KEY.PATH=VALUE ...] the comparison table and plot of finished runs
    dream-rl evaluate RUN_DIR                       evaluate a trained run (or every run of a dir)
    dream-rl tune     CONFIG --trials N             search hyper-parameters with Optuna
    dream-rl diagnose SOURCE ...                    memory diagnostics: observability gap, memory length
    dream-rl envs                                   list the POMDP environment suite

Bad input (an unknown key, a wrong value, a missing file, a folder that cannot be written) prints
one line on stderr and exits with status 2; Ctrl-C during training saves a checkpoint and exits with
status 130; runs that failed while others finished give status 1 (2 when each was a config problem,
e.g. a locked run).

One module per subcommand (:mod:`.train` holds ``train`` and ``compare``), each with an
``add_<command>(commands)`` function that declares its arguments and a ``cmd_<command>`` handler;
:func:`build_parser` lists them. The modules that load torch, SB3 or matplotlib (the runner, the
launcher, tuning, reports, diagnostics) are imported by the handlers when they run, so that building the
parser, and ``dream-rl --help``, load none of them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from dream_rl import __version__
from dream_rl.cli.common import OVERRIDES_HELP
from dream_rl.cli.diagnose import add_diagnose, cmd_diagnose
from dream_rl.cli.envs import add_envs, cmd_envs
from dream_rl.cli.evaluate import add_evaluate, cmd_evaluate
from dream_rl.cli.report import add_report, cmd_report
from dream_rl.cli.train import add_compare, add_train, cmd_compare, cmd_train
from dream_rl.cli.tune import add_tune, cmd_tune
from dream_rl.errors import DreamRLError, first_line
from dream_rl.experiments.outcomes import ExperimentInterrupted, RunsFailed, TrainingInterrupted

__all__ = [
    "OVERRIDES_HELP",
    "build_parser",
    "cmd_compare",
    "cmd_diagnose",
    "cmd_envs",
    "cmd_evaluate",
    "cmd_report",
    "cmd_train",
    "cmd_tune",
    "main",
]


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line (with where to find the usage), as dream-rl's own."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (usage: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dream-rl",
        description="Train and compare memory policies (DREAM, LSTM, GRU, ...) with RecurrentPPO from YAML configs.",
        epilog="Quick start: dream-rl compare configs/quickstart.yaml   (then: tensorboard --logdir runs/)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dream-rl {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_command in (add_train, add_compare, add_report, add_evaluate, add_tune, add_diagnose, add_envs):
        add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dream-rl``; returns the exit status."""
    parser = build_parser()
    # overrides may also follow options (train CONFIG --fresh a.b=1): argparse leaves them over
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and not any(item.startswith("-") for item in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")

    try:
        return args.handler(args)
    except DreamRLError as error:  # ConfigError, and an env's or a policy's own bad-value error
        print(f"dream-rl {args.command}: error: {first_line(error)}", file=sys.stderr)
        return 2
    except RunsFailed as failed:
        print(f"dream-rl {args.command}: error: {failed}", file=sys.stderr)
        return failed.exit_status
    except ExperimentInterrupted as stop:
        print(
            f"\ndream-rl {args.command}: interrupted; {len(stop.interrupted)} running runs saved their checkpoints. "
            "Run the same command again to resume.",
            file=sys.stderr,
        )
        return 130
    except TrainingInterrupted as stop:
        print(
            f"\ndream-rl {args.command}: interrupted at {stop.timesteps} steps; checkpoint and logs saved in "
            f"{stop.run_dir}. Run the same command again to resume.",
            file=sys.stderr,
        )
        return 130
    except KeyboardInterrupt:
        print(f"\ndream-rl {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as error:  # a file system failure the checks above did not foresee (a full disk, ...)
        where = f"{error.filename}: " if error.filename else ""
        print(f"dream-rl {args.command}: error: {where}{error.strerror or first_line(error)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
