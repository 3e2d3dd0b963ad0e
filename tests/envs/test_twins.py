"""The fully observable twins (``dream_rl/<Name>FullObs-v0``): one per suite env, registered, passing the
checkers, and showing what a memory would supply: a policy that reads only the current observation
takes the reference policy's action at every step (the reference reads the hidden state), while on the
partially observable task that information is absent from the observation.

The generic checks (determinism, documented random and optimal returns, the end-of-episode guard) run
over every registered id, twins included, in tests/envs/test_envs.py."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from dream_rl.envs import SUITE, TWINS, get_env_info, load_scripted_policy, normalized_score, register_envs, twin_id
from dream_rl.errors import EnvError

register_envs()

TWIN_IDS = [info.id for info in TWINS]


def test_every_suite_env_has_one_registered_twin_named_by_the_suffix() -> None:
    assert [info.twin_of for info in TWINS] == [info.id for info in SUITE]
    for info in SUITE:
        twin = twin_id(info.id)
        assert twin == info.id.replace("-v0", "FullObs-v0") and twin in gym.registry
        assert get_env_info(twin).twin_of == info.id and info.twin_of is None
        assert gym.spec(twin).kwargs == {**info.kwargs, "fully_observable": True}
    assert twin_id("dream_rl/TMazeLong-v0") == "dream_rl/TMazeLongFullObs-v0"


def test_twin_id_refuses_a_twin_and_an_unknown_id() -> None:
    with pytest.raises(KeyError, match="already the fully observable twin"):
        twin_id("dream_rl/TMazeFullObs-v0")
    with pytest.raises(KeyError, match="CartPole-v1"):
        twin_id("CartPole-v1")


@pytest.mark.parametrize("env_id", TWIN_IDS)
def test_twin_passes_the_checkers(env_id: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # unbounded velocities, Pendulum's action range
        gymnasium_check_env(gym.make(env_id).unwrapped, skip_render_check=True)
        gymnasium_check_env(gym.make(env_id), skip_render_check=True)
        sb3_check_env(gym.make(env_id))


@pytest.mark.parametrize("info", TWINS, ids=TWIN_IDS)
def test_twin_keeps_its_task_reference_returns(info) -> None:
    task = get_env_info(info.twin_of)
    assert (info.random_return, info.optimal_return, info.max_episode_steps) == (
        task.random_return, task.optimal_return, task.max_episode_steps)
    for value in (task.random_return, (task.random_return + task.optimal_return) / 2, task.optimal_return):
        assert normalized_score(info.id, value) == normalized_score(task.id, value)


# ------------------------------------------------------------------ the observation holds the hidden state


def _control_state_observation(env: gym.Env) -> np.ndarray:
    """The full observation gymnasium's own task would show, computed from the hidden state."""
    inner = env.unwrapped
    name = type(inner).__name__
    if name == "PendulumEnv":
        theta, theta_dot = inner.state
        return np.array([math.cos(theta), math.sin(theta), theta_dot], dtype=np.float32)
    if name == "AcrobotEnv":
        return inner._get_ob().astype(np.float32)
    return np.asarray(inner.state, dtype=np.float32)  # CartPole, MountainCar


CONTROL = ["CartPoleNoVel", "PendulumNoVel", "MountainCarNoVel", "AcrobotNoVel", "CartPoleNoisy"]


@pytest.mark.parametrize("name", CONTROL)
def test_control_twin_shows_the_full_noise_free_state(name: str) -> None:
    twin, task = gym.make(f"dream_rl/{name}FullObs-v0"), gym.make(f"dream_rl/{name}-v0")
    assert twin.observation_space.shape[0] > task.observation_space.shape[0] or name == "CartPoleNoisy"
    obs, _ = twin.reset(seed=3)
    twin.action_space.seed(3)
    for _ in range(50):
        np.testing.assert_allclose(obs, _control_state_observation(twin), rtol=1e-6, atol=1e-6)
        obs, _, terminated, truncated, _ = twin.step(twin.action_space.sample())
        if terminated or truncated:
            obs, _ = twin.reset()


def _memoryless_action(env_id: str, obs: np.ndarray, env: gym.Env) -> int:
    """The optimal action of each memory task's twin, read from the current observation only."""
    inner = env.unwrapped
    name = env_id.split("/")[-1].removesuffix("FullObs-v0")
    if name in ("TMaze", "TMazeLong"):
        return 0 if obs[0] > 0 else 1
    if name == "RepeatFirst":
        return int(np.argmax(obs[inner.n_symbols + 1:]))
    if name == "RepeatPrevious":
        target = obs[inner.n_symbols:]
        return int(np.argmax(target)) if target.any() else 0
    if name == "CountRecall":
        return int(np.argmax(obs[inner.n_symbols:]))
    if name == "SwitchingBandit":
        return int(np.argmax(obs[inner.n_arms + 1:]))
    if name == "SwitchingCartPole":
        x, x_dot, theta, theta_dot, _, polarity, _ = obs
        return int((theta + 0.5 * theta_dot + 0.05 * x + 0.1 * x_dot > 0) == (polarity > 0))
    if name in ("MetaBandit", "RL2"):
        n = inner.n_arms
        failed, paying = obs[-2 * n:-n], obs[-n:]
        return int(np.argmax(paying)) if paying.any() else int(np.argmin(failed))  # first arm not yet tried
    raise AssertionError(f"no memoryless policy for {env_id}")


MEMORY_TWINS = [t for t in TWIN_IDS if not any(t.startswith(f"dream_rl/{name}") for name in CONTROL)]


@pytest.mark.parametrize("env_id", MEMORY_TWINS)
def test_memoryless_policy_on_the_twin_takes_the_reference_action_at_every_step(env_id: str) -> None:
    env = gym.make(env_id)
    reference = load_scripted_policy(env_id)
    steps = 0
    for seed in range(8):
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            action = _memoryless_action(env_id, obs, env)
            if env_id.startswith("dream_rl/RepeatPrevious") and env.unwrapped.t < env.unwrapped.k:
                action = reference(env)  # nothing to repeat yet: every action is ignored
            assert action == reference(env), (env_id, seed, steps)
            obs, _, terminated, truncated, _ = env.step(action)
            done, steps = terminated or truncated, steps + 1
            if env_id.startswith("dream_rl/SwitchingCartPole") and steps > 300:
                break
    assert steps > 40


def test_tmaze_twin_keeps_the_cue_where_the_task_hides_it() -> None:
    for fully_observable, expected in ((True, {1.0, -1.0}), (False, {0.0})):
        env = gym.make("dream_rl/TMaze-v0", corridor_length=30, fully_observable=fully_observable)
        for seed in range(6):
            first, _ = env.reset(seed=seed)
            seen = set()
            for _ in range(30):  # the corridor and the junction
                obs, *_ = env.step(0)
                seen.add(float(obs[0]))
                if fully_observable:
                    assert obs[0] == first[0] == env.unwrapped.cue
            assert seen <= expected


def test_repeat_previous_twin_shows_the_symbol_of_k_steps_ago() -> None:
    env = gym.make("dream_rl/RepeatPreviousFullObs-v0", k=3, length=12)
    obs, _ = env.reset(seed=5)
    shown = [int(np.argmax(obs[:4]))]
    for t in range(1, 12):
        assert not obs[4:].any() if t - 1 < 3 else int(np.argmax(obs[4:])) == shown[t - 1 - 3]
        obs, *_ = env.step(0)
        shown.append(int(np.argmax(obs[:4])))


def test_meta_bandit_twin_carries_knowledge_across_the_boundary_and_reaches_the_optimum() -> None:
    env = gym.make("dream_rl/MetaBanditFullObs-v0")
    returns = []
    for seed in range(200):
        obs, _ = env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            action = _memoryless_action("dream_rl/MetaBanditFullObs-v0", obs, env)
            obs, reward, done, _, info = env.step(action)
            total += reward
            if info["inner_episode"] > 0 and not done:
                assert obs[-5:].sum() == 1.0  # the paying arm, found in the first inner episode, stays known
        returns.append(total)
    assert np.mean(returns) == pytest.approx(get_env_info("dream_rl/MetaBandit-v0").optimal_return, abs=0.6)


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [
        ("dream_rl/TMaze-v0", {"fully_observable": 1}),
        ("dream_rl/CartPoleNoVel-v0", {"fully_observable": "yes"}),
        ("dream_rl/CartPoleNoisy-v0", {"fully_observable": None}),
        ("dream_rl/MetaBandit-v0", {"fully_observable": 0}),
        ("dream_rl/SwitchingCartPole-v0", {"fully_observable": 1.0}),
    ],
)
def test_fully_observable_must_be_a_bool(env_id: str, kwargs: dict) -> None:
    with pytest.raises(EnvError, match=r"^fully_observable must be True or False, got") as caught:
        gym.make(env_id, **kwargs)
    assert "\n" not in str(caught.value)


def test_rl2_twin_only_for_the_default_bandit_trial() -> None:
    with pytest.raises(EnvError, match="TMazeFullObs"):
        gym.make("dream_rl/RL2-v0", env="dream_rl/TMaze-v0", fully_observable=True)
    with pytest.raises(EnvError, match="same_task=True"):
        gym.make("dream_rl/RL2FullObs-v0", same_task=False)
    # another env's twin inside an RL² trial is its own twin's id
    env = gym.make("dream_rl/RL2-v0", env="dream_rl/TMazeFullObs-v0", env_kwargs={"corridor_length": 3})
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        assert obs[0] == env.unwrapped.cue
        obs, *_ = env.step(0)


def test_twins_take_their_task_arguments() -> None:
    env = gym.make("dream_rl/TMazeFullObs-v0", corridor_length=50)
    env.reset(seed=1)
    steps, done = 0, False
    while not done:
        obs, _, done, _, _ = env.step(0)
        steps += 1
    assert steps == 51 and obs[0] == env.unwrapped.cue
    assert gym.make("dream_rl/CountRecallFullObs-v0", length=10).observation_space.shape == (4 + 10,)
