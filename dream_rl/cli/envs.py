"""``dream-rl envs``: the POMDP environment suite."""

from __future__ import annotations

import argparse

from dream_rl.envs import format_env_table

__all__ = ["add_envs", "cmd_envs"]


def add_envs(commands: argparse._SubParsersAction) -> None:
    envs = commands.add_parser(
        "envs",
        help="list the POMDP environment suite",
        description="List the environments registered by dream-rl (ids, what is hidden, what memory they need).",
    )
    envs.set_defaults(handler=cmd_envs)


def cmd_envs(args: argparse.Namespace) -> int:
    print(format_env_table())
    return 0
