"""POMDP benchmark suite (being written: see issue 4)."""


def register_envs() -> None:
    """Register every suite environment under the ``dream_rl/`` namespace (idempotent)."""
