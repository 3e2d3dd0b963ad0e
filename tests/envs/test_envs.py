"""Tests of the POMDP benchmark suite (dream_rl.envs): API checkers, determinism, documented returns."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from dream_rl.envs import (
    FAMILIES,
    SUITE,
    TWINS,
    estimate_random_return,
    format_env_table,
    get_env_info,
    list_envs,
    load_scripted_policy,
    normalized_score,
    register_envs,
)

register_envs()  # dream_rl's package import does this too; calling again must be harmless

# Parametrize over the registry, not the catalogue, so that any id registered under dream_rl/ is
# covered (and test_every_registered_id_is_catalogued fails if it lacks metadata).
REGISTERED_IDS = sorted(env_id for env_id in gym.registry if env_id.startswith("dream_rl/"))

# The catalogue's reference returns were measured over this many episodes (see scores.py).
REFERENCE_EPISODES = 1000


def run_episode(env: gym.Env, policy, seed: int | None) -> tuple[float, int]:
    """Return and length of one episode of ``policy(env) -> action``."""
    env.reset(seed=seed)
    total, steps, done = 0.0, 0, False
    while not done:
        _, reward, terminated, truncated, _ = env.step(policy(env))
        total += float(reward)
        steps += 1
        done = terminated or truncated
    return total, steps


def episodes_for(env_id: str) -> int:
    """Keep each env's share of the run to about 20k steps: 30 to 400 episodes."""
    return int(np.clip(20_000 // get_env_info(env_id).max_episode_steps, 30, 400))


def tolerance(std: float, n: int) -> float:
    """Four standard errors of the difference between an n-episode mean and the reference mean.

    Both means have standard error ~ std / sqrt(episodes); four of them makes a false alarm a
    1-in-16,000 event per env (and since the seeds are fixed, the outcome never flickers). The
    1e-9 absorbs float summation error where the return is deterministic (std = 0).
    """
    return 4.0 * std * math.sqrt(1.0 / n + 1.0 / REFERENCE_EPISODES) + 1e-9


# ------------------------------------------------------------------------------------ registry


def test_suite_covers_every_family_with_at_least_eight_ids() -> None:
    assert len(REGISTERED_IDS) >= 8
    assert {info.family for info in SUITE} == set(FAMILIES)
    assert all(env_id.endswith("-v0") for env_id in REGISTERED_IDS)


def test_every_registered_id_is_catalogued_and_vice_versa() -> None:
    assert set(REGISTERED_IDS) == {info.id for info in (*SUITE, *TWINS)}  # each env and its fully observable twin


def test_register_envs_twice_is_harmless() -> None:
    before = dict(gym.registry)
    register_envs()
    register_envs()
    assert dict(gym.registry) == before


def test_listing_has_one_line_per_env() -> None:
    lines = format_env_table().splitlines()
    assert len(lines) == 1 + len(SUITE)  # header + envs
    for info, line in zip(SUITE, lines[1:]):
        assert line.startswith(info.id) and info.family in line and info.description in line
    assert [info.id for info in list_envs("t-maze")] == ["dream_rl/TMaze-v0", "dream_rl/TMazeLong-v0"]
    with pytest.raises(ValueError, match="family"):
        list_envs("no-such-family")


# ------------------------------------------------------------------------------------ checkers


@pytest.mark.parametrize("env_id", REGISTERED_IDS)
def test_env_checkers(env_id: str) -> None:
    with warnings.catch_warnings():
        # Advice, not failures: unbounded Box velocities, Pendulum's [-2, 2] action range, and
        # "this env is wrapped" when checking the made env (which is the point of that call).
        warnings.simplefilter("ignore", UserWarning)
        # Render checks are skipped: the suite is numeric, and the classic-control envs under the
        # NoVel wrappers would need pygame just to draw.
        gymnasium_check_env(gym.make(env_id).unwrapped, skip_render_check=True)
        # The unwrapped env of a NoVel task is plain gymnasium; the mask lives in a wrapper, so
        # check the made env too.
        gymnasium_check_env(gym.make(env_id), skip_render_check=True)
        sb3_check_env(gym.make(env_id))


@pytest.mark.parametrize("env_id", REGISTERED_IDS)
def test_env_builds_the_way_stable_baselines3_builds_it(env_id: str) -> None:
    # RecurrentPPO("MlpLstmPolicy", "dream_rl/...") calls gym.make(id, render_mode="rgb_array").
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    if env.unwrapped.__module__.startswith("dream_rl."):  # the NoVel tasks would need pygame to draw
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            gymnasium_check_env(env.unwrapped)  # now including the render checks
        image = env.render()
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


# ------------------------------------------------------------------------------------ determinism


def rollout(env_id: str, seed: int, actions: list, sample_actions_with: int | None = None) -> list:
    """Observations, rewards and end flags of one seeded episode driven by a fixed action list."""
    env = gym.make(env_id)
    if sample_actions_with is not None:
        env.action_space.seed(sample_actions_with)
    obs, _ = env.reset(seed=seed)
    trace = [obs.copy()]
    for action in actions:
        if sample_actions_with is not None:
            env.action_space.sample()  # drawing from the action space must not perturb the env
        obs, reward, terminated, truncated, _ = env.step(action)
        trace += [obs.copy(), reward, terminated, truncated]
        if terminated or truncated:
            break
    return trace


def same(trace_a: list, trace_b: list) -> bool:
    return len(trace_a) == len(trace_b) and all(np.array_equal(a, b) for a, b in zip(trace_a, trace_b))


@pytest.mark.parametrize("env_id", REGISTERED_IDS)
def test_seed_determinism(env_id: str) -> None:
    space = gym.make(env_id).action_space
    space.seed(7)
    actions = [space.sample() for _ in range(120)]
    reference = rollout(env_id, seed=3, actions=actions)
    assert same(reference, rollout(env_id, seed=3, actions=actions))
    assert same(reference, rollout(env_id, seed=3, actions=actions, sample_actions_with=99))
    # Every env is stochastic at reset; some (the T-maze's one-bit cue) can agree on a pair of
    # seeds by chance, so ask that some of ten seeds differ.
    assert not all(same(reference, rollout(env_id, seed=s, actions=actions)) for s in range(4, 14))


@pytest.mark.parametrize("env_id", REGISTERED_IDS)
def test_seeded_reset_restarts_the_same_episode(env_id: str) -> None:
    env = gym.make(env_id)
    policy = load_scripted_policy(env_id)
    first = run_episode(env, policy, seed=11)
    run_episode(env, policy, seed=None)  # consume some randomness in between
    assert run_episode(env, policy, seed=11) == first


# ------------------------------------------------------------------------------------ returns


@pytest.mark.parametrize("env_id", REGISTERED_IDS)
def test_scripted_policy_reaches_documented_optimum(env_id: str) -> None:
    info = get_env_info(env_id)
    env = gym.make(env_id)
    policy = load_scripted_policy(env_id)
    n = min(episodes_for(env_id), 100)
    returns = [run_episode(env, policy, seed=1000 + i)[0] for i in range(n)]
    if info.optimal_exact and float(np.std(returns)) == 0.0:
        # Deterministic optimum (T-maze, diagnostics, CartPole variants): every episode hits it.
        assert returns == pytest.approx([info.optimal_return] * n)
    else:
        # Stochastic rewards (bandits) or a scripted reference averaged over episodes.
        assert np.mean(returns) == pytest.approx(info.optimal_return, abs=tolerance(np.std(returns), n))


@pytest.mark.parametrize("env_id", REGISTERED_IDS)
def test_random_policy_scores_near_documented_return(env_id: str) -> None:
    info = get_env_info(env_id)
    env = gym.make(env_id)
    # A seed other than the one the reference was measured with: this is an independent check.
    env.action_space.seed(12345)
    env.reset(seed=12345)
    returns, steps = [], 0
    # A step budget rather than an episode count: random CartPole episodes last ~22 steps,
    # Acrobot's 500, and both should get a fair sample in similar time.
    while steps < 20_000 and len(returns) < 400:
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total, steps, done = total + float(reward), steps + 1, terminated or truncated
        returns.append(total)
        env.reset()
    n = len(returns)
    # Four standard errors, but at least 0.01 on the normalized-score scale: Acrobot's random
    # returns are -500 except for rare lucky swing-ups, so a short sample can have zero spread
    # while the reference (over 1000 episodes) caught a few; 0.01 of a score is what matters here.
    floor = 0.01 * (info.optimal_return - info.random_return)
    allowed = max(tolerance(np.std(returns), n), floor)
    assert np.mean(returns) == pytest.approx(info.random_return, abs=allowed)


def test_estimate_random_return_is_reproducible() -> None:
    first = estimate_random_return("dream_rl/SwitchingBandit-v0", n_episodes=20, seed=4)
    assert estimate_random_return("dream_rl/SwitchingBandit-v0", n_episodes=20, seed=4) == first
    # Non-default difficulty: the T-maze's random return is 0 for every corridor length.
    mean, std = estimate_random_return("dream_rl/TMaze-v0", n_episodes=400, seed=0, corridor_length=3)
    assert abs(mean) <= tolerance(std, 400)
    with pytest.raises(ValueError, match="n_episodes"):
        estimate_random_return("dream_rl/TMaze-v0", n_episodes=0)


# ------------------------------------------------------------------------------------ arguments


@pytest.mark.parametrize(
    ("env_id", "kwargs", "argument"),
    [
        ("dream_rl/TMaze-v0", {"corridor_length": -3}, "corridor_length"),
        ("dream_rl/TMaze-v0", {"corridor_length": 0}, "corridor_length"),
        ("dream_rl/TMaze-v0", {"corridor_length": 2.5}, "corridor_length"),
        ("dream_rl/TMaze-v0", {"render_mode": "ansi"}, "render_mode"),
        ("dream_rl/RepeatFirst-v0", {"n_symbols": 1}, "n_symbols"),
        ("dream_rl/RepeatFirst-v0", {"length": 1}, "length"),
        ("dream_rl/RepeatPrevious-v0", {"k": 0}, "k"),
        ("dream_rl/RepeatPrevious-v0", {"k": 8, "length": 8}, "length"),
        ("dream_rl/CountRecall-v0", {"n_symbols": 0}, "n_symbols"),
        ("dream_rl/CountRecall-v0", {"n_symbols": 1}, "n_symbols"),
        ("dream_rl/SwitchingBandit-v0", {"n_arms": 0}, "n_arms"),
        ("dream_rl/SwitchingBandit-v0", {"n_arms": 1}, "n_arms"),
        ("dream_rl/SwitchingBandit-v0", {"switch_prob": 1.5}, "switch_prob"),
        ("dream_rl/SwitchingBandit-v0", {"p_best": 0.5, "p_other": 0.7}, "p_other"),
        ("dream_rl/SwitchingCartPole-v0", {"pole_lengths": []}, "pole_lengths"),
        ("dream_rl/SwitchingCartPole-v0", {"pole_lengths": [0.5], "reversals": False}, "pole_lengths"),
        ("dream_rl/SwitchingCartPole-v0", {"pole_lengths": [0.5, -1.0]}, "pole_lengths"),
        ("dream_rl/SwitchingCartPole-v0", {"switch_prob": -0.1}, "switch_prob"),
        ("dream_rl/MetaBandit-v0", {"n_arms": 0}, "n_arms"),
        ("dream_rl/MetaBandit-v0", {"episode_length": 0}, "episode_length"),
        ("dream_rl/MetaBandit-v0", {"n_episodes": 1}, "n_episodes"),
        ("dream_rl/CartPoleNoisy-v0", {"noise_std": -1.0}, "noise_std"),
        ("dream_rl/CartPoleNoisy-v0", {"noise_std": float("nan")}, "noise_std"),
    ],
)
def test_bad_constructor_arguments_raise_value_error(env_id: str, kwargs: dict, argument: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # gymnasium warns about unknown render modes
        with pytest.raises(ValueError, match=rf"\b{argument}\b.*got") as caught:
            gym.make(env_id, **kwargs)
    assert repr(kwargs[argument]) in str(caught.value)  # the message shows what was passed


# ------------------------------------------------------------------------------------ after the end


def _run_to_termination(env: gym.Env, env_id: str) -> np.ndarray:
    """Step (random actions; scripted ones where random play never terminates) until terminated=True;
    returns the last observation."""
    policy = load_scripted_policy(env_id) if env_id.startswith(("dream_rl/MountainCar", "dream_rl/Acrobot")) else None
    env.action_space.seed(0)
    env.reset(seed=0)
    for _ in range(100):
        while True:
            observation, _, terminated, truncated, _ = env.step(policy(env) if policy else env.action_space.sample())
            if terminated:
                return observation
            if truncated:
                env.reset()
                break
    raise AssertionError(f"{env_id} never terminated")


TERMINATING_IDS = [i for i in REGISTERED_IDS if not i.startswith("dream_rl/PendulumNoVel")]  # Pendulum only truncates


@pytest.mark.parametrize("env_id", TERMINATING_IDS)
def test_step_after_termination_warns_once_and_pays_nothing(env_id: str) -> None:
    """gymnasium's classic-control convention: after terminated=True a step warns and pays 0 (TMaze
    paid +1 again, RepeatFirst and SwitchingBandit paid again, MountainCar charged -1, Acrobot
    un-terminated). Here the step also changes nothing until reset()."""
    env = gym.make(env_id)
    last = np.copy(_run_to_termination(env, env_id))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        steps = [env.step(env.action_space.sample()) for _ in range(4)]
    after_end = [w for w in caught if "after this episode terminated" in str(w.message)]
    assert len(after_end) == 1, [str(w.message) for w in caught]
    for observation, reward, terminated, truncated, _ in steps:
        assert reward == 0.0 and terminated and not truncated
        assert np.array_equal(observation, last)
    env.reset(seed=1)  # a new episode plays (and warns) normally again
    _run_to_termination(env, env_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env.step(env.action_space.sample())
    assert any("after this episode terminated" in str(w.message) for w in caught)


def test_tmaze_pays_the_turn_once() -> None:
    env = gym.make("dream_rl/TMaze-v0", corridor_length=2)
    env.reset(seed=0)
    total = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(10):  # 3 steps end the episode; 7 more after the end
            total += env.step(load_scripted_policy("dream_rl/TMaze-v0")(env))[1]
    assert total == 1.0


def test_step_after_the_end_still_checks_the_action() -> None:
    env = gym.make("dream_rl/TMaze-v0", corridor_length=1).unwrapped
    env.reset(seed=0)
    env.step(0)
    env.step(0)
    with pytest.raises(ValueError, match="action"):
        env.step(5)


# ------------------------------------------------------------------------------------ scores


def test_normalized_score_maps_random_to_zero_and_optimal_to_one() -> None:
    for info in SUITE:
        assert normalized_score(info.id, info.random_return) == 0.0
        assert normalized_score(info.id, info.optimal_return) == 1.0
        middle = (info.random_return + info.optimal_return) / 2
        assert normalized_score(info.id, middle) == pytest.approx(0.5)
        span = info.optimal_return - info.random_return
        assert normalized_score(info.id, info.random_return - span) == 0.0  # clipped
        assert normalized_score(info.id, info.optimal_return + span) == 1.0  # clipped


def test_normalized_score_rejects_unknown_ids_and_nan() -> None:
    with pytest.raises(KeyError, match="CartPole-v1") as caught:
        normalized_score("CartPole-v1", 100.0)
    assert "dream_rl/TMaze-v0" in str(caught.value)  # lists the valid ids
    with pytest.raises(ValueError, match="episode_return"):
        normalized_score("dream_rl/TMaze-v0", float("nan"))


# ------------------------------------------------------------------------------------ env specifics


@pytest.mark.parametrize("corridor_length", [1, 7, 300])
def test_tmaze_cue_only_at_start_and_optimum_in_length_plus_one_steps(corridor_length: int) -> None:
    env = gym.make("dream_rl/TMaze-v0", corridor_length=corridor_length)
    policy = load_scripted_policy("dream_rl/TMaze-v0")
    for seed in range(4):
        obs, _ = env.reset(seed=seed)
        assert abs(obs[0]) == 1.0
        cue_seen = [obs[0] != 0]
        total, steps, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(env))
            cue_seen.append(obs[0] != 0)
            total, steps, done = total + reward, steps + 1, terminated or truncated
        assert (total, steps, terminated) == (1.0, corridor_length + 1, True)
        assert cue_seen[0] and not any(cue_seen[1:])


def test_meta_bandit_boundaries_look_like_fresh_starts() -> None:
    env = gym.make("dream_rl/MetaBandit-v0", n_arms=3, episode_length=4, n_episodes=3)
    start, _ = env.reset(seed=0)
    boundaries = []
    for t in range(1, 13):
        obs, _, terminated, _, info = env.step(t % 3)
        if t % 4 == 0:
            boundaries.append(obs)
            assert info["inner_episode"] == t // 4
        else:
            assert obs[-1] == 0.0
    assert terminated
    assert all(np.array_equal(obs, start) for obs in boundaries)
    # The closed-form optimum used in the catalogue.
    assert env.unwrapped.search_return(5, 25) == 23.0


def test_switching_cartpole_needs_memory_only_with_reversals() -> None:
    """A memoryless controller that assumes the normal motor polarity balances through pole-length
    changes but falls after motor reversals; the regime-aware oracle balances through both."""

    def memoryless(env: gym.Env) -> int:
        x, x_dot, theta, theta_dot = env.unwrapped.state
        return int(theta + 0.5 * theta_dot + 0.05 * x + 0.1 * x_dot > 0)

    lengths_only = gym.make("dream_rl/SwitchingCartPole-v0", reversals=False)
    reversing = gym.make("dream_rl/SwitchingCartPole-v0")
    assert all(run_episode(lengths_only, memoryless, seed=s)[0] == 500 for s in range(5))
    assert np.mean([run_episode(reversing, memoryless, seed=s)[0] for s in range(20)]) < 250


def test_noisy_cartpole_noise_has_the_requested_scale() -> None:
    noisy = gym.make("dream_rl/CartPoleNoisy-v0", noise_std=0.2)
    errors = []
    obs, _ = noisy.reset(seed=0)
    for _ in range(200):
        errors.append(obs - noisy.unwrapped.state)
        obs, _, terminated, truncated, _ = noisy.step(int(noisy.unwrapped.state[2] > 0))
        if terminated or truncated:
            obs, _ = noisy.reset()
    assert np.std(errors) == pytest.approx(0.2, rel=0.1)
    clean = gym.make("dream_rl/CartPoleNoisy-v0", noise_std=0.0)
    obs, _ = clean.reset(seed=0)
    assert np.array_equal(obs, np.asarray(clean.unwrapped.state, dtype=np.float32))


def test_masked_observations_are_the_documented_entries() -> None:
    full = gym.make("CartPole-v1")
    masked = gym.make("dream_rl/CartPoleNoVel-v0")
    full_obs, _ = full.reset(seed=5)
    masked_obs, _ = masked.reset(seed=5)
    assert np.array_equal(masked_obs, full_obs[[0, 2]])
    sizes = {"PendulumNoVel": 2, "MountainCarNoVel": 1, "AcrobotNoVel": 4, "CartPoleNoVel": 2}
    for name, size in sizes.items():
        assert gym.make(f"dream_rl/{name}-v0").observation_space.shape == (size,)
