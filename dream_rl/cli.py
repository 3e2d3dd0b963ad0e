"""The ``dream-rl`` command line (also ``python -m dream_rl``).

    dream-rl train    CONFIG [KEY.PATH=VALUE ...]   train every env x policy x seed (resumes, skips done
                      [--workers N] [--ray ADDRESS]   runs), N at once or as Ray tasks
    dream-rl compare  CONFIG [KEY.PATH=VALUE ...]   train, then write the comparison table and plot
    dream-rl report   CONFIG|DIR [KEY.PATH=VALUE ...] the comparison table and plot of finished runs
    dream-rl evaluate RUN_DIR                       evaluate a trained run (or every run of a dir)
    dream-rl tune     CONFIG --trials N             search hyper-parameters with Optuna
    dream-rl envs                                   list the POMDP environment suite

Bad input (an unknown key, a wrong value, a missing file, a folder that cannot be written) prints
one line on stderr and exits with status 2; Ctrl-C during training saves a checkpoint and exits with status 130; runs that
failed while others finished give status 1 (2 when each was a config problem, e.g. a locked run).

Each command is one ``_add_<command>(commands)`` function below plus one ``cmd_<command>``
handler; :func:`build_parser` lists them.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from dream_rl.errors import DreamRLError, first_line
from dream_rl.experiments.config import ConfigError, ExperimentConfig, config_to_yaml, load_config

OVERRIDES_HELP = (
    "dotted overrides of config values, read as YAML: train.total_timesteps=5000 "
    "'train.seeds=[0,1]' policies.dream.policy_kwargs.lstm_hidden_size=32. "
    "train.total_timesteps (or train.eval_every) applies to every env: it replaces the per-env values "
    "of an envs: list. env=null or envs=null removes that key"
)


def _add_config_arguments(parser: argparse.ArgumentParser, what: str = "CONFIG") -> None:
    parser.add_argument("config", metavar=what, help="experiment YAML file (see configs/)")
    parser.add_argument("overrides", nargs="*", default=[], metavar="KEY.PATH=VALUE", help=OVERRIDES_HELP)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**32 - 1], got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**32 - 1] (numpy's seeds), got {value}")
    return value


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fresh", action="store_true",
        help="delete the runs' previous outputs and start over (and let this config replace another one saved "
             "under the same experiment name)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (same as train.progress_bar=false)")
    parser.add_argument(
        "--workers", type=_positive_int, default=None, metavar="N",
        help="runs trained at once, each in its own process (default: CPU cores // train.torch_threads; "
             "1 trains in this process, with progress bars)",
    )
    parser.add_argument(
        "--ray", metavar="ADDRESS", default=None,
        help="run each run as a Ray task with train.torch_threads CPUs: 'local' starts Ray here, 'auto' joins "
             "the cluster of `ray start`, 'ray://HOST:10001' a remote one (output_dir must be shared by all nodes)",
    )


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
    from dream_rl import __version__

    parser.add_argument("--version", action="version", version=f"dream-rl {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_command in (_add_train, _add_compare, _add_report, _add_evaluate, _add_tune, _add_envs):
        add_command(commands)
    return parser


def _add_train(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train",
        help="train every policy on every env and seed of a config",
        description=(
            "Train one RecurrentPPO run per env, policy and seed of CONFIG. Each run writes TensorBoard logs, "
            "evaluations (eval.csv), checkpoints, final_model.zip, its resolved config.yaml and run_info.json "
            "under <output_dir>/<name>/[<env>/]<policy>/seed_<k>/. Finished runs are skipped; interrupted runs "
            "(Ctrl-C saves a checkpoint) resume from their last checkpoint. A run being trained elsewhere is "
            "locked and refused."
        ),
    )
    _add_config_arguments(train)
    _add_train_arguments(train)
    train.add_argument("--dry-run", action="store_true", help="check the config, print it resolved and the runs, train nothing")
    train.set_defaults(handler=cmd_train)


def _add_compare(commands: argparse._SubParsersAction) -> None:
    compare = commands.add_parser(
        "compare",
        help="train (as `train`), then write the comparison table and plot",
        description=(
            "`train` followed by `report`: trains the runs that are not finished, then writes comparison.md, "
            "comparison.csv (final normalized score and area under the learning curve, mean ± std over seeds, "
            "env steps/s) and learning_curves.png (mean with a band over seeds) per env, and with several envs "
            "the aggregate over envs (aggregate.md, aggregate.csv, performance_profiles.png, scores.csv)."
        ),
    )
    _add_config_arguments(compare)
    _add_train_arguments(compare)
    compare.set_defaults(handler=cmd_compare)


def _add_report(commands: argparse._SubParsersAction) -> None:
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
    _add_config_arguments(report, "CONFIG|DIR")
    report.set_defaults(handler=cmd_report)


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate trained runs",
        description=(
            "Load the final model of a run directory (<output_dir>/<name>/[<env>/]<policy>/seed_<k>/, or its "
            "latest checkpoint when it has no final model yet) and report the mean return and normalized score "
            "over fresh episodes. Given an experiment directory, evaluate every run in it."
        ),
    )
    evaluate.add_argument("run_dir", metavar="RUN_DIR", help="a run directory or an experiment directory")
    evaluate.add_argument(
        "--episodes", type=_positive_int, default=None, help="episodes per run (default: the config's train.eval_episodes)"
    )
    evaluate.add_argument("--stochastic", action="store_true", help="sample actions instead of taking the greedy ones")
    evaluate.add_argument("--model", metavar="ZIP", default=None, help="evaluate this model file instead (one run only)")
    evaluate.add_argument("--seed", type=_seed, default=12345, help="seed of the evaluation environments (default: 12345)")
    evaluate.set_defaults(handler=cmd_evaluate)


def _add_tune(commands: argparse._SubParsersAction) -> None:
    from dream_rl.experiments.tune import add_tune_command

    add_tune_command(commands, _add_config_arguments)


def _add_envs(commands: argparse._SubParsersAction) -> None:
    envs = commands.add_parser(
        "envs",
        help="list the POMDP environment suite",
        description="List the environments registered by dream-rl (ids, what is hidden, what memory they need).",
    )
    envs.set_defaults(handler=cmd_envs)


# --------------------------------------------------------------------------------------------
# Commands


def _load(args: argparse.Namespace) -> ExperimentConfig:
    return load_config(args.config, args.overrides)


def _train(args: argparse.Namespace, config: ExperimentConfig) -> None:
    from dream_rl.experiments.parallel import default_workers
    from dream_rl.experiments.records import check_writable_dir
    from dream_rl.experiments.launch import run_experiment

    check_writable_dir(config.experiment_dir)  # before the first line of output
    if args.ray is not None:
        from dream_rl.experiments.parallel import check_ray_address

        check_ray_address(args.ray)
    runs = len(config.runs())
    envs = config.env_list
    on = envs[0].id if len(envs) == 1 else f"{len(envs)} envs"
    workers = min(args.workers or default_workers(config), runs)
    where = f"Ray ({args.ray})" if args.ray else f"{workers} worker{'s' if workers > 1 else ''}"
    budgets = sorted({run.train.total_timesteps for run in config.runs()})
    steps = str(budgets[0]) if len(budgets) == 1 else f"{budgets[0]}-{budgets[-1]}"
    print(f"{config.name}: {len(envs)} env{'s' if len(envs) > 1 else ''} x {len(config.policies)} policies x "
          f"{len(config.train.seeds)} seeds = {runs} runs of {steps} steps on {on}, "
          f"{where} -> {config.experiment_dir}/")
    run_experiment(config, fresh=args.fresh, progress_bar=False if args.no_progress else None,
                   workers=workers, ray_address=args.ray)


def _tensorboard_hint(config: ExperimentConfig) -> str:
    return f"TensorBoard: tensorboard --logdir {shlex.quote(str(config.experiment_dir))}"


def cmd_train(args: argparse.Namespace) -> int:
    config = _load(args)
    if args.dry_run:
        from dream_rl.experiments.records import check_writable_dir
        from dream_rl.experiments.launch import check_experiment_folder
        from dream_rl.experiments.runner import check_buildable

        check_buildable(config)
        check_writable_dir(config.experiment_dir)
        check_experiment_folder(config, fresh=args.fresh)
        print(config_to_yaml(config), end="")
        print(f"# runs: {', '.join(run.name for run in config.runs())}")
        print(f"# outputs: {config.experiment_dir}/")
        return 0
    _train(args, config)
    print(f"Outputs: {config.experiment_dir}/   {_tensorboard_hint(config)}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from dream_rl.experiments.parallel import RunsFailed

    config = _load(args)
    try:
        _train(args, config)
    except RunsFailed:
        try:  # compare the runs that did finish, then exit with the failure
            _report(config)
        except ConfigError as error:
            print(f"dream-rl {args.command}: no report: {error}", file=sys.stderr)
        raise
    _report(config)
    print(_tensorboard_hint(config))
    return 0


def _report(config: ExperimentConfig) -> None:
    from dream_rl.experiments.report import write_report

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
    _report(config)
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


def cmd_evaluate(args: argparse.Namespace) -> int:
    from dream_rl.experiments.runner import evaluate_run, find_run_dirs

    run_dirs = find_run_dirs(Path(args.run_dir))
    if args.model is not None and len(run_dirs) != 1:
        raise ConfigError(f"--model needs a single run directory; {args.run_dir} holds {len(run_dirs)} runs")
    for run_dir in run_dirs:
        result = evaluate_run(
            run_dir,
            episodes=args.episodes,
            deterministic=not args.stochastic,
            model_path=Path(args.model) if args.model else None,
            seed=args.seed,
        )
        score = f", normalized score {result['mean_score']:.3f} ± {result['std_score']:.3f}" if result["mean_score"] is not None else ""
        print(
            f"{result['run']}: return {result['mean_return']:.2f} ± {result['std_return']:.2f}{score}, "
            f"length {result['mean_length']:.1f} ({result['episodes']} episodes, {result['model']})"
        )
    return 0


def cmd_envs(args: argparse.Namespace) -> int:
    from dream_rl.envs import format_env_table

    print(format_env_table())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dream-rl``; returns the exit status."""
    parser = build_parser()
    # overrides may also follow options (train CONFIG --fresh a.b=1): argparse leaves them over
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and not any(item.startswith("-") for item in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from dream_rl.experiments.parallel import ExperimentInterrupted, RunsFailed
    from dream_rl.experiments.runner import TrainingInterrupted

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
