"""Meta bandit: a trial of several episodes of the same hidden bandit; memory must survive episode ends."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from dream_rl.envs._common import SuiteEnv, action_reward_observation, check_bool, check_int, check_render_mode
from dream_rl.envs.bandit import ArmKnowledge
from dream_rl.errors import EnvError

__all__ = ["MetaBanditEnv", "scripted_action"]


class MetaBanditEnv(SuiteEnv):
    """Find the one paying arm in the first inner episode, exploit it in the following ones.

    A *trial* consists of ``n_episodes`` inner episodes of ``episode_length`` pulls each, all on
    the same bandit: one arm, drawn at random per trial, always pays 1; the others pay 0. Finding
    the arm costs exploration; once found, it pays in every later inner episode, but only for an
    agent whose memory survives the episode boundary.

    One gymnasium episode spans the whole trial. That is deliberate: sb3-contrib's RecurrentPPO
    resets the recurrent state whenever ``done`` is set, so true cross-episode memory is tested by
    marking inner-episode boundaries *in the observation* instead. At each boundary the
    observation looks exactly like a fresh start (no previous action, no previous reward) except
    for the boundary flag, as if the environment had been reset.

    Observation: ``Box(0, 1, (n_arms + 2,), float32)``: one-hot of the previous action in this
    inner episode (zeros at its first step), the previous reward (0 at its first step), and the
    boundary flag (1 at the first step of each inner episode). With ``fully_observable=True`` (the
    twin ``dream_rl/MetaBanditFullObs-v0``) :class:`~dream_rl.envs.bandit.ArmKnowledge` of the trial
    follows (the arms that did not pay, the paying arm once found; ``2 * n_arms`` entries), carried
    across the boundaries: what a memory of the trial would know.

    Action: ``Discrete(n_arms)``: the arm to pull.

    Reward: 1 for the paying arm, else 0 (deterministic).

    Episode end: terminates after ``n_episodes * episode_length`` pulls (the trial).
    ``info["inner_episode"]`` gives the index of the inner episode the next pull belongs to.

    Parameters:
        n_arms: an integer >= 2 (default 5).
        episode_length: pulls per inner episode, an integer >= 1 (default 5).
        n_episodes: inner episodes per trial, an integer >= 2 (default 5).
        render_mode: None or ``"rgb_array"`` (a bar picture of the observation, for videos).
        fully_observable: show the trial's knowledge of the arms (default False).

    Returns (expected, exact; ``T = n_episodes * episode_length``, defaults in brackets):
        random policy: ``T / n_arms`` [5].
        optimal: try untried arms in turn until one pays, then keep pulling it. The paying arm is
            found at pull ``j`` uniform in 1..n_arms, so the return is the mean of
            ``max(T - j + 1, 0)`` over ``j`` [23]. No policy does better in expectation.
        for contrast, the same search restarted at every boundary (memory reset per inner
            episode) gets ``n_episodes`` times that quantity with ``T = episode_length`` [15].
    """

    def __init__(
        self,
        n_arms: int = 5,
        episode_length: int = 5,
        n_episodes: int = 5,
        render_mode: str | None = None,
        fully_observable: bool = False,
    ) -> None:
        self.n_arms = check_int("n_arms", n_arms, minimum=2)
        self.episode_length = check_int("episode_length", episode_length, minimum=1)
        self.n_episodes = check_int("n_episodes", n_episodes, minimum=2)
        self.render_mode = check_render_mode(render_mode)
        self.fully_observable = check_bool("fully_observable", fully_observable)
        self.knowledge = ArmKnowledge(self.n_arms)
        size = self.n_arms + 2 + (2 * self.n_arms if self.fully_observable else 0)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(size,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.n_arms)
        # Hidden state, public for scripted oracles and tests.
        self.good_arm = 0
        self.t = 0  # pulls so far in the trial
        self._last_obs = np.zeros(size, dtype=np.float32)

    @staticmethod
    def search_return(n_arms: int, pulls: int) -> float:
        """Expected return of the optimal search-then-exploit policy over ``pulls`` pulls."""
        return sum(max(pulls - j + 1, 0) for j in range(1, n_arms + 1)) / n_arms

    def _observation(self, previous_action: int | None, previous_reward: float, boundary: bool) -> np.ndarray:
        knowledge = self.knowledge.features() if self.fully_observable else ()
        self._last_obs = action_reward_observation(self.n_arms, previous_action, previous_reward, float(boundary), *knowledge)
        return self._last_obs.copy()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        self.good_arm = int(self.np_random.integers(self.n_arms))
        self.knowledge.reset()
        return self._observation(None, 0.0, boundary=True), {"inner_episode": 0}

    def _step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise EnvError(f"action must be in [0, {self.n_arms - 1}], got {action!r}")
        reward = 1.0 if int(action) == self.good_arm else 0.0
        self.knowledge.update(int(action), reward)
        self.t += 1
        terminated = self.t >= self.n_episodes * self.episode_length
        if self.t % self.episode_length == 0:
            # The next pull starts a new inner episode: show what a fresh start would show.
            obs = self._observation(None, 0.0, boundary=True)
        else:
            obs = self._observation(int(action), reward, boundary=False)
        return obs, reward, terminated, False, {"inner_episode": self.t // self.episode_length}


def scripted_action(env: gym.Env) -> int:
    """The optimal search in closed form: trying arms 0, 1, 2, ... in turn, the paying arm ``g`` is
    reached at pull ``g``, and pulled from then on; so pull ``t`` uses arm ``min(t, g)``."""
    inner = env.unwrapped
    return min(inner.t, inner.good_arm)
