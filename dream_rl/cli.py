"""The ``dream-rl`` command line (also ``python -m dream_rl``).

    dream-rl train    CONFIG [KEY.PATH=VALUE ...]   train every policy x seed (resumes, skips done runs)
    dream-rl compare  CONFIG [KEY.PATH=VALUE ...]   train, then write the comparison table and plot
    dream-rl report   CONFIG|DIR [KEY.PATH=VALUE ...] the comparison table and plot of finished runs
    dream-rl evaluate RUN_DIR                       evaluate a trained run (or every run of a dir)
    dream-rl tune     CONFIG --trials N             search hyper-parameters with Optuna
    dream-rl envs                                   list the POMDP environment suite

Bad input (an unknown key, a wrong value, a missing file) prints one line on stderr and exits
with status 2; Ctrl-C during training saves a checkpoint and exits with status 130.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from dream_rl.experiments.config import ConfigError, ExperimentConfig, config_to_yaml, load_config

OVERRIDES_HELP = (
    "dotted overrides of config values, read as YAML: train.total_timesteps=5000 "
    "'train.seeds=[0,1]' policies.dream.policy_kwargs.lstm_hidden_size=32"
)


def _add_config_arguments(parser: argparse.ArgumentParser, what: str = "CONFIG") -> None:
    parser.add_argument("config", metavar=what, help="experiment YAML file (see configs/)")
    parser.add_argument("overrides", nargs="*", default=[], metavar="KEY.PATH=VALUE", help=OVERRIDES_HELP)


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fresh", action="store_true", help="delete the runs' previous outputs and start over")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (same as train.progress_bar=false)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dream-rl",
        description="Train and compare memory policies (DREAM, LSTM, GRU) with RecurrentPPO from YAML configs.",
        epilog="Quick start: dream-rl compare configs/quickstart.yaml   (then: tensorboard --logdir runs/)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from dream_rl import __version__

    parser.add_argument("--version", action="version", version=f"dream-rl {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train",
        help="train every policy on every seed of a config",
        description=(
            "Train one RecurrentPPO run per policy per seed of CONFIG. Each run writes TensorBoard logs, "
            "evaluations (eval.csv), checkpoints, final_model.zip, its resolved config.yaml and run_info.json "
            "under <output_dir>/<name>/<policy>/seed_<k>/. Finished runs are skipped; interrupted runs "
            "(Ctrl-C saves a checkpoint) resume from their last checkpoint."
        ),
    )
    _add_config_arguments(train)
    _add_train_arguments(train)
    train.add_argument("--dry-run", action="store_true", help="check the config, print it resolved and the runs, train nothing")
    train.set_defaults(handler=cmd_train)

    compare = commands.add_parser(
        "compare",
        help="train (as `train`), then write the comparison table and plot",
        description=(
            "`train` followed by `report`: trains the runs that are not finished, then writes comparison.md, "
            "comparison.csv (final normalized score and area under the learning curve, mean ± std over seeds, "
            "env steps/s) and learning_curves.png (mean with a band over seeds) in <output_dir>/<name>/."
        ),
    )
    _add_config_arguments(compare)
    _add_train_arguments(compare)
    compare.set_defaults(handler=cmd_compare)

    report = commands.add_parser(
        "report",
        help="write the comparison table and plot of trained runs",
        description=(
            "Write comparison.md, comparison.csv and learning_curves.png for the runs of CONFIG, or of an "
            "experiment directory (<output_dir>/<name>/, which holds the resolved config.yaml). Runs without "
            "evaluations are left out with a note."
        ),
    )
    _add_config_arguments(report, "CONFIG|DIR")
    report.set_defaults(handler=cmd_report)

    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate trained runs",
        description=(
            "Load the final model of a run directory (<output_dir>/<name>/<policy>/seed_<k>/, or its latest "
            "checkpoint when it has no final model yet) and report the mean return and normalized score over "
            "fresh episodes. Given an experiment directory, evaluate every run in it."
        ),
    )
    evaluate.add_argument("run_dir", metavar="RUN_DIR", help="a run directory or an experiment directory")
    evaluate.add_argument("--episodes", type=int, default=None, help="episodes per run (default: the config's train.eval_episodes)")
    evaluate.add_argument("--stochastic", action="store_true", help="sample actions instead of taking the greedy ones")
    evaluate.add_argument("--model", metavar="ZIP", default=None, help="evaluate this model file instead (one run only)")
    evaluate.add_argument("--seed", type=int, default=12345, help="seed of the evaluation environments (default: 12345)")
    evaluate.set_defaults(handler=cmd_evaluate)

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
    _add_config_arguments(tune)
    tune.add_argument("--trials", type=int, required=True, metavar="N", help="number of trials to run (more are added to an existing study)")
    tune.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="Optuna storage shared by workers and machines: an RDB URL (sqlite:///study.db, postgresql://...), "
        "or a journal file (PATH.log or journal:PATH). Default: <output_dir>/<name>/study.db (SQLite)",
    )
    tune.add_argument("--workers", type=int, default=1, metavar="N", help="processes running trials at once on this machine (default: 1)")
    tune.add_argument("--study-name", default=None, metavar="S", help="study name in the storage (default: the config's name)")
    tune.set_defaults(handler=cmd_tune)

    envs = commands.add_parser(
        "envs",
        help="list the POMDP environment suite",
        description="List the environments registered by dream-rl (ids, what is hidden, what memory they need).",
    )
    envs.set_defaults(handler=cmd_envs)
    return parser


# --------------------------------------------------------------------------------------------
# Commands


def _load(args: argparse.Namespace) -> ExperimentConfig:
    return load_config(args.config, args.overrides)


def _train(args: argparse.Namespace, config: ExperimentConfig) -> None:
    from dream_rl.experiments.runner import run_experiment

    runs = len(config.runs())
    print(f"{config.name}: {len(config.policies)} policies x {len(config.train.seeds)} seeds = {runs} runs "
          f"of {config.train.total_timesteps} steps on {config.env.id} -> {config.experiment_dir}/")
    run_experiment(config, fresh=args.fresh, progress_bar=False if args.no_progress else None)


def cmd_train(args: argparse.Namespace) -> int:
    config = _load(args)
    if args.dry_run:
        from dream_rl.experiments.runner import check_buildable

        check_buildable(config)
        print(config_to_yaml(config), end="")
        print(f"# runs: {', '.join(f'{label}/seed_{seed}' for label, seed in config.runs())}")
        print(f"# outputs: {config.experiment_dir}/")
        return 0
    _train(args, config)
    print(f"Outputs: {config.experiment_dir}/   TensorBoard: tensorboard --logdir {config.experiment_dir}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    config = _load(args)
    _train(args, config)
    _report(config)
    print(f"TensorBoard: tensorboard --logdir {config.experiment_dir}")
    return 0


def _report(config: ExperimentConfig) -> None:
    from dream_rl.experiments.report import write_report

    paths = write_report(config, log=lambda line: print(line, file=sys.stderr))
    print()
    print(paths.text)
    print(f"Table: {paths.markdown} and {paths.csv}\nPlot:  {paths.plot}")


def cmd_report(args: argparse.Namespace) -> int:
    path = Path(args.config)
    if path.is_dir():
        if not (path / "config.yaml").is_file():
            raise ConfigError(f"{path} has no config.yaml: give an experiment directory (<output_dir>/<name>/) or a config file")
        path = path / "config.yaml"
    _report(load_config(path, args.overrides))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from dream_rl.experiments.runner import evaluate_run, find_run_dirs

    if args.episodes is not None and args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
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


def cmd_tune(args: argparse.Namespace) -> int:
    try:
        import optuna  # noqa: F401
    except ImportError as error:  # optuna is an optional extra
        raise ConfigError(f"dream-rl tune needs Optuna: pip install 'dream-rl[tune]' ({error})") from None
    from dream_rl.experiments.tune import run_tuning

    run_tuning(args.config, args.overrides, n_trials=args.trials, storage=args.storage,
               study_name=args.study_name, workers=args.workers)
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
    from dream_rl.experiments.runner import TrainingInterrupted

    try:
        return args.handler(args)
    except ConfigError as error:
        print(f"dream-rl {args.command}: error: {error}", file=sys.stderr)
        return 2
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


if __name__ == "__main__":
    sys.exit(main())
