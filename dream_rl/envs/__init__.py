"""The dream-rl POMDP benchmark suite, registered with gymnasium under ``dream_rl/...`` ids.

Importing ``dream_rl`` calls :func:`register_envs`, after which ``gymnasium.make("dream_rl/TMaze-v0",
corridor_length=100)`` works. Envs are built lazily from ``"module:callable"`` entry points, so
this module stays light: it imports neither torch nor the env modules.

Five families (see :data:`FAMILIES`): partially observed classic control, the T-maze, repeat /
recall diagnostics, non-stationary tasks and cross-episode (meta-RL) tasks. :func:`list_envs` and
:func:`format_env_table` describe them; :func:`normalized_score` puts returns on a common [0, 1]
scale (0 = random policy, 1 = optimal). Each env also has a fully observable twin (:data:`TWINS`,
``dream_rl/<Name>FullObs-v0``, see :func:`twin_id`), the upper reference of the memory diagnostics.
"""

from __future__ import annotations

from dream_rl.envs.scores import (
    FAMILIES,
    SUITE,
    TWINS,
    EnvSpecInfo,
    estimate_random_return,
    format_env_table,
    get_env_info,
    list_envs,
    load_scripted_policy,
    normalized_score,
    twin_id,
)

__all__ = [
    "FAMILIES",
    "SUITE",
    "TWINS",
    "EnvSpecInfo",
    "estimate_random_return",
    "format_env_table",
    "get_env_info",
    "list_envs",
    "load_scripted_policy",
    "normalized_score",
    "register_envs",
    "twin_id",
]


def register_envs() -> None:
    """Register every suite environment and its fully observable twin under the ``dream_rl/`` namespace.

    Idempotent: ids already in ``gymnasium.registry`` are left alone, so calling it twice (or
    after a user registered an id of the same name) is harmless.
    """
    import gymnasium

    for info in (*SUITE, *TWINS):
        if info.id in gymnasium.registry:
            continue
        gymnasium.register(
            id=info.id,
            entry_point=info.entry_point,
            kwargs=dict(info.kwargs),
            max_episode_steps=info.max_episode_steps if info.time_limit else None,
        )

    from dream_rl.envs.popgym import register_popgym_envs

    register_popgym_envs()  # popgym/<Name>-v0 ids, when the optional popgym package is installed
