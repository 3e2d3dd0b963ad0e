"""The batched classic-control VecEnvs return what DummyVecEnv of the registered envs returns, step
by step, with the same seeds."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

import dream_rl  # noqa: F401  (registers the suite ids)
from dream_rl.envs.masked_control import scripted_action
from dream_rl.envs.vector import BATCHED_ENVS, BatchedVecEnv, make_batched_vec_env
from dream_rl.errors import EnvError


def _actions(env_id: str, reference: DummyVecEnv, rng: np.random.Generator, scripted: bool) -> np.ndarray:
    n = reference.num_envs
    if scripted:  # a good controller (it reads the hidden state), so episodes also end by success
        return np.stack([np.asarray(scripted_action(env)) for env in reference.envs])
    space = reference.action_space
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(0, space.n, size=n)
    return np.clip(rng.uniform(-3, 3, size=(n, 1)).astype(np.float32), space.low, space.high)


def _assert_same_step(ref_step, new_step, t: int) -> None:
    for name, a, b in zip(("observations", "rewards", "dones"), ref_step[:3], new_step[:3]):
        assert a.dtype == b.dtype and a.shape == b.shape, (name, t)
        np.testing.assert_array_equal(a, b, err_msg=f"{name} differ at step {t}")
    for ref_info, info in zip(ref_step[3], new_step[3]):
        assert set(ref_info) == set(info), t
        assert ref_info["TimeLimit.truncated"] == info["TimeLimit.truncated"]
        if "terminal_observation" in ref_info:
            np.testing.assert_array_equal(ref_info["terminal_observation"], info["terminal_observation"])


@pytest.mark.parametrize("env_id", sorted(BATCHED_ENVS))
@pytest.mark.parametrize("scripted", [False, True])
def test_batched_env_equals_dummy_vec_env_step_by_step(env_id, scripted):
    if scripted and env_id == "CartPole-v1":
        pytest.skip("the same dynamics as dream_rl/CartPoleNoVel-v0")
    n, steps = 4, 1200
    reference = DummyVecEnv([lambda: gym.make(env_id)] * n)
    reference.seed(7)
    batched = make_batched_vec_env(env_id, n, seed=7, monitor=False)
    assert batched.observation_space == reference.observation_space
    assert batched.action_space == reference.action_space
    np.testing.assert_array_equal(batched.reset(), reference.reset())
    rng = np.random.default_rng(0)
    ends = truncations = 0
    for t in range(steps):
        actions = _actions(env_id, reference, rng, scripted)
        ref_step = reference.step(actions)
        new_step = batched.step(actions)
        _assert_same_step(ref_step, new_step, t)
        ends += int(ref_step[2].sum())
        truncations += sum(info["TimeLimit.truncated"] for info in ref_step[3])
    assert ends > 0  # auto-resets were compared
    if env_id.startswith("dream_rl/Pendulum"):
        assert truncations == ends  # Pendulum only ends by its time limit


def test_terminal_and_truncated_on_the_same_step():
    """A CartPole that falls on the last step of its time limit is terminated, not truncated."""
    batched = make_batched_vec_env("dream_rl/CartPoleNoVel-v0", 1, seed=0, monitor=False)
    assert isinstance(batched, BatchedVecEnv)
    batched.reset()
    batched.max_episode_steps = 3
    batched.state[0] = [0.0, 0.0, 0.2094, 5.0]  # falls at once
    batched.elapsed[0] = 2
    _, _, dones, infos = batched.step(np.array([1]))
    assert dones[0] and infos[0]["TimeLimit.truncated"] is False and "terminal_observation" in infos[0]


def test_monitor_reports_episodes():
    env = make_batched_vec_env("dream_rl/CartPoleNoVel-v0", 3, seed=0)
    assert isinstance(env, VecMonitor)
    env.reset()
    episodes = []
    for _ in range(200):
        _, _, dones, infos = env.step(np.zeros(3, dtype=np.int64))
        episodes += [info["episode"] for info, done in zip(infos, dones) if done]
    assert episodes and all(e["r"] == e["l"] for e in episodes)  # reward 1 per step


def test_unsupported_id_and_options_are_one_line_errors():
    with pytest.raises(EnvError, match="no batched VecEnv for 'dream_rl/TMaze-v0'"):
        make_batched_vec_env("dream_rl/TMaze-v0", 2)
    with pytest.raises(EnvError, match="takes no options"):
        make_batched_vec_env("dream_rl/CartPoleNoVel-v0", 2, noise_std=0.1)
    with pytest.raises(EnvError, match="has no per-env objects"):
        make_batched_vec_env("dream_rl/CartPoleNoVel-v0", 2, monitor=False).env_method("render")


def test_noisy_cartpole_takes_its_noise_option():
    env = make_batched_vec_env("dream_rl/CartPoleNoisy-v0", 2, seed=1, monitor=False, noise_std=0.2)
    reference = DummyVecEnv([lambda: gym.make("dream_rl/CartPoleNoisy-v0", noise_std=0.2)] * 2)
    reference.seed(1)
    np.testing.assert_array_equal(env.reset(), reference.reset())
