"""A rollout buffer whose minibatches are whole env rollouts, time-major.

sb3-contrib's ``RecurrentRolloutBuffer`` cuts each env's rollout where an episode starts and pads the
pieces into sequences, in numpy, for every minibatch. A torso resets its state exactly where an
episode starts inside a sequence (``torso(features, state, episode_starts)``), so none of that is
needed: a minibatch here is the full rollout (all ``n_steps``) of a subset of the envs, with the
episode starts as they happened and each env's recurrent state at the start of the rollout.
This is the layout of PureJaxRL and Memorax.

Layout: every per-step array is ``(n_steps, n_envs, ...)`` (time-major, as collected). Minibatches
hold ``(n_steps, envs_in_batch, ...)`` tensors.

Minibatch size: ``batch_size`` counts env steps, as in ``RecurrentPPO``; since a minibatch takes
whole env rollouts, it holds ``max(1, round(batch_size / n_steps))`` envs (at most ``n_envs``). With
8 envs, ``n_steps=128`` and ``batch_size=256``: 2 envs a minibatch, 4 minibatches an epoch. When the
envs do not divide evenly, the last minibatch of an epoch holds the remaining envs. Every env step
of the rollout is in exactly one minibatch per epoch; the env order is shuffled every epoch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.preprocessing import get_action_dim, get_obs_shape

from dream_rl.errors import PolicyError

__all__ = ["SequenceBatch", "SequenceRolloutBuffer", "envs_per_batch"]

Observation = th.Tensor | dict[str, th.Tensor]


class SequenceBatch(NamedTuple):
    """One minibatch: the whole rollout of ``B`` envs. Shapes: ``T = n_steps``.

    Attributes:
        observations: (T, B, *obs_shape), or a dict of such tensors.
        actions: (T, B, *action_shape); Discrete actions as int64 (T, B).
        old_values, old_log_prob, advantages, returns: (T, B).
        episode_starts: (T, B) bool; True where the step begins a new episode (the state resets
            before it).
        lstm_states: each env's recurrent state at the start of the rollout, in RecurrentPPO's
            layout (``RNNStates`` of ``(h, c)`` pairs, each (layers, B, hidden)).
        env_indices: (B,) the envs' indices in the rollout.
    """

    observations: Observation
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    episode_starts: th.Tensor
    lstm_states: RNNStates
    env_indices: th.Tensor


def envs_per_batch(batch_size: int | None, n_steps: int, n_envs: int) -> int:
    """The number of whole env rollouts in a minibatch of about ``batch_size`` steps (None: all)."""
    if batch_size is None:
        return n_envs
    return min(n_envs, max(1, round(batch_size / n_steps)))


class SequenceRolloutBuffer:
    """Stores one rollout of ``n_envs`` envs for ``n_steps`` steps, time-major, and yields
    minibatches of whole env rollouts (see the module docstring).

    Per-step data is written into preallocated numpy arrays (no copy per step beyond the write);
    on CPU the tensors handed out share their memory.

    Args:
        n_steps: steps per env per rollout (``T``).
        observation_space, action_space: the env's spaces.
        n_envs: number of envs (``N``).
        device: where minibatches live.
        gamma, gae_lambda: discount and GAE factor.
    """

    def __init__(
        self,
        n_steps: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        n_envs: int,
        device: th.device | str = "cpu",
        gamma: float = 0.99,
        gae_lambda: float = 1.0,
    ) -> None:
        if n_steps < 1 or n_envs < 1:
            raise PolicyError(f"a rollout needs n_steps >= 1 and n_envs >= 1, got {n_steps} and {n_envs}")
        self.n_steps, self.n_envs = int(n_steps), int(n_envs)
        self.observation_space, self.action_space = observation_space, action_space
        self.device = th.device(device)
        self.gamma, self.gae_lambda = float(gamma), float(gae_lambda)
        self.obs_shape = get_obs_shape(observation_space)
        self.discrete_actions = isinstance(action_space, spaces.Discrete)
        self.action_shape: tuple[int, ...] = () if self.discrete_actions else (get_action_dim(action_space),)
        self.pos = 0
        self.full = False
        self.initial_lstm_states: RNNStates | None = None
        self._allocate()

    def _allocate(self) -> None:
        T, N = self.n_steps, self.n_envs
        if isinstance(self.obs_shape, dict):
            self.observations: np.ndarray | dict[str, np.ndarray] = {
                key: np.zeros((T, N, *shape), dtype=self.observation_space[key].dtype)  # type: ignore[index]
                for key, shape in self.obs_shape.items()
            }
        else:
            self.observations = np.zeros((T, N, *self.obs_shape), dtype=self.observation_space.dtype)
        self.actions = np.zeros((T, N, *self.action_shape), dtype=np.int64 if self.discrete_actions else np.float32)
        self.rewards = np.zeros((T, N), dtype=np.float32)
        self.episode_starts = np.zeros((T, N), dtype=bool)
        self.values = np.zeros((T, N), dtype=np.float32)
        self.log_probs = np.zeros((T, N), dtype=np.float32)
        self.advantages = np.zeros((T, N), dtype=np.float32)
        self.returns = np.zeros((T, N), dtype=np.float32)

    def reset(self) -> None:
        """Start a new rollout (the arrays are overwritten step by step)."""
        self.pos = 0
        self.full = False
        self.initial_lstm_states = None

    def size(self) -> int:
        """Steps stored per env."""
        return self.n_steps if self.full else self.pos

    def start(self, lstm_states: RNNStates) -> None:
        """Record each env's recurrent state before the rollout's first step (copied)."""
        self.initial_lstm_states = RNNStates(
            tuple(s.detach().clone() for s in lstm_states.pi), tuple(s.detach().clone() for s in lstm_states.vf)
        )

    def add(
        self,
        obs: np.ndarray | dict[str, np.ndarray],
        action: np.ndarray,
        reward: np.ndarray,
        episode_start: np.ndarray,
        value: th.Tensor,
        log_prob: th.Tensor,
    ) -> None:
        """One step of every env: ``obs`` as the env returned it before the step, ``action`` (N, ...)
        as sampled, ``reward`` (N,), ``episode_start`` (N,): the obs begins an episode, ``value``
        and ``log_prob`` (N,) or (N, 1)."""
        if self.full:
            raise PolicyError(f"the rollout buffer already holds {self.n_steps} steps: call reset() first")
        t = self.pos
        if isinstance(self.observations, dict):
            for key, array in self.observations.items():
                array[t] = np.asarray(obs[key]).reshape(array.shape[1:])  # type: ignore[index]
        else:
            self.observations[t] = np.asarray(obs).reshape(self.observations.shape[1:])
        self.actions[t] = np.asarray(action).reshape(self.actions.shape[1:])
        self.rewards[t] = reward
        self.episode_starts[t] = episode_start
        self.values[t] = value.detach().reshape(-1).cpu().numpy()
        self.log_probs[t] = log_prob.detach().reshape(-1).cpu().numpy()
        self.pos += 1
        self.full = self.pos == self.n_steps

    def compute_returns_and_advantage(self, last_values: th.Tensor, dones: np.ndarray) -> None:
        """GAE(lambda) advantages and TD(lambda) returns, as SB3's ``RolloutBuffer`` computes them.

        Args:
            last_values: (N,) or (N, 1), the value of the observation after the last step.
            dones: (N,), whether the last step ended an episode.
        """
        next_values = last_values.detach().reshape(-1).cpu().numpy().astype(np.float32)
        next_non_terminal = 1.0 - np.asarray(dones, dtype=np.float32)
        last_gae = np.zeros(self.n_envs, dtype=np.float32)
        discount = np.float32(self.gamma * self.gae_lambda)
        for t in range(self.n_steps - 1, -1, -1):
            delta = self.rewards[t] + np.float32(self.gamma) * next_values * next_non_terminal - self.values[t]
            last_gae = delta + discount * next_non_terminal * last_gae
            self.advantages[t] = last_gae
            next_values = self.values[t]
            next_non_terminal = 1.0 - self.episode_starts[t].astype(np.float32)
        np.add(self.advantages, self.values, out=self.returns)

    def _tensor(self, array: np.ndarray) -> th.Tensor:
        return th.from_numpy(array).to(self.device)

    def get(self, batch_size: int | None = None) -> Iterator[SequenceBatch]:
        """One epoch of minibatches, each the whole rollout of a random subset of the envs.

        Args:
            batch_size: env steps per minibatch, rounded to whole envs (see the module docstring);
                None: one minibatch of every env.
        """
        if not self.full:
            raise PolicyError(f"the rollout buffer holds {self.pos} of {self.n_steps} steps: collect a full rollout first")
        if self.initial_lstm_states is None:
            raise PolicyError("the rollout buffer has no initial recurrent states: call start() before add()")
        per_batch = envs_per_batch(batch_size, self.n_steps, self.n_envs)
        order = th.from_numpy(np.random.permutation(self.n_envs))
        for first in range(0, self.n_envs, per_batch):
            yield self.batch(order[first : first + per_batch])

    def batch(self, env_indices: th.Tensor) -> SequenceBatch:
        """The minibatch of the envs ``env_indices`` (B,), in that order."""
        idx = env_indices.to(th.long)
        take = idx.numpy() if idx.device.type == "cpu" else idx.cpu().numpy()

        def rows(array: np.ndarray) -> th.Tensor:
            return self._tensor(np.ascontiguousarray(array[:, take]))

        if isinstance(self.observations, dict):
            observations: Observation = {key: rows(array) for key, array in self.observations.items()}
        else:
            observations = rows(self.observations)
        states = self.initial_lstm_states
        assert states is not None
        on_device = idx.to(states.pi[0].device)
        lstm_states = RNNStates(
            tuple(s.index_select(1, on_device) for s in states.pi),  # type: ignore[arg-type]
            tuple(s.index_select(1, on_device) for s in states.vf),  # type: ignore[arg-type]
        )
        return SequenceBatch(
            observations=observations,
            actions=rows(self.actions),
            old_values=rows(self.values),
            old_log_prob=rows(self.log_probs),
            advantages=rows(self.advantages),
            returns=rows(self.returns),
            episode_starts=rows(self.episode_starts),
            lstm_states=lstm_states,
            env_indices=idx,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_steps={self.n_steps}, n_envs={self.n_envs}, pos={self.pos})"
