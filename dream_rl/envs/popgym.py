"""POPGym environments under ``popgym/<Name>-v0`` ids, with observations Stable-Baselines3 takes.

POPGym (Morad et al., ICLR 2023, ``pip install popgym`` or ``dream-rl[popgym]``) registers its
envs with gymnasium as ``popgym-RepeatPreviousEasy-v0`` and friends. Many of them observe a
``Discrete``, ``MultiDiscrete`` or ``Tuple`` space, which SB3's Mlp policies do not take as they
come (``Tuple`` not at all). When popgym is installed, importing dream_rl registers every POPGym
env a second time under the gymnasium namespace ``popgym``: ``popgym/RepeatPreviousEasy-v0`` is
``popgym-RepeatPreviousEasy-v0`` wrapped in :class:`OneHotFlatten`, so that a config says::

    env: {id: popgym/RepeatPreviousEasy-v0}

and ``gymnasium.make("popgym/CountRecallHard-v0")`` gives a ``Box`` observation. Constructor
keyword arguments pass through (``gymnasium.make("popgym/RepeatPrevious-v0", k=8)``). POPGym's
own ids stay registered, unwrapped.

POPGym scales every env's episode return to [-1, 1]; dream-rl has no reference random/optimal
returns for them, so reports show returns (``normalized_score`` raises KeyError for these ids).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["OneHotFlatten", "make_popgym_env", "popgym_ids", "register_popgym_envs"]

NAMESPACE = "popgym"
_POPGYM_PREFIX = "popgym-"


class OneHotFlatten(gym.ObservationWrapper):
    """Observations as one flat float32 vector.

    ``Discrete(n)`` becomes a one-hot vector of length n, ``MultiDiscrete([n1, n2, ...])`` the
    concatenation of one-hot vectors, ``MultiBinary`` and ``Box`` are flattened, and ``Tuple`` /
    ``Dict`` spaces concatenate their parts in order (gymnasium's ``flatten``; ``Discrete`` with a
    ``start`` is one-hot from ``start``). The observation space is a ``Box`` with the matching
    bounds (0 and 1 for the one-hot parts).
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        flat = spaces.flatten_space(env.observation_space)
        if not isinstance(flat, spaces.Box):
            raise TypeError(f"OneHotFlatten: cannot flatten observations of {env.observation_space} into a Box")
        self.observation_space = spaces.Box(
            low=flat.low.astype(np.float32), high=flat.high.astype(np.float32), dtype=np.float32
        )

    def observation(self, observation: Any) -> np.ndarray:
        return np.asarray(spaces.flatten(self.env.observation_space, observation), dtype=np.float32)


def _check_action_space(space: spaces.Space, env_id: str) -> None:
    supported = (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary, spaces.Box)
    if not isinstance(space, supported):
        raise TypeError(f"{env_id}: action space {space} is not one Stable-Baselines3 supports")


def make_popgym_env(popgym_id: str, **kwargs: Any) -> gym.Env:
    """POPGym's env ``popgym_id`` (e.g. ``popgym-RepeatPreviousEasy-v0``) built with ``kwargs``,
    observations one-hot encoded and flattened (:class:`OneHotFlatten`)."""
    import popgym.envs  # noqa: F401  (registers POPGym's own ids)

    # popgym_id can come from a config's env kwargs: only POPGym's own registered ids (gymnasium's
    # spec("module:Name") would import `module` first)
    if not isinstance(popgym_id, str) or not popgym_id.startswith(_POPGYM_PREFIX) or popgym_id not in gym.registry:
        from dream_rl.errors import EnvError

        raise EnvError(f"popgym_id must be one of POPGym's registered ids (popgym-RepeatPreviousEasy-v0, ...), got {popgym_id!r}")
    spec = gym.spec(popgym_id)
    env_class = spec.entry_point
    if isinstance(env_class, str):
        module, _, name = env_class.partition(":")
        env_class = getattr(importlib.import_module(module), name)
    env = env_class(**{**spec.kwargs, **kwargs})  # unwrapped: POPGym truncates episodes itself
    _check_action_space(env.action_space, popgym_id)
    return OneHotFlatten(env)


def popgym_ids() -> list[str]:
    """POPGym's own ids (``popgym-<Name>-v0``) of the installed popgym; [] without popgym."""
    if importlib.util.find_spec("popgym") is None:
        return []
    import popgym.envs as popgym_envs

    return [entry["id"] for entry in popgym_envs.ALL.values()]


def register_popgym_envs() -> list[str]:
    """Register ``popgym/<Name>-v0`` for every POPGym env, if popgym is installed; returns the
    ids registered now. Idempotent."""
    registered = []
    for popgym_id in popgym_ids():
        ours = f"{NAMESPACE}/{popgym_id.removeprefix(_POPGYM_PREFIX)}"
        if ours in gym.registry:
            continue
        gym.register(
            id=ours,
            entry_point="dream_rl.envs.popgym:make_popgym_env",
            kwargs={"popgym_id": popgym_id},
        )
        registered.append(ours)
    return registered
