"""Passive T-maze: remember a one-bit cue across a corridor of configurable length."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from dream_rl.envs._common import SuiteEnv, check_bool, check_int, check_render_mode
from dream_rl.errors import EnvError

__all__ = ["TMazeEnv", "scripted_action"]


class TMazeEnv(SuiteEnv):
    """A cue at the start, a corridor, and a left/right decision at the end.

    The agent starts at the foot of a corridor of ``corridor_length`` cells. The first observation
    shows a cue saying which arm of the T holds the reward; the cue is never shown again. The agent
    then walks down the corridor and, at the junction, has to turn towards the cued arm. The number
    of steps between seeing the cue and using it is ``corridor_length``, so this is the knob for the
    memory length under test (tens to hundreds of steps).

    The maze is *passive*: in the corridor every action moves the agent one cell forward, so the
    task isolates memory from exploration. Only the action taken at the junction matters.

    Observation: ``Box(-1, 1, (3,), float32)``, ``[cue, in_corridor, at_junction]``

    * start cell (step 0): ``[c, 0, 0]`` with ``c = +1`` (reward up) or ``c = -1`` (reward down)
    * corridor cells 1 .. corridor_length - 1: ``[0, 1, 0]``
    * junction (cell ``corridor_length``): ``[0, 0, 1]``

    With ``fully_observable=True`` (the twin ``dream_rl/TMazeFullObs-v0``) the cue stays in the first
    entry at every step (``[c, 1, 0]`` in the corridor, ``[c, 0, 1]`` at the junction), so a policy
    without memory can turn the right way.

    Action: ``Discrete(2)``: 0 = turn up, 1 = turn down (in the corridor: step forward).

    Reward: +1 for turning towards the cue, -1 for the other arm, 0 on every other step.

    Episode end: terminates at the turn, i.e. after exactly ``corridor_length + 1`` steps.

    Parameters:
        corridor_length: steps from the cue to the junction, an integer >= 1 (default 10; the
            ``dream_rl/TMazeLong-v0`` preset uses 100).
        render_mode: None or ``"rgb_array"`` (a bar picture of the observation, for videos).
        fully_observable: keep the cue in view at every step (default False).

    Returns (for every ``corridor_length``):
        random policy: 0 (the turn is a fair coin flip); also what any memoryless policy gets
            (with ``fully_observable=False``).
        optimal: +1 (turn towards the remembered cue).
    """

    def __init__(
        self, corridor_length: int = 10, render_mode: str | None = None, fully_observable: bool = False
    ) -> None:
        self.corridor_length = check_int("corridor_length", corridor_length, minimum=1)
        self.render_mode = check_render_mode(render_mode)
        self.fully_observable = check_bool("fully_observable", fully_observable)
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        # Hidden state, public so scripted oracles and tests can read it: +1 = up, -1 = down.
        self.cue = 1
        self.position = 0
        self._last_obs = np.zeros(3, dtype=np.float32)

    def _observation(self) -> np.ndarray:
        obs = np.zeros(3, dtype=np.float32)
        if self.position == 0 or self.fully_observable:  # the twin keeps the cue in view
            obs[0] = self.cue
        if 0 < self.position < self.corridor_length:
            obs[1] = 1.0
        elif self.position == self.corridor_length:
            obs[2] = 1.0
        self._last_obs = obs
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.cue = 1 if self.np_random.random() < 0.5 else -1
        self.position = 0
        return self._observation(), {}

    def _step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise EnvError(f"action must be 0 or 1, got {action!r}")
        if self.position < self.corridor_length:
            self.position += 1
            return self._observation(), 0.0, False, False, {}
        # At the junction: action 0 goes up (cue +1), action 1 goes down (cue -1).
        correct = (int(action) == 0) == (self.cue == 1)
        return self._observation(), 1.0 if correct else -1.0, True, False, {"success": correct}


def scripted_action(env: gym.Env) -> int:
    """Optimal action, read from the hidden cue (a reference for tests; the agent never sees it)."""
    return 0 if env.unwrapped.cue == 1 else 1
