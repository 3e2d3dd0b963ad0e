"""Classic control with partial observability: velocities removed, or Gaussian observation noise.

Removing the velocities is the "NoVel" setting popularised by rl-zoo3: the agent still sees positions
and angles, so it can recover the velocities only by remembering the previous observations. A
memoryless policy is stuck with what one frame tells it; a recurrent torso can difference frames.

Two wrappers do the work and can be put around any ``Box``-observation env:

* :class:`MaskVelocityWrapper` keeps a chosen subset of the observation entries.
* :class:`NoisyObservationWrapper` adds zero-mean Gaussian noise to every entry.

The factory functions below build the registered suite entries. They construct the gymnasium
classic-control env classes directly (not through ``gymnasium.make``) so that the time limit comes
from the ``dream_rl/`` registration only, without a second ``TimeLimit`` or env checker buried inside, and wrap
them in :class:`~dream_rl.envs._common.EndOfEpisodeGuard`: a step after ``terminated=True`` warns
once and pays 0 in every task (gymnasium's MountainCar would charge -1 again and Acrobot could
un-terminate).

Registered ids (time limits as in gymnasium):

================================ ======================== ========== ============= ==================
id                               kept observation         time limit random return optimal return
================================ ======================== ========== ============= ==================
``dream_rl/CartPoleNoVel-v0``    x, theta                 500        22.5          500
``dream_rl/PendulumNoVel-v0``    cos(theta), sin(theta)   200        -1235.0       -151.2 (scripted)
``dream_rl/MountainCarNoVel-v0`` position                 200        -200.0        -106.7 (scripted)
``dream_rl/AcrobotNoVel-v0``     cos/sin of both joints   500        -499.3        -83.0 (scripted)
``dream_rl/CartPoleNoisy-v0``    all 4, noise std 0.05    500        22.2          500
================================ ======================== ========== ============= ==================

Each factory takes ``fully_observable=True`` to build the task's fully observable twin (registered as
``dream_rl/<Name>FullObs-v0``, see :data:`dream_rl.envs.TWINS`): the NoVel tasks keep every entry
(velocities included), the noisy CartPole drops the noise. The dynamics, reward and time limit are
unchanged, so the reference returns below hold for the twins too.

The random returns are means over 1000 episodes of a uniform random policy (seed 0; standard
errors 0.4, 9, 0, 0.3 and 0.4); wrappers do not change the dynamics, so they are those of the
unwrapped tasks (the two CartPole rows estimate the same number from different samples).
CartPole's optimum is the time limit. For the other three tasks the optimum is not known in
closed form; the reference is a scripted controller that reads the *hidden* full state
(``env.unwrapped.state``), see :func:`scripted_action`, averaged over 1000 episodes. A trained
agent may beat it slightly, in which case its normalized score is clipped to 1. (The scripted
references' standard deviations over episodes are 93, 14 and 30; Acrobot's controller now and
then fails to swing up within the limit.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control import AcrobotEnv, CartPoleEnv, MountainCarEnv, PendulumEnv
from gymnasium.utils import RecordConstructorArgs

from dream_rl.envs._common import EndOfEpisodeGuard, check_bool, check_float
from dream_rl.errors import EnvError

__all__ = [
    "NOVEL_KEEP",
    "MaskVelocityWrapper",
    "NoisyObservationWrapper",
    "make_acrobot_novel",
    "make_cartpole_noisy",
    "make_cartpole_novel",
    "make_mountaincar_novel",
    "make_pendulum_novel",
    "scripted_action",
]

# Observation indices kept in the NoVel setting, per classic-control task.
NOVEL_KEEP: dict[str, tuple[int, ...]] = {
    "CartPole": (0, 2),  # [x, x_dot, theta, theta_dot] -> [x, theta]
    "Pendulum": (0, 1),  # [cos, sin, theta_dot] -> [cos, sin]
    "MountainCar": (0,),  # [position, velocity] -> [position]
    "Acrobot": (0, 1, 2, 3),  # [cos1, sin1, cos2, sin2, dtheta1, dtheta2] -> the four cos/sin
}


class MaskVelocityWrapper(gym.ObservationWrapper[np.ndarray, Any, np.ndarray], RecordConstructorArgs):
    """Keep only the observation entries listed in ``keep`` (in that order).

    Args:
        env: an env with a 1-D ``Box`` observation space.
        keep: indices of the entries to keep; must be distinct and inside the observation.

    Raises:
        EnvError: if the observation space is not a 1-D ``Box`` or ``keep`` is empty, repeats an
            index or points outside the observation.
    """

    def __init__(self, env: gym.Env[np.ndarray, Any], keep: Sequence[int]) -> None:
        RecordConstructorArgs.__init__(self, keep=tuple(keep))
        gym.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        if not isinstance(space, spaces.Box) or len(space.shape) != 1:
            raise EnvError(f"MaskVelocityWrapper needs a 1-D Box observation space, got {space}")
        size = space.shape[0]
        keep = tuple(int(i) for i in keep)
        if len(keep) == 0 or len(set(keep)) != len(keep) or not all(0 <= i < size for i in keep):
            raise EnvError(
                f"keep must be a non-empty list of distinct indices in [0, {size - 1}], got {list(keep)}"
            )
        self._keep = np.asarray(keep, dtype=np.intp)
        self.observation_space = spaces.Box(
            low=space.low[self._keep], high=space.high[self._keep], dtype=np.float32
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        # Fancy indexing copies, so the returned array never aliases the inner env's buffer.
        return np.asarray(observation, dtype=np.float32)[self._keep]


class NoisyObservationWrapper(gym.ObservationWrapper[np.ndarray, Any, np.ndarray], RecordConstructorArgs):
    """Add i.i.d. Gaussian noise with standard deviation ``noise_std`` to every observation entry.

    The noise is drawn from the env's own ``np_random``, so ``reset(seed=...)`` reproduces it. The
    observation space becomes unbounded because noise can push an entry past the original bounds.

    Raises:
        ValueError: if ``noise_std`` is negative or not finite, or the space is not a 1-D ``Box``.
    """

    def __init__(self, env: gym.Env[np.ndarray, Any], noise_std: float) -> None:
        RecordConstructorArgs.__init__(self, noise_std=noise_std)
        gym.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        if not isinstance(space, spaces.Box) or len(space.shape) != 1:
            raise EnvError(f"NoisyObservationWrapper needs a 1-D Box observation space, got {space}")
        self.noise_std = check_float("noise_std", noise_std, low=0.0, high=math.inf, high_inclusive=False)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=space.shape, dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        noise = self.np_random.normal(0.0, self.noise_std, size=self.observation_space.shape)
        return (np.asarray(observation, dtype=np.float64) + noise).astype(np.float32)


def _masked(env: gym.Env, task: str, fully_observable: bool) -> gym.Env:
    """``env`` showing the NoVel entries of ``task``, or every entry for the fully observable twin
    (the same wrapper either way, so both observations are float32 copies of the same layout)."""
    size = env.observation_space.shape[0]
    keep = range(size) if check_bool("fully_observable", fully_observable) else NOVEL_KEEP[task]
    return EndOfEpisodeGuard(MaskVelocityWrapper(env, keep), check_actions=True)


def make_cartpole_novel(render_mode: str | None = None, fully_observable: bool = False) -> gym.Env:
    """CartPole seeing only cart position and pole angle (``fully_observable=True``: all four entries)."""
    return _masked(CartPoleEnv(render_mode=render_mode), "CartPole", fully_observable)


def make_pendulum_novel(render_mode: str | None = None, fully_observable: bool = False) -> gym.Env:
    """Pendulum seeing only cos/sin of the angle (``fully_observable=True``: the angular velocity too)."""
    return _masked(PendulumEnv(render_mode=render_mode), "Pendulum", fully_observable)


def make_mountaincar_novel(render_mode: str | None = None, fully_observable: bool = False) -> gym.Env:
    """MountainCar (discrete actions) seeing only the car's position (``fully_observable=True``: its velocity too)."""
    return _masked(MountainCarEnv(render_mode=render_mode), "MountainCar", fully_observable)


def make_acrobot_novel(render_mode: str | None = None, fully_observable: bool = False) -> gym.Env:
    """Acrobot seeing only cos/sin of both joint angles (``fully_observable=True``: both angular velocities too)."""
    return _masked(AcrobotEnv(render_mode=render_mode), "Acrobot", fully_observable)


def make_cartpole_noisy(
    noise_std: float = 0.05, render_mode: str | None = None, fully_observable: bool = False
) -> gym.Env:
    """CartPole with its full observation corrupted by Gaussian noise of std ``noise_std``.

    The default 0.05 is a quarter of the pole-angle failure threshold (0.21 rad), so one frame is an
    unreliable estimate and averaging a few frames (memory) pays off. ``fully_observable=True``
    builds the noise-free twin (``noise_std`` is still checked, then unused).
    """
    check_float("noise_std", noise_std, low=0.0, high=math.inf, high_inclusive=False)
    if check_bool("fully_observable", fully_observable):
        return _masked(CartPoleEnv(render_mode=render_mode), "CartPole", True)
    inner = NoisyObservationWrapper(CartPoleEnv(render_mode=render_mode), noise_std)
    return EndOfEpisodeGuard(inner, check_actions=True)


# --------------------------------------------------------------------------- scripted references
# These read the hidden full state, which the agent never sees; they exist to document and test the
# "optimal" reference returns above.


def _mountaincar_steps_to_goal(position: float, velocity: float, push_left_steps: int) -> int:
    """Simulate MountainCar's dynamics: push left for ``push_left_steps`` then push along the velocity."""
    for t in range(200):
        action = 0 if t < push_left_steps else (2 if velocity >= 0 else 0)
        velocity += (action - 1) * 0.001 - 0.0025 * math.cos(3 * position)
        velocity = min(max(velocity, -0.07), 0.07)
        position = min(max(position + velocity, -1.2), 0.6)
        if position == -1.2 and velocity < 0:
            velocity = 0.0
        if position >= 0.5 and velocity >= 0:
            return t + 1
    return 10**6


def scripted_action(env: gym.Env) -> Any:
    """Action of the scripted full-state controller for any env of this module (reads hidden state).

    * CartPole: bang-bang on a linear combination of the four state variables.
    * Pendulum: energy pumping to swing up, then a PD controller near the top.
    * MountainCar: push along the velocity; from rest, simulate the dynamics to pick the direction of
      the first push that reaches the flag sooner.
    * Acrobot: torque along the second joint's velocity, corrected by the first joint's.
    """
    inner = env.unwrapped
    if isinstance(inner, CartPoleEnv):
        x, x_dot, theta, theta_dot = inner.state
        return int(theta + 0.5 * theta_dot + 0.05 * x + 0.1 * x_dot > 0)
    if isinstance(inner, PendulumEnv):
        theta, theta_dot = inner.state
        theta = (theta + math.pi) % (2 * math.pi) - math.pi  # 0 is upright
        if math.cos(theta) > 0.85:
            torque = -(12.0 * theta + 2.5 * theta_dot)
        else:
            energy = 0.5 * theta_dot**2 + 10.0 * (math.cos(theta) - 1.0)  # heuristic; 0 = at rest upright
            torque = 2.0 * math.copysign(1.0, theta_dot) if energy < 0 else 0.0
        return np.array([min(max(torque, -2.0), 2.0)], dtype=np.float32)
    if isinstance(inner, MountainCarEnv):
        position, velocity = (float(v) for v in inner.state)
        if velocity == 0.0:
            # At rest (the start state): first push left only if that reaches the flag sooner.
            left_first = _mountaincar_steps_to_goal(position, velocity, 1)
            return 0 if left_first < _mountaincar_steps_to_goal(position, velocity, 0) else 2
        return 2 if velocity > 0 else 0
    if isinstance(inner, AcrobotEnv):
        _, _, dtheta1, dtheta2 = inner.state
        return 2 if dtheta2 - 0.3 * dtheta1 > 0 else 0
    raise TypeError(f"no scripted controller for {type(inner).__name__}")
