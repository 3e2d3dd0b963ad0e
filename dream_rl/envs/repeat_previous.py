"""Repeat Previous: output the symbol shown ``k`` steps ago."""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from dream_rl.envs._common import SuiteEnv, check_bool, check_int, check_render_mode, one_hot
from dream_rl.errors import EnvError

__all__ = ["RepeatPreviousEnv", "scripted_action"]


class RepeatPreviousEnv(SuiteEnv):
    """Output, at every step ``t >= k``, the symbol that was shown at step ``t - k``.

    Each step shows a fresh symbol drawn uniformly from ``n_symbols``. Unlike Repeat First, the
    memory has to act as a sliding buffer: store every symbol for exactly ``k`` steps, then let it
    go. ``k`` sets the memory length, ``n_symbols`` the bits per slot.

    Observation: ``Box(0, 1, (n_symbols,), float32)``: one-hot of the current symbol. With
    ``fully_observable=True`` (the twin ``dream_rl/RepeatPreviousFullObs-v0``) a one-hot of the symbol
    shown ``k`` steps ago follows (zeros during the first ``k`` steps): ``Box(0, 1, (2 * n_symbols,))``.

    Action: ``Discrete(n_symbols)``: the symbol shown ``k`` steps ago. During the first ``k``
    steps there is nothing to repeat yet; actions there are ignored.

    Reward: ``1 / (length - k)`` for each step ``t >= k`` whose action equals the symbol of step
    ``t - k``, else 0, so returns lie in [0, 1].

    Episode end: terminates after ``length`` steps.

    Parameters:
        k: how many steps back to look, an integer >= 1 (default 4).
        n_symbols: alphabet size, an integer >= 2 (default 4).
        length: steps per episode, an integer >= k + 1 (default 16).
        render_mode: None or ``"rgb_array"`` (a bar picture of the observation, for videos).
        fully_observable: show the symbol to repeat at every step (default False).

    Returns:
        random policy: ``1 / n_symbols`` (0.25 by default), exact.
        optimal: 1.
    """

    def __init__(
        self,
        k: int = 4,
        n_symbols: int = 4,
        length: int = 16,
        render_mode: str | None = None,
        fully_observable: bool = False,
    ) -> None:
        self.k = check_int("k", k, minimum=1)
        self.n_symbols = check_int("n_symbols", n_symbols, minimum=2)
        self.length = check_int(f"length (more steps than k = {self.k}, so that some step has one to repeat)",
                                length, minimum=self.k + 1)
        self.render_mode = check_render_mode(render_mode)
        self.fully_observable = check_bool("fully_observable", fully_observable)
        size = self.n_symbols * (2 if self.fully_observable else 1)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(size,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.n_symbols)
        # Hidden state, public for scripted oracles and tests: the last k + 1 symbols, newest last.
        self.history: deque[int] = deque(maxlen=self.k + 1)
        self.t = 0
        self._last_obs = np.zeros(size, dtype=np.float32)

    def _show_new_symbol(self) -> np.ndarray:
        symbol = int(self.np_random.integers(self.n_symbols))
        self.history.append(symbol)
        obs = one_hot(symbol, self.n_symbols)
        if self.fully_observable:  # the target of this step: the symbol of step t - k, once there is one
            target = self.history[0] if self.t >= self.k else None
            obs = np.concatenate([obs, one_hot(target, self.n_symbols)])
        self._last_obs = obs
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        self.history.clear()
        return self._show_new_symbol(), {}

    def _step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise EnvError(f"action must be in [0, {self.n_symbols - 1}], got {action!r}")
        reward = 0.0
        if self.t >= self.k and int(action) == self.history[0]:  # history[0] was shown k steps ago
            reward = 1.0 / (self.length - self.k)
        self.t += 1
        terminated = self.t >= self.length
        return self._show_new_symbol(), reward, terminated, False, {}


def scripted_action(env: gym.Env) -> int:
    """Optimal action: the symbol shown ``k`` steps ago (0 before there is one)."""
    inner = env.unwrapped
    return inner.history[0] if inner.t >= inner.k else 0
