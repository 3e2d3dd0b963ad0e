"""``dream-rl evaluate``: evaluate trained runs on fresh episodes."""

from __future__ import annotations

import argparse
from pathlib import Path

from dream_rl.cli.common import positive_int, seed
from dream_rl.errors import ConfigError

__all__ = ["add_evaluate", "cmd_evaluate"]


def add_evaluate(commands: argparse._SubParsersAction) -> None:
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
        "--episodes", type=positive_int, default=None, help="episodes per run (default: the config's train.eval_episodes)"
    )
    evaluate.add_argument("--stochastic", action="store_true", help="sample actions instead of taking the greedy ones")
    evaluate.add_argument("--model", metavar="ZIP", default=None, help="evaluate this model file instead (one run only)")
    evaluate.add_argument("--seed", type=seed, default=12345, help="seed of the evaluation environments (default: 12345)")
    evaluate.add_argument(
        "--freeze-plasticity", action="store_true",
        help="DREAM policies: play with the fast weights not written (eta = 0), in this evaluation only",
    )
    evaluate.set_defaults(handler=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    # torch and SB3: loaded when it runs, not for --help
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
            freeze_plasticity=args.freeze_plasticity,
        )
        score = f", normalized score {result['mean_score']:.3f} ± {result['std_score']:.3f}" if result["mean_score"] is not None else ""
        print(
            f"{result['run']}: return {result['mean_return']:.2f} ± {result['std_return']:.2f}{score}, "
            f"length {result['mean_length']:.1f} ({result['episodes']} episodes, {result['model']}"
            + (", plasticity frozen)" if args.freeze_plasticity else ")")
        )
    return 0
