"""Batched Stable-Baselines3 VecEnvs for the classic-control tasks of the suite: all envs stepped at
once as numpy arrays.

SB3's ``DummyVecEnv`` steps each env in Python (wrappers, checks, an info dict deep-copied per step);
at 8-64 CartPole envs that is a third or more of a recurrent PPO rollout. Here one
:class:`BatchedVecEnv` holds the state of all ``n`` envs as an ``(n, d)`` array and steps them with
array arithmetic, written in the same order of operations as gymnasium's single-env code, so that
with the same seeds it returns what ``DummyVecEnv`` of the registered envs returns, step by step:
the same observations, rewards, dones and infos (``terminal_observation`` and
``TimeLimit.truncated``, auto-reset included). Each env keeps its own random generator, seeded as
``gymnasium.Env.reset(seed=...)`` seeds it (``seed + i`` for env ``i`` after :meth:`seed`), so
resets and observation noise draw the same numbers too.

Supported ids (:data:`BATCHED_ENVS`): ``dream_rl/CartPoleNoVel-v0``, ``dream_rl/CartPoleNoisy-v0``,
``dream_rl/PendulumNoVel-v0``, ``dream_rl/MountainCarNoVel-v0``, ``dream_rl/AcrobotNoVel-v0`` and
gymnasium's ``CartPole-v1``. :func:`make_batched_vec_env` builds one by id, like SB3's
``make_vec_env`` (with episode statistics from ``VecMonitor``).

What ``DummyVecEnv`` of the registered envs has and these do not: rendering, ``env_method`` and
per-env wrappers (``get_attr``/``set_attr`` reach the batched env's own attributes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env import VecEnv, VecMonitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from dream_rl.envs._common import check_float, check_int
from dream_rl.errors import EnvError

__all__ = [
    "BATCHED_ENVS",
    "AcrobotVecEnv",
    "BatchedVecEnv",
    "CartPoleVecEnv",
    "MountainCarVecEnv",
    "PendulumVecEnv",
    "make_batched_vec_env",
]


def _square(x: np.ndarray) -> np.ndarray:
    """``x ** 2`` element by element as numpy computes it for one scalar (``pow``), which differs
    from the array expression ``x ** 2`` (``x * x``) in the last bit for about 1 value in 1000; the
    single envs square numpy scalars, and equal trajectories need equal bits."""
    if x.dtype == np.float64:
        return np.array([math.pow(v, 2) for v in x.tolist()], dtype=np.float64)
    return np.array([v**2 for v in x], dtype=x.dtype)


class BatchedVecEnv(VecEnv):
    """Base class: ``num_envs`` copies of one task whose state is an ``(n, d)`` float64 array.

    A subclass sets ``full_space`` (the task's own observation space) and implements
    :meth:`_reset_rows` (draw the start state of some envs from their generators), :meth:`_step_all`
    (advance every env) and :meth:`_full_observation` (the task's observation of some envs). This
    class adds the time limit, auto-reset and SB3's info keys, and the observation transform of the
    suite's wrappers: ``keep`` (the entries kept, as ``MaskVelocityWrapper``) or ``noise_std``
    (Gaussian noise from each env's generator, as ``NoisyObservationWrapper``).

    Args:
        num_envs: number of envs (>= 1).
        max_episode_steps: the time limit (``TimeLimit``); None: no limit.
        keep: observation entries kept, in order; None keeps all.
        noise_std: standard deviation of the observation noise; None: no noise.
    """

    full_space: spaces.Box
    state_size: int

    def __init__(
        self,
        num_envs: int,
        action_space: spaces.Space,
        max_episode_steps: int | None,
        keep: Sequence[int] | None = None,
        noise_std: float | None = None,
    ) -> None:
        num_envs = check_int("num_envs", num_envs, minimum=1)
        self._keep = None if keep is None else np.asarray(tuple(keep), dtype=np.intp)
        self.noise_std = None if noise_std is None else check_float("noise_std", noise_std, low=0.0, high=math.inf,
                                                                    high_inclusive=False)
        low, high = self.full_space.low, self.full_space.high
        if self.noise_std is not None:
            observation_space = spaces.Box(-np.inf, np.inf, shape=self.full_space.shape, dtype=np.float32)
        elif self._keep is not None:
            observation_space = spaces.Box(low[self._keep], high[self._keep], dtype=np.float32)
        else:
            observation_space = self.full_space
        self.render_mode = None  # read by VecEnv.__init__ (through get_attr)
        super().__init__(num_envs, observation_space, action_space)
        self.max_episode_steps = max_episode_steps
        self.state = np.zeros((num_envs, self.state_size), dtype=np.float64)
        self.elapsed = np.zeros(num_envs, dtype=np.int64)
        self.generators: list[np.random.Generator | None] = [None] * num_envs
        self._actions: np.ndarray | None = None

    # ----------------------------------------------------------------------- task interface

    def _reset_rows(self, rows: np.ndarray) -> None:
        """Draw the start state of the envs ``rows`` into ``self.state`` (each from its generator)."""
        raise NotImplementedError

    def _step_all(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance every env by one step → (reward (n,) float64, terminated (n,) bool)."""
        raise NotImplementedError

    def _full_observation(self, rows: np.ndarray | slice) -> np.ndarray:
        """The task's float32 observation of the envs ``rows``."""
        raise NotImplementedError

    # ----------------------------------------------------------------------- VecEnv

    def _generator(self, row: int) -> np.random.Generator:
        generator = self.generators[row]
        if generator is None:  # never seeded: fresh entropy, as gymnasium does
            generator = self.generators[row] = seeding.np_random()[0]
        return generator

    def _observe(self, rows: np.ndarray | slice) -> np.ndarray:
        obs = self._full_observation(rows)
        if self.noise_std is not None:
            indices = np.arange(self.num_envs)[rows]
            noise = np.stack([self._generator(int(i)).normal(0.0, self.noise_std, size=obs.shape[1]) for i in indices])
            return (obs.astype(np.float64) + noise).astype(np.float32)
        return obs[:, self._keep] if self._keep is not None else obs

    def _reset_envs(self, rows: np.ndarray) -> None:
        for row in rows:
            self._generator(int(row))
        self._reset_rows(rows)
        self.elapsed[rows] = 0

    def reset(self) -> VecEnvObs:
        """Reset every env (with the seeds of :meth:`seed`, then forgotten, as ``DummyVecEnv`` does)."""
        for row, seed in enumerate(self._seeds):
            if seed is not None:
                self.generators[row] = seeding.np_random(seed)[0]
        self._reset_seeds()
        self._reset_options()
        rows = np.arange(self.num_envs)
        self._reset_envs(rows)
        return self._observe(rows)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise EnvError(f"{type(self).__name__}.step_wait() called without step_async(actions)")
        actions, self._actions = self._actions, None
        reward, terminated = self._step_all(actions)
        self.elapsed += 1
        obs = self._observe(slice(None))
        truncated = np.zeros(self.num_envs, dtype=bool)
        if self.max_episode_steps is not None:
            truncated = self.elapsed >= self.max_episode_steps
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{"TimeLimit.truncated": bool(t and not d)} for t, d in zip(truncated, terminated)]
        done_rows = np.flatnonzero(dones)
        if done_rows.size:
            for row in done_rows:
                infos[row]["terminal_observation"] = obs[row].copy()
            self._reset_envs(done_rows)
            obs[done_rows] = self._observe(done_rows)
        return obs, reward.astype(np.float32), dones, infos

    def close(self) -> None:
        return None

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any) -> list[Any]:
        raise EnvError(
            f"{type(self).__name__} steps its envs as arrays and has no per-env objects to call {method_name!r} on; "
            "use DummyVecEnv for that"
        )

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))

    def _get_indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)


class CartPoleVecEnv(BatchedVecEnv):
    """gymnasium's ``CartPoleEnv`` (Euler integrator, reward 1 per step including the last)."""

    gravity, masscart, masspole, length, force_mag, tau = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    total_mass = masspole + masscart
    polemass_length = masspole * length
    theta_threshold_radians = 12 * 2 * math.pi / 360
    x_threshold = 2.4
    state_size = 4
    full_space = spaces.Box(
        -np.array([x_threshold * 2, np.inf, theta_threshold_radians * 2, np.inf], dtype=np.float32),
        np.array([x_threshold * 2, np.inf, theta_threshold_radians * 2, np.inf], dtype=np.float32),
        dtype=np.float32,
    )

    def __init__(self, num_envs: int, max_episode_steps: int | None = 500, keep: Sequence[int] | None = None,
                 noise_std: float | None = None) -> None:
        super().__init__(num_envs, spaces.Discrete(2), max_episode_steps, keep, noise_std)

    def _reset_rows(self, rows: np.ndarray) -> None:
        for row in rows:
            self.state[row] = self._generator(int(row)).uniform(low=-0.05, high=0.05, size=(4,))

    def _step_all(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        actions = actions.reshape(self.num_envs)
        x, x_dot, theta, theta_dot = self.state.T
        force = np.where(actions == 1, self.force_mag, -self.force_mag)
        costheta, sintheta = np.cos(theta), np.sin(theta)
        temp = (force + self.polemass_length * np.square(theta_dot) * sintheta) / self.total_mass
        thetaacc = (self.gravity * sintheta - costheta * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * np.square(costheta) / self.total_mass)
        )
        xacc = temp - self.polemass_length * thetaacc * costheta / self.total_mass
        x = x + self.tau * x_dot
        x_dot = x_dot + self.tau * xacc
        theta = theta + self.tau * theta_dot
        theta_dot = theta_dot + self.tau * thetaacc
        self.state = np.stack([x, x_dot, theta, theta_dot], axis=1)
        terminated = (x < -self.x_threshold) | (x > self.x_threshold) | (theta < -self.theta_threshold_radians) | (
            theta > self.theta_threshold_radians
        )
        return np.ones(self.num_envs), terminated

    def _full_observation(self, rows: np.ndarray | slice) -> np.ndarray:
        return self.state[rows].astype(np.float32)


class PendulumVecEnv(BatchedVecEnv):
    """gymnasium's ``PendulumEnv`` (g = 10, never terminates)."""

    max_speed, max_torque, dt, g, m, l = 8.0, 2.0, 0.05, 10.0, 1.0, 1.0
    state_size = 2
    full_space = spaces.Box(-np.array([1.0, 1.0, 8.0], dtype=np.float32), np.array([1.0, 1.0, 8.0], dtype=np.float32),
                            dtype=np.float32)

    def __init__(self, num_envs: int, max_episode_steps: int | None = 200, keep: Sequence[int] | None = None,
                 noise_std: float | None = None) -> None:
        action_space = spaces.Box(low=-self.max_torque, high=self.max_torque, shape=(1,), dtype=np.float32)
        super().__init__(num_envs, action_space, max_episode_steps, keep, noise_std)

    def _reset_rows(self, rows: np.ndarray) -> None:
        high = np.array([np.pi, 1.0])
        for row in rows:
            self.state[row] = self._generator(int(row)).uniform(low=-high, high=high)

    def _step_all(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        th, thdot = self.state.T
        u = np.clip(np.asarray(actions).reshape(self.num_envs, -1), -self.max_torque, self.max_torque)[:, 0]
        costs = _square(((th + np.pi) % (2 * np.pi)) - np.pi) + 0.1 * _square(thdot) + 0.001 * _square(u)
        newthdot = thdot + (3 * self.g / (2 * self.l) * np.sin(th) + 3.0 / (self.m * self.l**2) * u) * self.dt
        newthdot = np.clip(newthdot, -self.max_speed, self.max_speed)
        newth = th + newthdot * self.dt
        self.state = np.stack([newth, newthdot], axis=1)
        return -costs, np.zeros(self.num_envs, dtype=bool)

    def _full_observation(self, rows: np.ndarray | slice) -> np.ndarray:
        theta, thetadot = self.state[rows].T
        return np.stack([np.cos(theta), np.sin(theta), thetadot], axis=1).astype(np.float32)


class MountainCarVecEnv(BatchedVecEnv):
    """gymnasium's ``MountainCarEnv`` (discrete actions, reward -1 per step)."""

    min_position, max_position, max_speed, goal_position, force, gravity = -1.2, 0.6, 0.07, 0.5, 0.001, 0.0025
    state_size = 2
    full_space = spaces.Box(np.array([-1.2, -0.07], dtype=np.float32), np.array([0.6, 0.07], dtype=np.float32),
                            dtype=np.float32)

    def __init__(self, num_envs: int, max_episode_steps: int | None = 200, keep: Sequence[int] | None = None,
                 noise_std: float | None = None) -> None:
        super().__init__(num_envs, spaces.Discrete(3), max_episode_steps, keep, noise_std)

    def _reset_rows(self, rows: np.ndarray) -> None:
        for row in rows:
            self.state[row] = (self._generator(int(row)).uniform(low=-0.6, high=-0.4), 0.0)

    def _step_all(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        position, velocity = self.state.T
        actions = actions.reshape(self.num_envs).astype(np.int64)
        # math.cos, as the single env calls it (numpy's vectorised cos may differ in the last bit)
        cos = np.array([math.cos(v) for v in (3 * position).tolist()])
        velocity = velocity + ((actions - 1) * self.force + cos * (-self.gravity))
        velocity = np.clip(velocity, -self.max_speed, self.max_speed)
        position = np.clip(position + velocity, self.min_position, self.max_position)
        velocity = np.where((position == self.min_position) & (velocity < 0), 0.0, velocity)
        terminated = (position >= self.goal_position) & (velocity >= 0)
        self.state = np.stack([position, velocity], axis=1)
        return np.full(self.num_envs, -1.0), terminated

    def _full_observation(self, rows: np.ndarray | slice) -> np.ndarray:
        return self.state[rows].astype(np.float32)


class AcrobotVecEnv(BatchedVecEnv):
    """gymnasium's ``AcrobotEnv`` ("book" dynamics, RK4 over one step of 0.2 s, no torque noise)."""

    dt = 0.2
    LINK_LENGTH_1 = LINK_MASS_1 = LINK_MASS_2 = LINK_MOI = 1.0
    LINK_COM_POS_1 = LINK_COM_POS_2 = 0.5
    MAX_VEL_1, MAX_VEL_2 = 4 * math.pi, 9 * math.pi
    AVAIL_TORQUE = np.array([-1.0, 0.0, 1.0])
    state_size = 4
    full_space = spaces.Box(
        -np.array([1.0, 1.0, 1.0, 1.0, MAX_VEL_1, MAX_VEL_2], dtype=np.float32),
        np.array([1.0, 1.0, 1.0, 1.0, MAX_VEL_1, MAX_VEL_2], dtype=np.float32),
        dtype=np.float32,
    )

    def __init__(self, num_envs: int, max_episode_steps: int | None = 500, keep: Sequence[int] | None = None,
                 noise_std: float | None = None) -> None:
        # gymnasium keeps the start state in float32 (its first observation's cos/sin are float32
        # ones) and every later state in float64
        self.fresh = np.zeros(num_envs, dtype=bool)
        super().__init__(num_envs, spaces.Discrete(3), max_episode_steps, keep, noise_std)

    def _reset_rows(self, rows: np.ndarray) -> None:
        for row in rows:
            self.state[row] = self._generator(int(row)).uniform(low=-0.1, high=0.1, size=(4,)).astype(np.float32)
        self.fresh[rows] = True

    def _dsdt(self, s: np.ndarray) -> np.ndarray:
        m1, m2, l1 = self.LINK_MASS_1, self.LINK_MASS_2, self.LINK_LENGTH_1
        lc1, lc2, I1, I2, g = self.LINK_COM_POS_1, self.LINK_COM_POS_2, self.LINK_MOI, self.LINK_MOI, 9.8
        theta1, theta2, dtheta1, dtheta2, a = s.T
        pi = np.pi
        d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * np.cos(theta2)) + I1 + I2
        d2 = m2 * (lc2**2 + l1 * lc2 * np.cos(theta2)) + I2
        phi2 = m2 * lc2 * g * np.cos(theta1 + theta2 - pi / 2.0)
        phi1 = (
            -m2 * l1 * lc2 * _square(dtheta2) * np.sin(theta2)
            - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * np.sin(theta2)
            + (m1 * lc1 + m2 * l1) * g * np.cos(theta1 - pi / 2)
            + phi2
        )
        ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * _square(dtheta1) * np.sin(theta2) - phi2) / (
            m2 * lc2**2 + I2 - _square(d2) / d1
        )
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return np.stack([dtheta1, dtheta2, ddtheta1, ddtheta2, np.zeros_like(a)], axis=1)

    def _step_all(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torque = self.AVAIL_TORQUE[actions.reshape(self.num_envs).astype(np.int64)]
        y0 = np.concatenate([self.state, torque[:, None]], axis=1)
        dt = self.dt - 0  # rk4 over t = [0, dt], as gymnasium's rk4 computes its step
        dt2 = dt / 2.0
        k1 = self._dsdt(y0)
        k2 = self._dsdt(y0 + dt2 * k1)
        k3 = self._dsdt(y0 + dt2 * k2)
        k4 = self._dsdt(y0 + dt * k3)
        ns = (y0 + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4))[:, :4].copy()
        for column in (0, 1):  # wrap into [-pi, pi]
            angle = ns[:, column]
            while (angle > math.pi).any():
                angle[:] = np.where(angle > math.pi, angle - 2 * math.pi, angle)
            while (angle < -math.pi).any():
                angle[:] = np.where(angle < -math.pi, angle + 2 * math.pi, angle)
        ns[:, 2] = np.minimum(np.maximum(ns[:, 2], -self.MAX_VEL_1), self.MAX_VEL_1)
        ns[:, 3] = np.minimum(np.maximum(ns[:, 3], -self.MAX_VEL_2), self.MAX_VEL_2)
        self.state = ns
        self.fresh[:] = False
        terminated = -np.cos(ns[:, 0]) - np.cos(ns[:, 1] + ns[:, 0]) > 1.0
        return np.where(terminated, 0.0, -1.0), terminated

    def _full_observation(self, rows: np.ndarray | slice) -> np.ndarray:
        s = self.state[rows]
        if self.fresh[rows].all():
            s = s.astype(np.float32)
        elif self.fresh[rows].any():
            return np.concatenate([self._full_observation(np.array([row])) for row in np.arange(self.num_envs)[rows]])
        return np.stack([np.cos(s[:, 0]), np.sin(s[:, 0]), np.cos(s[:, 1]), np.sin(s[:, 1]), s[:, 2], s[:, 3]],
                        axis=1).astype(np.float32)


# id -> (class, constructor arguments); the time limit comes from the id's registration
BATCHED_ENVS: dict[str, tuple[type[BatchedVecEnv], dict[str, Any]]] = {
    "dream_rl/CartPoleNoVel-v0": (CartPoleVecEnv, {"keep": (0, 2)}),
    "dream_rl/CartPoleNoisy-v0": (CartPoleVecEnv, {"noise_std": 0.05}),
    "dream_rl/PendulumNoVel-v0": (PendulumVecEnv, {"keep": (0, 1)}),
    "dream_rl/MountainCarNoVel-v0": (MountainCarVecEnv, {"keep": (0,)}),
    "dream_rl/AcrobotNoVel-v0": (AcrobotVecEnv, {"keep": (0, 1, 2, 3)}),
    "CartPole-v1": (CartPoleVecEnv, {}),
}


def make_batched_vec_env(
    env_id: str, n_envs: int = 1, seed: int | None = None, monitor: bool = True, **env_kwargs: Any
) -> VecEnv:
    """``n_envs`` copies of ``env_id`` in one :class:`BatchedVecEnv`, seeded ``seed, seed + 1, ...`` at
    the first reset, wrapped in ``VecMonitor`` (episode returns and lengths in the infos) unless
    ``monitor=False``. ``env_kwargs``: the id's own options (``noise_std`` for CartPoleNoisy).

    Raises:
        EnvError: for an id without a batched version (see :data:`BATCHED_ENVS`).
    """
    if env_id not in BATCHED_ENVS:
        raise EnvError(
            f"no batched VecEnv for {env_id!r}; batched ids: {', '.join(BATCHED_ENVS)} (use SB3's make_vec_env for others)"
        )
    cls, defaults = BATCHED_ENVS[env_id]
    options = {**defaults, **env_kwargs}
    unknown = sorted(set(env_kwargs) - ({"noise_std"} if "noise_std" in defaults else set()))
    if unknown:
        raise EnvError(f"{env_id} takes no options {unknown} in its batched VecEnv")
    import dream_rl  # noqa: F401  (registers the suite ids, for their time limits)

    venv = cls(n_envs, max_episode_steps=gym.spec(env_id).max_episode_steps, **options)
    venv.seed(seed)
    return VecMonitor(venv) if monitor else venv
