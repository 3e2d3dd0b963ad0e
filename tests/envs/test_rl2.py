"""RL² trials (dream_rl.envs.wrappers.RL2Trial, ``dream_rl/RL2-v0``): k episodes as one trial that
shares the memory, an inner-episode-start flag in the observation, and a policy that learns to use
memory across the episodes of a trial."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

import dream_rl  # noqa: F401  (registers the envs)
from dream_rl.envs.bandit import BanditEnv
from dream_rl.envs.meta_bandit import MetaBanditEnv
from dream_rl.envs.wrappers import FLAG_KEY, RL2Trial
from dream_rl.experiments.config import validate_config


def test_rl2_bandit_reproduces_meta_bandit_observation_for_observation():
    """Five plain bandit episodes in one RL² trial are MetaBandit's trial: same observations
    (previous action, previous reward, boundary flag), rewards and end, for the same arm and actions
    (but for the terminal observation, which no policy acts on)."""
    rng = np.random.default_rng(0)
    for trial in range(20):
        wrapped = gym.make("dream_rl/RL2-v0")
        meta = MetaBanditEnv()
        obs, _ = wrapped.reset(seed=trial)
        meta_obs, _ = meta.reset(seed=trial)
        meta.good_arm = wrapped.unwrapped.good_arm
        assert wrapped.observation_space == meta.observation_space
        np.testing.assert_array_equal(obs, meta_obs)
        arms_seen = {wrapped.unwrapped.good_arm}
        done = False
        while not done:
            action = int(rng.integers(5))
            obs, reward, terminated, truncated, info = wrapped.step(action)
            meta_obs, meta_reward, meta_terminated, meta_truncated, meta_info = meta.step(action)
            if not meta_terminated:  # MetaBandit draws a fresh-start picture after the last pull too;
                np.testing.assert_array_equal(obs, meta_obs)  # the trial's terminal observation is the inner one
            assert (reward, terminated, truncated) == (meta_reward, meta_terminated, meta_truncated)
            assert info["inner_episode"] == meta_info["inner_episode"]
            arms_seen.add(wrapped.unwrapped.good_arm)
            done = terminated or truncated
        assert len(arms_seen) == 1, "every inner episode of a trial must keep the task"
        assert wrapped.get_wrapper_attr("trial_steps") == 25


def test_trials_draw_new_tasks_and_seeds_repeat_them():
    env = RL2Trial(BanditEnv(n_arms=8), episodes_per_trial=2)
    arms = []
    for trial in range(30):
        env.reset(seed=0 if trial == 0 else None)
        arms.append(env.unwrapped.good_arm)
    assert len(set(arms)) > 4
    env.reset(seed=0)
    assert env.unwrapped.good_arm == arms[0]


class _Countdown(gym.Env):
    """Ends (terminated or truncated) after ``length`` steps; observation space given."""

    def __init__(self, observation_space: spaces.Space, length: int = 3, truncate: bool = False) -> None:
        self.observation_space, self.action_space = observation_space, spaces.Discrete(2)
        self.length, self.truncate, self.t = length, truncate, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        end = self.t >= self.length
        return self.observation_space.sample(), 1.0, end and not self.truncate, end and self.truncate, {}


def run_trial(env: gym.Env) -> tuple[list, list]:
    obs, _ = env.reset(seed=0)
    observations, ends = [obs], []
    while not ends or not (ends[-1][0] or ends[-1][1]):
        obs, _, terminated, truncated, _ = env.step(0)
        observations.append(obs)
        ends.append((terminated, truncated))
    return observations, ends


def test_trial_ends_after_k_inner_episodes_with_the_flag_at_each_inner_start():
    env = RL2Trial(_Countdown(spaces.Box(-1, 1, (2,), np.float32)), episodes_per_trial=4)
    assert env.observation_space == spaces.Box(np.array([-1, -1, 0], np.float32), np.array([1, 1, 1], np.float32))
    observations, ends = run_trial(env)
    assert len(ends) == 12 and ends[-1] == (True, False) and not any(t or u for t, u in ends[:-1])
    flags = [obs[-1] for obs in observations]
    assert flags == [1.0, 0, 0, 1.0, 0, 0, 1.0, 0, 0, 1.0, 0, 0, 0]
    assert all(env.observation_space.contains(obs) for obs in observations)


def test_inner_truncation_ends_the_trial_or_continues_it():
    truncating = _Countdown(spaces.Box(-1, 1, (2,), np.float32), truncate=True)
    _, ends = run_trial(RL2Trial(truncating, episodes_per_trial=4))
    assert ends == [(False, False), (False, False), (False, True)]
    _, ends = run_trial(RL2Trial(truncating, episodes_per_trial=4, inner_truncation="next_episode"))
    assert len(ends) == 12 and ends[-1] == (True, False)


@pytest.mark.parametrize(
    "inner_space, expected_keys",
    [
        (spaces.Dict({"a": spaces.Box(0, 1, (3,), np.float32)}), {"a", FLAG_KEY}),
        (spaces.Box(0, 1, (2, 4, 4), np.float32), {"observation", FLAG_KEY}),  # images stay intact
        (spaces.Discrete(5), {"observation", FLAG_KEY}),
        (spaces.Box(0, 9, (3,), np.int64), {"observation", FLAG_KEY}),  # a flag would not fit an int box
    ],
)
def test_other_observation_spaces_get_the_flag_in_a_dict(inner_space, expected_keys):
    env = RL2Trial(_Countdown(inner_space), episodes_per_trial=2)
    assert isinstance(env.observation_space, spaces.Dict) and set(env.observation_space.spaces) == expected_keys
    observations, _ = run_trial(env)
    assert [float(obs[FLAG_KEY][0]) for obs in observations] == [1, 0, 0, 1, 0, 0, 0]
    assert all(env.observation_space.contains(obs) for obs in observations)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="episodes_per_trial"):
        RL2Trial(BanditEnv(), episodes_per_trial=0)
    with pytest.raises(ValueError, match="inner_truncation"):
        RL2Trial(BanditEnv(), inner_truncation="never")
    with pytest.raises(ValueError, match="registered gymnasium id"):
        gym.make("dream_rl/RL2-v0", env="NoSuchEnv-v9")
    with pytest.raises(ValueError, match="already has a key"):
        RL2Trial(_Countdown(spaces.Dict({FLAG_KEY: spaces.Discrete(2)})))


def test_any_registered_env_in_a_config():
    """An experiment config reaches the wrapper through env kwargs: no config schema change."""
    config = validate_config(
        {
            "name": "rl2-tmaze",
            "env": {
                "id": "dream_rl/RL2-v0",
                "n_envs": 2,
                "kwargs": {"env": "dream_rl/TMaze-v0", "episodes_per_trial": 3, "env_kwargs": {"corridor_length": 2}},
            },
            "policies": {"gru": {"policy": "MlpTorsoPolicy", "policy_kwargs": {"torso": "gru", "lstm_hidden_size": 8}}},
            "train": {"total_timesteps": 64, "seeds": [0]},
        }
    )
    env = gym.make(config.env.id, **config.env.kwargs)
    inner = gym.make("dream_rl/TMaze-v0", corridor_length=2)
    assert env.observation_space.shape == (inner.observation_space.shape[0] + 1,)
    obs, _ = env.reset(seed=1)
    first_cue = obs[:-1].copy()
    inner_starts = [obs.copy()]
    done, steps = False, 0
    while not done:
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        done, steps = terminated or truncated, steps + 1
        if obs[-1] == 1.0:
            inner_starts.append(obs.copy())
    assert len(inner_starts) == 3  # three T-maze episodes, each starting with the same cue
    for start in inner_starts:
        np.testing.assert_array_equal(start[:-1], first_cue)


def test_policy_with_memory_across_inner_episodes_beats_any_per_episode_memory():
    """Trials of 4 bandit episodes of 2 pulls on 3 arms. The optimal search over the trial returns 7;
    a policy whose memory restarts with every inner episode can return at most 4 (per episode: the
    arm is found at pull 1, 2 or 3 with probability 1/3 each, returning 2, 1 or 0); random play 8/3.
    Memory carried across the inner episodes by the torso is the only way past 4."""
    torch.set_num_threads(1)
    kwargs = dict(env_kwargs=dict(n_arms=3, episode_length=2), episodes_per_trial=4)
    env = make_vec_env("dream_rl/RL2-v0", n_envs=8, env_kwargs=kwargs, seed=0)
    model = RecurrentPPO(
        "MlpTorsoPolicy", env, policy_kwargs=dict(torso="lstm", lstm_hidden_size=32), seed=0,
        n_steps=32, batch_size=64, n_epochs=4, learning_rate=1e-3, gamma=0.9, ent_coef=0.01,
    )  # fmt: skip
    model.learn(24576)  # seed 0 passes 5.0 by ~12k steps; 2x margin
    mean_return, _ = evaluate_policy(model, env, n_eval_episodes=200)
    assert mean_return >= 5.0


def test_dict_trials_train_with_a_multi_input_torso_policy():
    """A Dict-observation env in RL² trials trains with MultiInputTorsoPolicy (the flag is one more key)."""
    space = spaces.Dict({"position": spaces.Box(-1, 1, (2,), np.float32), "goal": spaces.Discrete(3)})
    env = RL2Trial(_Countdown(space, length=4), episodes_per_trial=3)
    model = RecurrentPPO(
        "MultiInputTorsoPolicy", env, n_steps=16, batch_size=16, n_epochs=1, seed=0,
        policy_kwargs=dict(torso="slstm", lstm_hidden_size=8, torso_kwargs=dict(num_heads=2)),
    )  # fmt: skip
    model.learn(32)
    action, state = model.predict(env.reset(seed=0)[0], episode_start=np.array([True]))
    assert env.action_space.contains(int(action)) and state[0].shape[-1] * 2 >= 4 * 8
