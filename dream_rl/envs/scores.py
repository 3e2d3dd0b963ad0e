"""The suite's catalogue: one :class:`EnvSpecInfo` per registered id, and normalized scores.

Everything here is plain data so that importing it stays cheap (no gymnasium, no torch); the
helpers that need gymnasium import it when called.

Reference returns (random policy and optimal) hold for each env's *default* constructor
arguments. If you change the difficulty (``gym.make(id, corridor_length=100)``), the optimal return
in the env's docstring usually still applies, and :func:`estimate_random_return` measures the
random baseline for your arguments.

Every suite env has a **fully observable twin** (:data:`TWINS`), registered as
``dream_rl/<Name>FullObs-v0`` (:func:`twin_id`): the same task built with ``fully_observable=True``,
whose observation adds what a perfect memory would supply, so that a policy without memory can reach
the task's optimal return. A twin keeps its task's reference returns (a random policy ignores the
observation; the optimum is the same by construction), so normalized scores apply to twins too.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

__all__ = [
    "FAMILIES",
    "SUITE",
    "TWINS",
    "TWIN_OBSERVATION",
    "EnvSpecInfo",
    "estimate_random_return",
    "format_env_table",
    "get_env_info",
    "list_envs",
    "load_scripted_policy",
    "normalized_score",
    "twin_id",
]

# Family name -> what the family tests. Every env belongs to exactly one.
FAMILIES: Mapping[str, str] = MappingProxyType(
    {
        "pomdp-control": "classic control with velocities removed or observations noised",
        "t-maze": "passive memory: a cue recalled after a corridor of configurable length",
        "diagnostic": "repeat / recall tasks with exact random and optimal returns",
        "non-stationary": "dynamics or rewards switch within an episode at unannounced times",
        "cross-episode": "meta-RL: a trial of episodes of one hidden task; memory must cross boundaries",
    }
)


@dataclass(frozen=True)
class EnvSpecInfo:
    """What the suite knows about one registered environment.

    Attributes:
        id: the gymnasium id, ``dream_rl/<Name>-v0``.
        family: one of :data:`FAMILIES`.
        description: one line, for listings.
        entry_point: ``"module:callable"`` that builds the env (class or factory).
        random_return: expected return of a uniform random policy, default arguments.
        optimal_return: best achievable expected return, or a scripted reference where the true
            optimum has no closed form (see ``optimal_exact``).
        optimal_exact: True if ``optimal_return`` is the exact optimum (or an oracle's exact
            expectation); False if it is measured from a scripted controller.
        max_episode_steps: the longest an episode can last with the default arguments.
        time_limit: whether registration adds a ``TimeLimit`` of ``max_episode_steps`` (for envs
            that do not end by themselves); envs with a built-in horizon scale it with their
            arguments instead.
        kwargs: constructor arguments fixed by the registration (presets such as TMazeLong).
        scripted_policy: ``"module:function"`` mapping an env to the action of the reference
            policy behind ``optimal_return``; it may read hidden state through ``env.unwrapped``.
        twin_of: for a fully observable twin, the id of its partially observable task; else None.
    """

    id: str
    family: str
    description: str
    entry_point: str
    random_return: float
    optimal_return: float
    optimal_exact: bool
    max_episode_steps: int
    time_limit: bool
    scripted_policy: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    twin_of: str | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {self.family!r}")
        if not self.optimal_return > self.random_return:
            raise ValueError(f"{self.id}: optimal_return must exceed random_return")


_MC = "dream_rl.envs.masked_control"

# Random returns of the control tasks: means over 1000 episodes, uniform random actions,
# action_space.seed(0) and reset(seed=0) then unseeded resets (see estimate_random_return).
# Scripted references: means over 1000 episodes of the module's scripted_action, same seeding.
SUITE: tuple[EnvSpecInfo, ...] = (
    EnvSpecInfo(
        id="dream_rl/CartPoleNoVel-v0",
        family="pomdp-control",
        description="CartPole seeing only cart position and pole angle",
        entry_point=f"{_MC}:make_cartpole_novel",
        random_return=22.5,
        optimal_return=500.0,
        optimal_exact=True,
        max_episode_steps=500,
        time_limit=True,
        scripted_policy=f"{_MC}:scripted_action",
    ),
    EnvSpecInfo(
        id="dream_rl/PendulumNoVel-v0",
        family="pomdp-control",
        description="Pendulum swing-up seeing only cos/sin of the angle",
        entry_point=f"{_MC}:make_pendulum_novel",
        random_return=-1235.0,
        optimal_return=-151.2,
        optimal_exact=False,
        max_episode_steps=200,
        time_limit=True,
        scripted_policy=f"{_MC}:scripted_action",
    ),
    EnvSpecInfo(
        id="dream_rl/MountainCarNoVel-v0",
        family="pomdp-control",
        description="MountainCar seeing only the car's position",
        entry_point=f"{_MC}:make_mountaincar_novel",
        random_return=-200.0,
        optimal_return=-106.7,
        optimal_exact=False,
        max_episode_steps=200,
        time_limit=True,
        scripted_policy=f"{_MC}:scripted_action",
    ),
    EnvSpecInfo(
        id="dream_rl/AcrobotNoVel-v0",
        family="pomdp-control",
        description="Acrobot swing-up seeing only cos/sin of both joint angles",
        entry_point=f"{_MC}:make_acrobot_novel",
        random_return=-499.3,
        optimal_return=-83.0,
        optimal_exact=False,
        max_episode_steps=500,
        time_limit=True,
        scripted_policy=f"{_MC}:scripted_action",
    ),
    EnvSpecInfo(
        id="dream_rl/CartPoleNoisy-v0",
        family="pomdp-control",
        description="CartPole with Gaussian noise (std 0.05) on all four observations",
        entry_point=f"{_MC}:make_cartpole_noisy",
        random_return=22.2,
        optimal_return=500.0,
        optimal_exact=True,
        max_episode_steps=500,
        time_limit=True,
        scripted_policy=f"{_MC}:scripted_action",
    ),
    EnvSpecInfo(
        id="dream_rl/TMaze-v0",
        family="t-maze",
        description="recall a +-1 cue after a 10-step corridor (kwarg corridor_length)",
        entry_point="dream_rl.envs.tmaze:TMazeEnv",
        random_return=0.0,
        optimal_return=1.0,
        optimal_exact=True,
        max_episode_steps=11,
        time_limit=False,
        scripted_policy="dream_rl.envs.tmaze:scripted_action",
    ),
    EnvSpecInfo(
        id="dream_rl/TMazeLong-v0",
        family="t-maze",
        description="recall a +-1 cue after a 100-step corridor",
        entry_point="dream_rl.envs.tmaze:TMazeEnv",
        random_return=0.0,
        optimal_return=1.0,
        optimal_exact=True,
        max_episode_steps=101,
        time_limit=False,
        scripted_policy="dream_rl.envs.tmaze:scripted_action",
        kwargs=MappingProxyType({"corridor_length": 100}),
    ),
    EnvSpecInfo(
        id="dream_rl/RepeatFirst-v0",
        family="diagnostic",
        description="output the first of 16 symbols (4 kinds) at every step",
        entry_point="dream_rl.envs.repeat_first:RepeatFirstEnv",
        random_return=0.25,
        optimal_return=1.0,
        optimal_exact=True,
        max_episode_steps=16,
        time_limit=False,
        scripted_policy="dream_rl.envs.repeat_first:scripted_action",
    ),
    EnvSpecInfo(
        id="dream_rl/RepeatPrevious-v0",
        family="diagnostic",
        description="output the symbol shown k=4 steps ago (kwarg k)",
        entry_point="dream_rl.envs.repeat_previous:RepeatPreviousEnv",
        random_return=0.25,
        optimal_return=1.0,
        optimal_exact=True,
        max_episode_steps=16,
        time_limit=False,
        scripted_policy="dream_rl.envs.repeat_previous:scripted_action",
    ),
    EnvSpecInfo(
        id="dream_rl/CountRecall-v0",
        family="diagnostic",
        description="output how often the current symbol was seen before",
        entry_point="dream_rl.envs.count_recall:CountRecallEnv",
        random_return=0.0625,
        optimal_return=1.0,
        optimal_exact=True,
        max_episode_steps=16,
        time_limit=False,
        scripted_policy="dream_rl.envs.count_recall:scripted_action",
    ),
    EnvSpecInfo(
        id="dream_rl/SwitchingBandit-v0",
        family="non-stationary",
        description="3-armed Bernoulli bandit whose best arm moves (p=0.05 per pull)",
        entry_point="dream_rl.envs.switching_bandit:SwitchingBanditEnv",
        random_return=40.0,
        optimal_return=80.0,
        optimal_exact=True,
        max_episode_steps=100,
        time_limit=False,
        scripted_policy="dream_rl.envs.switching_bandit:scripted_action",
    ),
    EnvSpecInfo(
        id="dream_rl/SwitchingCartPole-v0",
        family="non-stationary",
        description="CartPole whose pole length and motor polarity switch unannounced",
        entry_point="dream_rl.envs.switching_cartpole:SwitchingCartPoleEnv",
        random_return=23.1,
        optimal_return=500.0,
        optimal_exact=True,
        max_episode_steps=500,
        time_limit=True,
        scripted_policy="dream_rl.envs.switching_cartpole:scripted_action",
    ),
    EnvSpecInfo(
        id="dream_rl/MetaBandit-v0",
        family="cross-episode",
        description="5 episodes of one 5-armed bandit; find the paying arm once, reuse it",
        entry_point="dream_rl.envs.meta_bandit:MetaBanditEnv",
        random_return=5.0,
        optimal_return=23.0,
        optimal_exact=True,
        max_episode_steps=25,
        time_limit=False,
        scripted_policy="dream_rl.envs.meta_bandit:scripted_action",
    ),
    EnvSpecInfo(
        id="dream_rl/RL2-v0",
        family="cross-episode",
        description="RL² trials of any env (default: MetaBandit's setting from 5 plain bandit episodes)",
        entry_point="dream_rl.envs.wrappers:make_rl2_trial",
        random_return=5.0,
        optimal_return=23.0,
        optimal_exact=True,
        max_episode_steps=25,
        time_limit=False,
        scripted_policy="dream_rl.envs.bandit:scripted_trial_action",
    ),
)


TWIN_SUFFIX = "FullObs"

# What each twin's observation adds to its task's (the full list, per env, in docs/memory-diagnostics.md).
TWIN_OBSERVATION: Mapping[str, str] = MappingProxyType(
    {
        "dream_rl/CartPoleNoVel-v0": "the cart and pole velocities",
        "dream_rl/PendulumNoVel-v0": "the angular velocity",
        "dream_rl/MountainCarNoVel-v0": "the car's velocity",
        "dream_rl/AcrobotNoVel-v0": "both joints' angular velocities",
        "dream_rl/CartPoleNoisy-v0": "the exact state, without noise",
        "dream_rl/TMaze-v0": "the cue at every step",
        "dream_rl/TMazeLong-v0": "the cue at every step",
        "dream_rl/RepeatFirst-v0": "the first symbol at every step",
        "dream_rl/RepeatPrevious-v0": "the symbol of k steps ago",
        "dream_rl/CountRecall-v0": "the current symbol's count so far",
        "dream_rl/SwitchingBandit-v0": "the current best arm",
        "dream_rl/SwitchingCartPole-v0": "the regime: motor polarity and pole length",
        "dream_rl/MetaBandit-v0": "the trial's knowledge: arms that did not pay, the paying arm once found",
        "dream_rl/RL2-v0": "the trial's knowledge: arms that did not pay, the paying arm once found",
    }
)


def twin_id(env_id: str) -> str:
    """The fully observable twin's id of a suite env: ``dream_rl/TMaze-v0`` -> ``dream_rl/TMazeFullObs-v0``.

    Raises ``KeyError`` (naming the suite's ids) for an id outside the suite, a twin's included."""
    info = get_env_info(env_id)
    if info.twin_of is not None:
        raise KeyError(f"{env_id!r} is already the fully observable twin of {info.twin_of!r}")
    name, _, version = info.id.rpartition("-v")
    return f"{name}{TWIN_SUFFIX}-v{version}"


def _twin(info: EnvSpecInfo) -> EnvSpecInfo:
    name, _, version = info.id.rpartition("-v")
    return replace(
        info,
        id=f"{name}{TWIN_SUFFIX}-v{version}",
        description=f"fully observable twin of {info.id.split('/')[-1]}: shows {TWIN_OBSERVATION[info.id]}",
        kwargs=MappingProxyType({**info.kwargs, "fully_observable": True}),
        twin_of=info.id,
    )


# One twin per suite env, in the suite's order.
TWINS: tuple[EnvSpecInfo, ...] = tuple(_twin(info) for info in SUITE)

_BY_ID: Mapping[str, EnvSpecInfo] = MappingProxyType({info.id: info for info in (*SUITE, *TWINS)})


def list_envs(family: str | None = None) -> list[EnvSpecInfo]:
    """The suite's envs in catalogue order, optionally only those of one family."""
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
    return [info for info in SUITE if family is None or info.family == family]


def get_env_info(env_id: str) -> EnvSpecInfo:
    """Catalogue entry of ``env_id`` (a suite env or a twin); raises ``KeyError`` naming the id and
    the valid ones."""
    try:
        return _BY_ID[env_id]
    except KeyError:
        raise KeyError(
            f"unknown env id {env_id!r}; the dream_rl suite has: {', '.join(info.id for info in SUITE)} "
            f"(and a twin of each, <Name>{TWIN_SUFFIX}-v0)"
        ) from None


def normalized_score(env_id: str, episode_return: float) -> float:
    """Map a return onto [0, 1]: 0 = random policy, 1 = optimal, clipped at both ends.

    ``(episode_return - random) / (optimal - random)`` with the reference returns of
    :func:`get_env_info` (default constructor arguments). Scores of different envs are on one
    scale and can be averaged.

    Raises:
        KeyError: for an id outside the suite.
        ValueError: for a NaN return.
    """
    info = get_env_info(env_id)
    value = float(episode_return)
    if math.isnan(value):
        raise ValueError(f"episode_return must be a number, got {episode_return!r}")
    score = (value - info.random_return) / (info.optimal_return - info.random_return)
    return min(max(score, 0.0), 1.0)


def format_env_table() -> str:
    """A header and one line per env: id, family, random and optimal return, description.

    A ``~`` before the optimal return marks a scripted reference rather than an exact optimum.
    """
    width = max(len(info.id) for info in SUITE)
    lines = [f"{'id':<{width}}  {'family':<14}  {'random':>8}  {'optimal':>9}  description"]
    for info in SUITE:
        optimal = f"{'' if info.optimal_exact else '~'}{info.optimal_return:g}"
        lines.append(
            f"{info.id:<{width}}  {info.family:<14}  {info.random_return:>8g}  {optimal:>9}  {info.description}"
        )
    return "\n".join(lines)


def load_scripted_policy(env_id: str) -> Callable[[Any], Any]:
    """The reference policy behind ``optimal_return`` of ``env_id``: a function ``env -> action``.

    It reads hidden state through ``env.unwrapped``, so it is a yardstick, not an agent.
    """
    module_name, _, attribute = get_env_info(env_id).scripted_policy.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def estimate_random_return(
    env_id: str, n_episodes: int = 200, seed: int = 0, **make_kwargs: Any
) -> tuple[float, float]:
    """Mean and standard deviation of a uniform random policy's return over ``n_episodes``.

    Seeds ``reset`` once with ``seed`` (later resets continue that stream) and the action space
    with ``seed``, so the estimate is reproducible. ``make_kwargs`` go to ``gymnasium.make``, which
    lets you measure the baseline of a non-default difficulty.
    """
    import gymnasium as gym
    import numpy as np

    if n_episodes < 1:
        raise ValueError(f"n_episodes must be an integer >= 1, got {n_episodes!r}")
    env = gym.make(env_id, **make_kwargs)
    env.action_space.seed(seed)
    returns = []
    for episode in range(n_episodes):
        env.reset(seed=seed if episode == 0 else None)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns)), float(np.std(returns))
