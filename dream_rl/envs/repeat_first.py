"""Repeat First: keep outputting the symbol shown at the first step, through a stream of distractors."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from dream_rl.envs._common import SuiteEnv, check_bool, check_int, check_render_mode, one_hot
from dream_rl.errors import EnvError

__all__ = ["RepeatFirstEnv", "scripted_action"]


class RepeatFirstEnv(SuiteEnv):
    """Output, at every step, the symbol that was shown at step 0.

    Each step shows one symbol drawn uniformly from ``n_symbols``; only the first one matters, the
    rest are distractors. The memory must hold one symbol for the whole episode and ignore what
    follows, the simplest test that a torso can latch information.

    Observation: ``Box(0, 1, (n_symbols + 1,), float32)``: one-hot of the current symbol, then a
    flag that is 1 at step 0 only (so the target is recognisable when it appears). With
    ``fully_observable=True`` (the twin ``dream_rl/RepeatFirstFullObs-v0``) a one-hot of the first
    symbol follows at every step: ``Box(0, 1, (2 * n_symbols + 1,))``.

    Action: ``Discrete(n_symbols)``: the agent's guess of the first symbol.

    Reward: ``1 / length`` for each step whose action equals the first symbol (step 0 included),
    else 0, so returns lie in [0, 1].

    Episode end: terminates after ``length`` steps (the fixed horizon is part of the task).

    Parameters:
        n_symbols: alphabet size, an integer >= 2 (default 4).
        length: steps per episode, an integer >= 2 (default 16).
        render_mode: None or ``"rgb_array"`` (a bar picture of the observation, for videos).
        fully_observable: show the first symbol at every step (default False).

    Returns:
        random policy: ``1 / n_symbols`` (0.25 by default), exact.
        optimal: 1.
    """

    def __init__(
        self, n_symbols: int = 4, length: int = 16, render_mode: str | None = None, fully_observable: bool = False
    ) -> None:
        self.n_symbols = check_int("n_symbols", n_symbols, minimum=2)
        self.length = check_int("length", length, minimum=2)
        self.render_mode = check_render_mode(render_mode)
        self.fully_observable = check_bool("fully_observable", fully_observable)
        size = self.n_symbols + 1 + (self.n_symbols if self.fully_observable else 0)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(size,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.n_symbols)
        # Hidden state, public for scripted oracles and tests.
        self.first_symbol = 0
        self.t = 0
        self._last_obs = np.zeros(size, dtype=np.float32)

    def _observation(self, symbol: int) -> np.ndarray:
        obs = np.zeros(self.n_symbols + 1, dtype=np.float32)
        obs[symbol] = 1.0
        obs[-1] = 1.0 if self.t == 0 else 0.0
        if self.fully_observable:
            obs = np.concatenate([obs, one_hot(self.first_symbol, self.n_symbols)])
        self._last_obs = obs
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        self.first_symbol = int(self.np_random.integers(self.n_symbols))
        return self._observation(self.first_symbol), {}

    def _step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise EnvError(f"action must be in [0, {self.n_symbols - 1}], got {action!r}")
        reward = 1.0 / self.length if int(action) == self.first_symbol else 0.0
        self.t += 1
        terminated = self.t >= self.length
        symbol = int(self.np_random.integers(self.n_symbols))  # distractor for the next step
        return self._observation(symbol), reward, terminated, False, {}


def scripted_action(env: gym.Env) -> int:
    """Optimal action, read from the hidden first symbol."""
    return env.unwrapped.first_symbol
