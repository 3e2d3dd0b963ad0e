"""Bandit: one episode of a hidden multi-armed bandit; the plain task behind RL² bandit trials. Also
:class:`ArmKnowledge`, what a perfect memory knows about such a bandit, which the fully observable
twins of the meta-RL bandits show in their observation."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from dream_rl.envs._common import SuiteEnv, action_reward_observation, check_int, check_render_mode, one_hot
from dream_rl.errors import EnvError

__all__ = ["ArmKnowledge", "ArmKnowledgeWrapper", "BanditEnv", "scripted_trial_action"]


class ArmKnowledge:
    """What a perfect memory of the pulls so far knows about a bandit with one paying arm (it pays 1,
    the others 0): the arms pulled without pay, and the paying arm once it has paid.

    ``features()`` is float32 of length ``2 * n_arms``: a mask of the arms that did not pay, then a
    one-hot of the paying arm (zeros until found). With it a memoryless policy can run the optimal
    search (pull the paying arm if known, else an arm not yet tried), so the return it can reach is the
    optimal return of the task with memory: the twin removes the need to remember, not the need to
    explore (showing the paying arm itself would do both, and would beat that optimum).
    """

    def __init__(self, n_arms: int) -> None:
        self.n_arms = n_arms
        self.failed = np.zeros(n_arms, dtype=np.float32)
        self.paying: int | None = None

    def reset(self) -> None:
        self.failed[:] = 0.0
        self.paying = None

    def update(self, action: int, reward: float) -> None:
        if reward > 0:
            self.paying = int(action)
        else:
            self.failed[int(action)] = 1.0

    def features(self) -> np.ndarray:
        return np.concatenate([self.failed, one_hot(self.paying, self.n_arms)])


class ArmKnowledgeWrapper(gym.Wrapper):
    """Append :class:`ArmKnowledge` over the whole (gymnasium) episode to a 1-D ``Box`` observation:
    around an RL² trial of bandit episodes (``make_rl2_trial(fully_observable=True)``) it carries
    what the trial taught across the inner episodes' boundaries."""

    def __init__(self, env: gym.Env, n_arms: int) -> None:
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, spaces.Box) or len(space.shape) != 1:
            raise EnvError(f"ArmKnowledgeWrapper needs a 1-D Box observation space, got {space}")
        self.knowledge = ArmKnowledge(check_int("n_arms", n_arms, minimum=2))
        self.observation_space = spaces.Box(
            np.append(space.low, np.zeros(2 * n_arms)).astype(np.float32),
            np.append(space.high, np.ones(2 * n_arms)).astype(np.float32),
            dtype=np.float32,
        )

    def _observation(self, obs: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(obs, dtype=np.float32), self.knowledge.features()])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self.knowledge.reset()
        return self._observation(obs), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.knowledge.update(int(action), float(reward))
        return self._observation(obs), reward, terminated, truncated, info


class BanditEnv(SuiteEnv):
    """Find the one paying arm within ``episode_length`` pulls.

    One arm, drawn at random at every reset, always pays 1; the others pay 0. With memory of the
    arms tried in this episode, the optimal policy tries untried arms in turn and keeps pulling the
    paying one. Wrapped in :class:`~dream_rl.envs.wrappers.RL2Trial` (``gymnasium.make("dream_rl/RL2-v0")``),
    ``k`` episodes that share the arm form one trial: the setting of :class:`MetaBanditEnv`, observation
    for observation.

    Observation: ``Box(0, 1, (n_arms + 1,), float32)``: one-hot of the previous action (zeros at the
    first pull) and the previous reward (0 at the first pull).

    Action: ``Discrete(n_arms)``: the arm to pull. Reward: 1 for the paying arm, else 0.

    Episode end: terminates after ``episode_length`` pulls.

    Parameters:
        n_arms: an integer >= 2 (default 5).
        episode_length: pulls per episode, an integer >= 1 (default 5).
        render_mode: None or ``"rgb_array"``.
    """

    def __init__(self, n_arms: int = 5, episode_length: int = 5, render_mode: str | None = None) -> None:
        self.n_arms = check_int("n_arms", n_arms, minimum=2)
        self.episode_length = check_int("episode_length", episode_length, minimum=1)
        self.render_mode = check_render_mode(render_mode)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.n_arms + 1,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.n_arms)
        self.good_arm = 0  # hidden state, public for scripted oracles and tests
        self.t = 0
        self._last_obs = np.zeros(self.n_arms + 1, dtype=np.float32)

    def _observation(self, previous_action: int | None, previous_reward: float) -> np.ndarray:
        self._last_obs = action_reward_observation(self.n_arms, previous_action, previous_reward)
        return self._last_obs.copy()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        self.good_arm = int(self.np_random.integers(self.n_arms))
        return self._observation(None, 0.0), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise EnvError(f"action must be in [0, {self.n_arms - 1}], got {action!r}")
        reward = 1.0 if int(action) == self.good_arm else 0.0
        self.t += 1
        return self._observation(int(action), reward), reward, self.t >= self.episode_length, False, {}


def scripted_trial_action(env: gym.Env) -> int:
    """The optimal search over a whole RL² trial of bandit episodes (the same arm in every episode):
    trying arms 0, 1, 2, ... in turn across the trial, pull ``t`` of the trial uses arm ``min(t, good_arm)``.
    Also optimal for a single, unwrapped episode."""
    try:
        pulls = int(env.get_wrapper_attr("trial_steps"))
    except AttributeError:  # a plain episode
        pulls = env.unwrapped.t
    return min(pulls, env.unwrapped.good_arm)
