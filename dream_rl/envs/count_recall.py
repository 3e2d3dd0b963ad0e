"""Count Recall: for each symbol shown, say how many times it was shown before."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from dream_rl.envs._common import SuiteEnv, check_bool, check_int, check_render_mode, one_hot
from dream_rl.errors import EnvError

__all__ = ["CountRecallEnv", "scripted_action"]


class CountRecallEnv(SuiteEnv):
    """Output how many times the current symbol appeared earlier in the episode.

    Each step shows a symbol drawn uniformly from ``n_symbols``. The memory has to keep one
    counter per symbol and recall the right one on demand: a test of accumulating, not just
    storing, information.

    Observation: ``Box(0, 1, (n_symbols,), float32)``: one-hot of the current symbol. With
    ``fully_observable=True`` (the twin ``dream_rl/CountRecallFullObs-v0``) a one-hot of its count so
    far (over ``length`` entries, the action space) follows: ``Box(0, 1, (n_symbols + length,))``.

    Action: ``Discrete(length)``: the number of earlier steps that showed the current symbol
    (0 .. length - 1; the current step is not counted).

    Reward: ``1 / length`` for each correct count, else 0, so returns lie in [0, 1].

    Episode end: terminates after ``length`` steps.

    Parameters:
        n_symbols: alphabet size, an integer >= 2 (default 4).
        length: steps per episode, an integer >= 2 (default 16).
        render_mode: None or ``"rgb_array"`` (a bar picture of the observation, for videos).
        fully_observable: show the current symbol's count at every step (default False).

    Returns:
        random policy: ``1 / length`` (0.0625 by default), exact: the correct count is always one
            of the ``length`` actions and a uniform guess hits it with that probability.
        optimal: 1.
    """

    def __init__(
        self, n_symbols: int = 4, length: int = 16, render_mode: str | None = None, fully_observable: bool = False
    ) -> None:
        # with one symbol there is nothing to recall: the count is the step index (the random-return
        # formula and the task family assume a choice between symbols, as in RepeatFirst)
        self.n_symbols = check_int("n_symbols", n_symbols, minimum=2)
        self.length = check_int("length", length, minimum=2)
        self.render_mode = check_render_mode(render_mode)
        self.fully_observable = check_bool("fully_observable", fully_observable)
        size = self.n_symbols + (self.length if self.fully_observable else 0)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(size,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.length)
        # Hidden state, public for scripted oracles and tests.
        self.counts = np.zeros(self.n_symbols, dtype=np.int64)  # occurrences before this step
        self.symbol = 0
        self.t = 0
        self._last_obs = np.zeros(size, dtype=np.float32)

    def _show_new_symbol(self) -> np.ndarray:
        self.symbol = int(self.np_random.integers(self.n_symbols))
        obs = one_hot(self.symbol, self.n_symbols)
        if self.fully_observable:  # the answer of this step: earlier sightings of this symbol
            # (only the observation after the last step, never acted on, can count `length`)
            count = min(int(self.counts[self.symbol]), self.length - 1)
            obs = np.concatenate([obs, one_hot(count, self.length)])
        self._last_obs = obs
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        self.counts[:] = 0
        return self._show_new_symbol(), {}

    def _step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise EnvError(f"action must be in [0, {self.length - 1}], got {action!r}")
        reward = 1.0 / self.length if int(action) == self.counts[self.symbol] else 0.0
        self.counts[self.symbol] += 1
        self.t += 1
        terminated = self.t >= self.length
        return self._show_new_symbol(), reward, terminated, False, {}


def scripted_action(env: gym.Env) -> int:
    """Optimal action: the hidden count of the current symbol."""
    inner = env.unwrapped
    return int(inner.counts[inner.symbol])
