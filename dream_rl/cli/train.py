"""``dream-rl train`` and ``dream-rl compare``: train every run of a config (``compare`` then reports)."""

from __future__ import annotations

import argparse
import shlex
import sys

from dream_rl.cli.common import add_config_arguments, add_train_arguments, load
from dream_rl.cli.report import print_report
from dream_rl.errors import ConfigError
from dream_rl.experiments.config import ExperimentConfig, config_to_yaml
from dream_rl.experiments.outcomes import RunsFailed
from dream_rl.experiments.records import check_writable_dir

__all__ = ["add_compare", "add_train", "cmd_compare", "cmd_train"]


def add_train(commands: argparse._SubParsersAction) -> None:
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
    add_config_arguments(train)
    add_train_arguments(train)
    train.add_argument("--dry-run", action="store_true", help="check the config, print it resolved and the runs, train nothing")
    train.set_defaults(handler=cmd_train)


def add_compare(commands: argparse._SubParsersAction) -> None:
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
    add_config_arguments(compare)
    add_train_arguments(compare)
    compare.set_defaults(handler=cmd_compare)


# The launcher, the parallel runs and the runner are imported when a handler runs: they load torch and
# SB3, which building the parser (and `--help`) must not.


def _train(args: argparse.Namespace, config: ExperimentConfig) -> None:
    from dream_rl.experiments.launch import run_experiment
    from dream_rl.experiments.parallel import check_ray_address, default_workers

    check_writable_dir(config.experiment_dir)  # before the first line of output
    if args.ray is not None:
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
    config = load(args)
    if args.dry_run:
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
    config = load(args)
    try:
        _train(args, config)
    except RunsFailed:
        try:  # compare the runs that did finish, then exit with the failure
            print_report(config)
        except ConfigError as error:
            print(f"dream-rl {args.command}: no report: {error}", file=sys.stderr)
        raise
    print_report(config)
    print(_tensorboard_hint(config))
    return 0
