"""Bad options and actions for the suite's envs give one EnvError line naming the valid values (issue 21)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import dream_rl  # noqa: F401  (registers the envs)
from dream_rl import DreamRLError, EnvError
from dream_rl.envs.repeat_previous import RepeatPreviousEnv
from dream_rl.envs.tmaze import TMazeEnv

DISCRETE_MASKED = {
    "dream_rl/CartPoleNoVel-v0": 1,
    "dream_rl/CartPoleNoisy-v0": 1,
    "dream_rl/MountainCarNoVel-v0": 2,
    "dream_rl/AcrobotNoVel-v0": 2,
}


def test_repeat_previous_length_message_names_k_and_length():
    with pytest.raises(EnvError) as caught:
        RepeatPreviousEnv(k=100)
    message = str(caught.value)
    assert "k = 100" in message and "length" in message and "got 16" in message and ">= 101" in message
    assert RepeatPreviousEnv(k=100, length=101).length == 101


@pytest.mark.parametrize("env_id, high", sorted(DISCRETE_MASKED.items()))
@pytest.mark.parametrize("action", [-1, 3, 7, 1.5, np.array([1]), "1", None])
def test_masked_control_out_of_range_action_names_the_valid_range(env_id, high, action):
    env = gym.make(env_id)
    env.reset(seed=0)
    with pytest.raises(EnvError, match=rf"^action must be an integer in \[0, {high}\], got "):
        env.step(action)


@pytest.mark.parametrize("env_id, high", sorted(DISCRETE_MASKED.items()))
def test_masked_control_valid_actions_still_step(env_id, high):
    env = gym.make(env_id)
    env.reset(seed=0)
    for action in (0, np.int64(high), np.int32(0)):
        observation, reward, terminated, truncated, _ = env.step(action)
        assert np.isfinite(observation).all() and np.isfinite(reward)


@pytest.mark.parametrize(
    "action", [np.array([np.nan], dtype=np.float32), np.zeros(2, dtype=np.float32), 1.0, "x", np.array([np.inf])]
)
def test_pendulum_action_of_the_wrong_shape_or_not_finite_is_refused(action):
    env = gym.make("dream_rl/PendulumNoVel-v0")
    env.reset(seed=0)
    with pytest.raises(EnvError, match=r"^action must be an array of shape \(1,\) with finite entries \(bounds \[-2\.0\] "
                                       r"to \[2\.0\]\), got "):
        env.step(action)


def test_pendulum_torque_beyond_the_bounds_is_clipped_as_gymnasium_does():
    env = gym.make("dream_rl/PendulumNoVel-v0")
    env.reset(seed=0)
    observation, reward, *_ = env.step(np.array([9.0], dtype=np.float32))
    assert np.isfinite(observation).all() and np.isfinite(reward)


def test_env_errors_are_dream_rl_errors_and_value_errors():
    assert issubclass(EnvError, DreamRLError) and issubclass(EnvError, ValueError)
    with pytest.raises(EnvError, match="action must be 0 or 1, got 2"):
        env = TMazeEnv()
        env.reset(seed=0)
        env.step(2)
    with pytest.raises(EnvError, match="n_symbols must be an integer >= 2, got 1"):
        RepeatPreviousEnv(n_symbols=1)
