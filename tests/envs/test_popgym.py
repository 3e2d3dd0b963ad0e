"""POPGym envs by id (popgym/<Name>-v0) with one-hot flattened observations."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.env_checker import check_env

import dream_rl  # noqa: F401  (registers the ids)
from dream_rl.envs.popgym import OneHotFlatten


class _TupleEnv(gym.Env):
    """Observes (Discrete(3), MultiDiscrete([2, 4]), Box(2)); a fixed script of observations."""

    observation_space = spaces.Tuple(
        (spaces.Discrete(3), spaces.MultiDiscrete([2, 4]), spaces.Box(-1.0, 1.0, (2,), np.float32))
    )
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), 0.0, self.t >= 3, False, {}

    def _obs(self):
        return (self.t % 3, np.array([self.t % 2, self.t]), np.array([0.5, -0.5], np.float32))


def test_one_hot_flatten_encodes_each_part():
    env = OneHotFlatten(_TupleEnv())
    assert env.observation_space == spaces.Box(
        np.array([0] * 9 + [-1, -1], np.float32), np.array([1] * 9 + [1, 1], np.float32), dtype=np.float32
    )
    obs, _ = env.reset(seed=0)
    #                   Discrete(3)=0  MultiDiscrete: 0 of 2, 0 of 4   Box
    np.testing.assert_array_equal(obs, [1, 0, 0, 1, 0, 1, 0, 0, 0, 0.5, -0.5])
    obs, *_ = env.step(0)
    np.testing.assert_array_equal(obs, [0, 1, 0, 0, 1, 0, 1, 0, 0, 0.5, -0.5])
    assert obs.dtype == np.float32
    check_env(env)


popgym = pytest.importorskip("popgym")


@pytest.mark.parametrize(
    "env_id",
    ["popgym/RepeatPreviousEasy-v0", "popgym/AutoencodeEasy-v0", "popgym/CountRecallHard-v0",
     "popgym/BattleshipEasy-v0", "popgym/PositionOnlyPendulumEasy-v0"],
)
def test_popgym_ids_pass_check_env(env_id):
    env = gym.make(env_id)
    assert isinstance(env.observation_space, spaces.Box) and env.observation_space.dtype == np.float32
    check_env(env, warn=False)
    # Same seed, same episode (SB3 and dream-rl's runs rely on it).
    first, _ = env.reset(seed=3)
    actions = [env.action_space.sample() for _ in range(5)]
    trace = [env.step(a)[:2] for a in actions]
    again, _ = env.reset(seed=3)
    np.testing.assert_array_equal(first, again)
    for (obs, reward), action in zip(trace, actions):
        obs2, reward2 = env.step(action)[:2]
        np.testing.assert_array_equal(obs, obs2)
        assert reward == reward2


def test_popgym_tuple_observation_is_one_hot():
    raw = gym.make("popgym-AutoencodeEasy-v0")
    assert isinstance(raw.observation_space, spaces.Tuple)  # what SB3 cannot take
    env = gym.make("popgym/AutoencodeEasy-v0")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (6,)  # Discrete(2) + Discrete(4), one-hot each
    assert obs[:2].sum() == 1 and obs[2:].sum() == 1


def test_every_popgym_env_is_registered_and_kwargs_pass_through():
    from dream_rl.envs.popgym import popgym_ids

    ours = [i for i in gym.registry if i.startswith("popgym/")]
    assert len(ours) == len(popgym_ids()) >= 40
    env = gym.make("popgym/RepeatPreviousEasy-v0", k=2)
    assert env.unwrapped.k == 2


def test_popgym_env_in_a_config_trains(tmp_path):
    import json

    import yaml

    from dream_rl.cli import main

    config = {
        "name": "popgym",
        "env": {"id": "popgym/RepeatPreviousEasy-v0", "n_envs": 2},
        "algo": {"n_steps": 16, "batch_size": 32, "n_epochs": 1},
        "policies": {"dream": {"policy": "MlpDreamPolicy", "policy_kwargs": {"lstm_hidden_size": 8}}},
        "train": {"total_timesteps": 64, "eval_every": 32, "eval_episodes": 1},
        "output_dir": str(tmp_path),
    }
    path = tmp_path / "popgym.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--no-progress"]) == 0
    (info,) = (tmp_path / "popgym").rglob("run_info.json")
    assert json.loads(info.read_text())["status"] == "completed"
    assert (info.parent / "final_model.zip").exists()
