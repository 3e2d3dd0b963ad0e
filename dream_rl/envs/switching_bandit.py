"""Switching bandit: the best arm moves at unannounced times within an episode."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from dream_rl.envs._common import (
    SuiteEnv,
    action_reward_observation,
    check_bool,
    check_float,
    check_int,
    check_render_mode,
    one_hot,
)
from dream_rl.errors import EnvError

__all__ = ["SwitchingBanditEnv", "scripted_action"]


class SwitchingBanditEnv(SuiteEnv):
    """A Bernoulli bandit whose best arm jumps to another arm at random, unannounced times.

    One arm pays 1 with probability ``p_best``, the others with ``p_other``. Before every pull
    after the first, the best arm moves to a uniformly chosen *other* arm with probability
    ``switch_prob``. Nothing in the observation says a switch happened: the agent must notice the
    reward stream changing (a surprise) and re-explore, which is the case DREAM's surprise-driven
    adaptation targets. A policy that keeps pulling a stale best arm earns ``p_other`` per pull,
    less than a random policy.

    Observation: ``Box(0, 1, (n_arms + 1,), float32)``: one-hot of the previous action (all
    zeros at the first step) and the previous reward. The agent sees its own history, as in
    meta-RL bandits. With ``fully_observable=True`` (the twin ``dream_rl/SwitchingBanditFullObs-v0``)
    a one-hot of the current best arm follows (``n_arms`` more entries): what the oracle behind the
    optimal return is told. No memory can fully match it (a switch is seen only after the fact).

    Action: ``Discrete(n_arms)``: the arm to pull.

    Reward: 1 or 0, Bernoulli with the pulled arm's probability.

    Episode end: terminates after ``length`` pulls.

    Parameters:
        n_arms: an integer >= 2 (default 3).
        length: pulls per episode, an integer >= 1 (default 100).
        switch_prob: per-step probability that the best arm moves, in [0, 1] (default 0.05, so
            about one switch every 20 pulls).
        p_best: success probability of the best arm, in (p_other, 1] (default 0.8).
        p_other: success probability of the other arms, in [0, p_best) (default 0.2).
        render_mode: None or ``"rgb_array"`` (a bar picture of the observation, for videos).
        fully_observable: show the best arm (default False).

    Returns (expected, exact):
        random policy: ``length * (p_best + (n_arms - 1) * p_other) / n_arms`` = 40 by default.
        optimal: ``length * p_best`` = 80 by default, the return of an oracle told the best arm.
            No agent can quite reach it because it must detect each switch after the fact.
    """

    def __init__(
        self,
        n_arms: int = 3,
        length: int = 100,
        switch_prob: float = 0.05,
        p_best: float = 0.8,
        p_other: float = 0.2,
        render_mode: str | None = None,
        fully_observable: bool = False,
    ) -> None:
        self.n_arms = check_int("n_arms", n_arms, minimum=2)
        self.length = check_int("length", length, minimum=1)
        self.switch_prob = check_float("switch_prob", switch_prob, low=0.0, high=1.0)
        self.p_best = check_float("p_best", p_best, low=0.0, high=1.0, low_inclusive=False)
        self.p_other = check_float("p_other", p_other, low=0.0, high=self.p_best, high_inclusive=False)
        self.render_mode = check_render_mode(render_mode)
        self.fully_observable = check_bool("fully_observable", fully_observable)
        size = self.n_arms + 1 + (self.n_arms if self.fully_observable else 0)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(size,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.n_arms)
        # Hidden state, public for scripted oracles and tests.
        self.best_arm = 0
        self.t = 0
        self._last_obs = np.zeros(size, dtype=np.float32)

    def _observation(self, previous_action: int | None, previous_reward: float) -> np.ndarray:
        best = one_hot(self.best_arm, self.n_arms) if self.fully_observable else ()  # the arm of the next pull
        self._last_obs = action_reward_observation(self.n_arms, previous_action, previous_reward, *best)
        return self._last_obs.copy()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        self.best_arm = int(self.np_random.integers(self.n_arms))
        return self._observation(None, 0.0), {"best_arm": self.best_arm}

    def _step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise EnvError(f"action must be in [0, {self.n_arms - 1}], got {action!r}")
        p = self.p_best if int(action) == self.best_arm else self.p_other
        reward = float(self.np_random.random() < p)
        self.t += 1
        terminated = self.t >= self.length
        switched = False
        if not terminated and self.np_random.random() < self.switch_prob:
            # Move to one of the other arms: offset by 1 .. n_arms - 1 so it always changes.
            self.best_arm = (self.best_arm + int(self.np_random.integers(1, self.n_arms))) % self.n_arms
            switched = True
        # info is for logging and analysis; the agent only sees the observation.
        return self._observation(int(action), reward), reward, terminated, False, {"best_arm": self.best_arm, "switched": switched}


def scripted_action(env: gym.Env) -> int:
    """The oracle that defines the optimal return: pull the (hidden) best arm."""
    return env.unwrapped.best_arm
