"""RL² trials: ``k`` episodes of an env as one episode, so that a recurrent policy's memory survives
the episode boundaries inside it (Duan et al. 2016, "RL²"; Memorax's ``RL2Wrapper``).

RecurrentPPO resets its memory whenever an episode ends. :class:`RL2Trial` hides the inner episode
ends from it: an inner episode's end resets the inner env (with the same task) and the trial goes on;
an *inner-episode-start flag* in the observation (1 at the first step of every inner episode, 0
elsewhere) tells the policy where the boundaries are. Any torso then carries memory across the trial.

From a config or ``gymnasium.make``: ``dream_rl/RL2-v0`` with ``env`` (a registered gymnasium id),
``env_kwargs`` and the wrapper's arguments; the defaults are 5 episodes of the 5-armed
:class:`~dream_rl.envs.bandit.BanditEnv`, the setting of ``dream_rl/MetaBandit-v0``::

    env:
      id: dream_rl/RL2-v0
      kwargs: {env: dream_rl/TMaze-v0, episodes_per_trial: 3, env_kwargs: {corridor_length: 5}}

``env`` names an env, never code: a ``"module:callable"`` entry point is refused (a config could
otherwise call any function, ``os:system`` included). An env of your own is registered in Python
first, then named by its id::

    gymnasium.register("MyTask-v0", entry_point=MyTaskEnv)
    gymnasium.make("dream_rl/RL2-v0", env="MyTask-v0")
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from dream_rl.envs._common import EndOfEpisodeGuard, check_bool, check_int
from dream_rl.errors import EnvError

__all__ = ["BUILDS_ENV_BY_NAME", "RL2Trial", "FLAG_KEY", "check_registered_id", "make_rl2_trial"]

# Registered ids whose env builds another env named in its kwargs through the old ``gym`` package
# (shimmy's compatibility envs), whose ``make("module:Name")`` imports any module: never named by a
# config, so that an env name from a config or a results folder reaches only registered code.
BUILDS_ENV_BY_NAME = frozenset({"GymV21Environment-v0", "GymV26Environment-v0"})

FLAG_KEY = "inner_episode_start"
INNER_TRUNCATION = ("ends_trial", "next_episode")


class RL2Trial(gym.Wrapper):
    """``episodes_per_trial`` inner episodes of ``env`` as one trial, with an inner-episode-start flag.

    Observation: a 1-D float ``Box`` gets the flag appended (one more entry, bounds [0, 1]); a ``Dict``
    gets an extra key ``"inner_episode_start"`` (``Box(0, 1, (1,))``); any other space (images and
    other multi-dimensional boxes, ``Discrete``, ``Tuple``, ...) becomes
    ``Dict(observation=<the space>, inner_episode_start=Box(0, 1, (1,)))`` (use a ``MultiInput`` policy).

    Episode end: the trial *terminates* when the ``episodes_per_trial``-th inner episode ends. An inner
    episode that is *truncated* (ran out of time) ends the trial as truncated (``inner_truncation=
    "ends_trial"``, the default: time ran out, bootstrap) or counts as an inner episode end like a
    termination (``"next_episode"``). The reward of every step passes through unchanged.

    Task: with ``same_task=True`` (default) every inner episode of a trial resets the env with the same
    seed, drawn per trial from the seed given to :meth:`reset`: an env that draws its task at reset
    (the bandit's paying arm, the T-maze's cue) keeps it for the trial; note that the inner episodes'
    randomness then repeats too. With ``same_task=False`` inner resets pass no seed and the env decides
    what it keeps.

    ``info`` carries ``inner_episode`` (the index of the inner episode the next step belongs to) and,
    where an inner episode ended inside the trial, ``inner_final_observation`` and ``inner_final_info``.
    ``trial_steps`` counts the steps of the current trial.
    """

    def __init__(
        self,
        env: gym.Env,
        episodes_per_trial: int = 5,
        same_task: bool = True,
        inner_truncation: str = "ends_trial",
    ) -> None:
        super().__init__(env)
        self.episodes_per_trial = check_int("episodes_per_trial", episodes_per_trial, minimum=1)
        if inner_truncation not in INNER_TRUNCATION:
            raise ValueError(f"inner_truncation must be one of {INNER_TRUNCATION}, got {inner_truncation!r}")
        self.same_task = bool(same_task)
        self.inner_truncation = inner_truncation
        inner = env.observation_space
        flag = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        if isinstance(inner, spaces.Box) and len(inner.shape) == 1 and np.issubdtype(inner.dtype, np.floating):
            self._layout = "append"
            self.observation_space = spaces.Box(
                np.append(inner.low, 0.0).astype(inner.dtype), np.append(inner.high, 1.0).astype(inner.dtype),
                dtype=inner.dtype,
            )
        elif isinstance(inner, spaces.Dict):
            if FLAG_KEY in inner.spaces:
                raise ValueError(f"the observation space already has a key {FLAG_KEY!r}")
            self._layout = "key"
            self.observation_space = spaces.Dict({**inner.spaces, FLAG_KEY: flag})
        else:
            self._layout = "dict"
            self.observation_space = spaces.Dict({"observation": inner, FLAG_KEY: flag})
        self._trial_seeds: np.random.Generator | None = None
        self._task_seed: int | None = None
        self.inner_episode = 0
        self.trial_steps = 0

    def _flagged(self, obs: Any, start: bool) -> Any:
        flag = 1.0 if start else 0.0
        if self._layout == "append":
            return np.append(obs, flag).astype(self.observation_space.dtype)
        flag_array = np.array([flag], dtype=np.float32)
        if self._layout == "key":
            return {**obs, FLAG_KEY: flag_array}
        return {"observation": obs, FLAG_KEY: flag_array}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if seed is not None or self._trial_seeds is None:
            self._trial_seeds = np.random.default_rng(seed)
        self._task_seed = int(self._trial_seeds.integers(2**31 - 1))
        self.inner_episode = 0
        self.trial_steps = 0
        obs, info = self.env.reset(seed=self._task_seed, options=options)
        return self._flagged(obs, True), {**info, "inner_episode": 0}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.trial_steps += 1
        info = dict(info)
        if truncated and self.inner_truncation == "ends_trial":
            info["inner_episode"] = self.inner_episode
            return self._flagged(obs, False), reward, False, True, info
        if not (terminated or truncated):
            info["inner_episode"] = self.inner_episode
            return self._flagged(obs, False), reward, False, False, info
        self.inner_episode += 1
        info["inner_episode"] = self.inner_episode
        if self.inner_episode >= self.episodes_per_trial:
            return self._flagged(obs, False), reward, True, False, info
        info["inner_final_observation"], info["inner_final_info"] = obs, dict(info)
        obs, _ = self.env.reset(seed=self._task_seed if self.same_task else None)
        return self._flagged(obs, True), reward, False, False, info


def check_registered_id(env_id: object, what: str = "env") -> str:
    """``env_id`` if it is a key of gymnasium's registry (and not one of :data:`BUILDS_ENV_BY_NAME`),
    else :class:`~dream_rl.errors.EnvError` naming the value and what is allowed.

    Only an exact registry key counts: ``gymnasium.make("module:Name-v0")`` imports ``module`` before
    it looks the id up, so an id with ``:`` must already be registered."""
    if not isinstance(env_id, str) or env_id not in gym.registry:
        entry_point = isinstance(env_id, str) and ":" in env_id
        why = " ('module:callable' entry points are not accepted)" if entry_point else ""
        raise EnvError(
            f"{what} must be a registered gymnasium id (dream_rl/TMaze-v0, CartPole-v1, ...){why}, got {env_id!r}; "
            "an env of your own is registered first: gymnasium.register('MyTask-v0', entry_point=MyTaskEnv)"
        )
    if env_id in BUILDS_ENV_BY_NAME:
        raise EnvError(f"{what}: {env_id!r} builds an env named in its kwargs through the old gym package, which "
                       "imports any module it is given: give that env's own registered id")
    return env_id


def make_rl2_trial(
    env: str | None = None,
    episodes_per_trial: int = 5,
    env_kwargs: dict[str, Any] | None = None,
    same_task: bool = True,
    inner_truncation: str = "ends_trial",
    render_mode: str | None = None,
    fully_observable: bool = False,
) -> gym.Env:
    """The entry point of ``dream_rl/RL2-v0``: ``env`` (a registered gymnasium id; None, the default:
    the 5-armed :class:`~dream_rl.envs.bandit.BanditEnv`) built with ``env_kwargs``, wrapped in
    :class:`RL2Trial` and in the suite's end-of-episode guard (a step after the trial ends warns and
    pays 0). Anything else for ``env`` (a ``"module:callable"`` entry point included) raises
    :class:`~dream_rl.errors.EnvError`.

    ``fully_observable=True`` (the twin ``dream_rl/RL2FullObs-v0``; default bandit only) appends
    :class:`~dream_rl.envs.bandit.ArmKnowledge` of the whole trial to the observation. For another
    ``env``, name its fully observable twin instead (``env="dream_rl/TMazeFullObs-v0"``)."""
    if check_bool("fully_observable", fully_observable) and env is not None:
        raise EnvError(
            f"fully_observable=True applies to the default bandit trial only, got env={env!r}; "
            "give the fully observable twin of that env instead (e.g. env='dream_rl/TMazeFullObs-v0')"
        )
    if fully_observable and same_task is not True:
        raise EnvError(f"fully_observable=True needs same_task=True (one paying arm per trial), got same_task={same_task!r}")
    kwargs = dict(env_kwargs or {})
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    if env is None:
        from dream_rl.envs.bandit import BanditEnv

        inner = BanditEnv(**kwargs)
    else:
        inner = gym.make(check_registered_id(env), **kwargs)
    trial: gym.Env = RL2Trial(inner, episodes_per_trial, same_task=same_task, inner_truncation=inner_truncation)
    if fully_observable:
        from dream_rl.envs.bandit import ArmKnowledgeWrapper

        trial = ArmKnowledgeWrapper(trial, inner.unwrapped.n_arms)
    return EndOfEpisodeGuard(trial)
