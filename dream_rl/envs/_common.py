"""Shared by the suite's own envs: constructor-argument and action checks (one clear
:class:`~dream_rl.errors.EnvError`, a ``ValueError``, per bad argument or action), a minimal
``rgb_array`` picture of the observation, :class:`SuiteEnv`, the base class
that renders it and guards the end of an episode, and :class:`EndOfEpisodeGuard`, the same guard
for the wrapped classic-control tasks.

Stepping after ``terminated=True`` follows gymnasium's classic-control convention (CartPole's):
the call warns once per episode and pays 0; here it also changes nothing (the last observation is
returned again, with ``terminated=True``) until ``reset()``. No task pays a reward twice."""

from __future__ import annotations

import math
import numbers
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from dream_rl.errors import EnvError


def check_int(name: str, value: object, *, minimum: int, maximum: int | None = None) -> int:
    """Return ``value`` as an ``int`` if it is an integer in ``[minimum, maximum]``, else raise :class:`EnvError`."""
    allowed = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    # bool is an int subclass, but `corridor_length=True` is surely a mistake.
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        raise EnvError(f"{name} must be an integer {allowed}, got {value!r}")
    return int(value)


def check_float(
    name: str,
    value: object,
    *,
    low: float,
    high: float,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Return ``value`` as a ``float`` if it is a finite number in the given interval, else raise :class:`EnvError`."""
    interval = f"{'[' if low_inclusive else '('}{low}, {high}{']' if high_inclusive else ')'}"
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if ok:
        v = float(value)
        ok = (v >= low if low_inclusive else v > low) and (v <= high if high_inclusive else v < high)
    if not ok:
        raise EnvError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is ``True`` or ``False``, else raise :class:`EnvError` (``1`` or ``"yes"``
    for a switch is more likely a mistake than a wish)."""
    if not isinstance(value, bool):
        raise EnvError(f"{name} must be True or False, got {value!r}")
    return value


def one_hot(index: int | None, size: int) -> np.ndarray:
    """A float32 one-hot of ``index`` over ``size`` entries; all zeros for ``None``."""
    vector = np.zeros(size, dtype=np.float32)
    if index is not None:
        vector[index] = 1.0
    return vector


RENDER_MODES = ["rgb_array"]


def check_action(space: spaces.Space, action: Any) -> None:
    """Raise :class:`EnvError` naming the valid actions if ``action`` is not one of ``space``'s: for
    ``Discrete(n)`` an integer in ``[start, start + n - 1]``; for a ``Box`` an array of its shape with
    finite entries (values outside the bounds are left to the task, which clips them); otherwise
    ``space.contains``. A wrapped gymnasium task would answer with an assertion or an IndexError."""
    if isinstance(space, spaces.Discrete):
        if not space.contains(action):
            low, high = int(space.start), int(space.start + space.n - 1)
            raise EnvError(f"action must be an integer in [{low}, {high}], got {action!r}")
    elif isinstance(space, spaces.Box):
        try:
            value = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError):
            value = None
        if value is None or value.shape != space.shape or not np.isfinite(value).all():
            raise EnvError(
                f"action must be an array of shape {space.shape} with finite entries (bounds "
                f"{space.low.tolist()} to {space.high.tolist()}), got {action!r}"
            )
    elif not space.contains(action):
        raise EnvError(f"action must be in {space}, got {action!r}")


def action_reward_observation(n_arms: int, previous_action: int | None, previous_reward: float,
                              *flags: float) -> np.ndarray:
    """The bandits' observation: a one-hot of the previous action (all zeros before the first),
    the previous reward, then any ``flags``; float32 of length ``n_arms + 1 + len(flags)``."""
    obs = np.zeros(n_arms + 1 + len(flags), dtype=np.float32)
    if previous_action is not None:
        obs[previous_action] = 1.0
    obs[n_arms] = previous_reward
    obs[n_arms + 1:] = flags
    return obs


def check_render_mode(render_mode: object) -> str | None:
    """The suite's own envs render only ``rgb_array`` pictures (Stable-Baselines3 asks for that mode
    when it builds an env from its id, so it is worth supporting)."""
    if render_mode is not None and render_mode not in RENDER_MODES:
        raise EnvError(f"render_mode must be None or one of {RENDER_MODES}, got {render_mode!r}")
    return render_mode


def observation_picture(observation: np.ndarray, space: spaces.Box, height: int = 64) -> np.ndarray:
    """An RGB image of a 1-D observation, one vertical bar per entry scaled to the space's bounds.

    A debugging and video aid, not a rendering of the task's world. Unbounded entries are drawn on
    a [-1, 1] scale and clipped.
    """
    bar = 16  # pixels per entry
    low = np.where(np.isfinite(space.low), space.low, -1.0)
    high = np.where(np.isfinite(space.high), space.high, 1.0)
    fraction = np.clip((np.asarray(observation, dtype=np.float64) - low) / np.maximum(high - low, 1e-8), 0.0, 1.0)
    image = np.full((height, bar * fraction.size, 3), 255, dtype=np.uint8)
    for i, f in enumerate(fraction):
        top = height - 1 - int(round(f * (height - 1)))
        image[top:, i * bar + 2 : (i + 1) * bar - 2] = (40, 90, 200)
    return image


STEP_AFTER_END = (
    "step() called after this episode terminated (terminated=True); call reset() first. Following "
    "gymnasium's classic-control convention, such steps pay 0 and change nothing."
)

StepResult = tuple[Any, float, bool, bool, dict[str, Any]]


class SuiteEnv(gym.Env[np.ndarray, np.int64]):
    """Base of the suite's vector-observation, discrete-action envs: ``render()`` draws the last
    observation (``self._last_obs``) as bars in ``rgb_array`` mode, and :meth:`step` guards the end
    of the episode (see the module docstring); subclasses implement :meth:`_step`."""

    metadata: dict[str, Any] = {"render_modes": RENDER_MODES, "render_fps": 4}
    _last_obs: np.ndarray
    _terminated = False
    _warned_after_end = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        """Seed the generator and open a new episode (subclasses call this first)."""
        super().reset(seed=seed, options=options)
        self._terminated = self._warned_after_end = False

    def step(self, action: np.int64) -> StepResult:
        """One step of the task; after ``terminated=True``: warn once, pay 0, change nothing."""
        if self._terminated:
            if not self.action_space.contains(action):
                raise EnvError(f"action must be in {self.action_space}, got {action!r}")
            if not self._warned_after_end:
                gym.logger.warn(STEP_AFTER_END)
                self._warned_after_end = True
            return self._last_obs.copy(), 0.0, True, False, {}
        observation, reward, terminated, truncated, info = self._step(action)
        self._terminated = bool(terminated)
        return observation, reward, terminated, truncated, info

    def _step(self, action: np.int64) -> StepResult:
        """The task's own step, only called within an episode."""
        raise NotImplementedError

    def render(self) -> np.ndarray | None:
        """An ``rgb_array`` bar picture of the current observation (None without a render mode)."""
        if self.render_mode != "rgb_array":
            return None
        return observation_picture(self._last_obs, self.observation_space)


class EndOfEpisodeGuard(gym.Wrapper):
    """The :class:`SuiteEnv` end-of-episode guard around any env: after ``terminated=True`` a step
    warns once, pays 0 and returns the last observation again (``terminated=True``) until ``reset()``.

    gymnasium's own classic-control tasks disagree here (CartPole warns and pays 0, MountainCar
    charges -1 again, Acrobot's episode can un-terminate), so the suite wraps them all."""

    def __init__(self, env: gym.Env, check_actions: bool = False) -> None:
        """``check_actions``: refuse an action outside the action space with :func:`check_action`'s
        one line, before the wrapped task sees it."""
        super().__init__(env)
        self.check_actions = check_actions
        self._last_observation: Any = None
        self._terminated = self._warned = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        observation, info = self.env.reset(seed=seed, options=options)
        self._last_observation, self._terminated, self._warned = observation, False, False
        return observation, info

    def step(self, action: Any) -> StepResult:
        if self.check_actions:
            check_action(self.action_space, action)
        if self._terminated:
            if not self.action_space.contains(action):
                raise EnvError(f"action must be in {self.action_space}, got {action!r}")
            if not self._warned:
                gym.logger.warn(STEP_AFTER_END)
                self._warned = True
            return self._last_observation, 0.0, True, False, {}
        observation, reward, terminated, truncated, info = self.env.step(action)
        self._last_observation, self._terminated = observation, bool(terminated)
        return observation, reward, terminated, truncated, info
