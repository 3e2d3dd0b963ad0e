"""Arguments and helpers shared by the subcommands: CONFIG with its overrides, the training options,
argument types whose errors are one line."""

from __future__ import annotations

import argparse

from dream_rl.experiments.config import ExperimentConfig, load_config

__all__ = ["OVERRIDES_HELP", "add_config_arguments", "add_train_arguments", "load", "positive_int", "seed"]

OVERRIDES_HELP = (
    "dotted overrides of config values, read as YAML: train.total_timesteps=5000 "
    "'train.seeds=[0,1]' policies.dream.policy_kwargs.lstm_hidden_size=32. "
    "train.total_timesteps (or train.eval_every) applies to every env: it replaces the per-env values "
    "of an envs: list. env=null or envs=null removes that key"
)


def add_config_arguments(parser: argparse.ArgumentParser, what: str = "CONFIG") -> None:
    """CONFIG (a YAML file) and the KEY.PATH=VALUE overrides after it."""
    parser.add_argument("config", metavar=what, help="experiment YAML file (see configs/)")
    parser.add_argument("overrides", nargs="*", default=[], metavar="KEY.PATH=VALUE", help=OVERRIDES_HELP)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**32 - 1], got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**32 - 1] (numpy's seeds), got {value}")
    return value


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """--fresh, --no-progress, --workers and --ray (train and compare)."""
    parser.add_argument(
        "--fresh", action="store_true",
        help="delete the runs' previous outputs and start over (and let this config replace another one saved "
             "under the same experiment name)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (same as train.progress_bar=false)")
    parser.add_argument(
        "--workers", type=positive_int, default=None, metavar="N",
        help="runs trained at once, each in its own process (default: CPU cores // train.torch_threads; "
             "1 trains in this process, with progress bars)",
    )
    parser.add_argument(
        "--ray", metavar="ADDRESS", default=None,
        help="run each run as a Ray task with train.torch_threads CPUs: 'local' starts Ray here, 'auto' joins "
             "the cluster of `ray start`, 'ray://HOST:10001' a remote one (output_dir must be shared by all nodes)",
    )


def load(args: argparse.Namespace) -> ExperimentConfig:
    """The config of CONFIG with its overrides, validated (and its envs built once)."""
    return load_config(args.config, args.overrides)
