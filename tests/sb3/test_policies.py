"""The RecurrentPPO policies: state semantics, observation spaces, save/load, logging."""

import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv, SimpleMultiObsEnv
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.utils import obs_as_tensor

from dream_rl import (
    CnnDreamPolicy,
    DREAMError,
    DREAMState,
    DreamTorso,
    MlpDreamPolicy,
    MlpGruPolicy,
    MlpLstmTorsoPolicy,
    MultiInputDreamPolicy,
    MultiInputGruPolicy,
    TorsoInternalsCallback,
)

SMALL = dict(lstm_hidden_size=8)
DREAM_SMALL = dict(lstm_hidden_size=8, dream_kwargs=dict(rank=4))


def small_model(policy=MlpDreamPolicy, env="CartPole-v1", **kwargs):
    policy_kwargs = kwargs.pop("policy_kwargs", DREAM_SMALL if policy is MlpDreamPolicy else SMALL)
    return RecurrentPPO(policy, env, n_steps=16, batch_size=16, n_epochs=1, seed=0, policy_kwargs=policy_kwargs, **kwargs)


class ObservationSpaceEnv(gym.Env):
    """Random observations from a given space, two actions, eight steps: isolates the space."""

    def __init__(self, observation_space: gym.Space) -> None:
        self.observation_space = observation_space
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.observation_space.seed(seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        return self.observation_space.sample(), float(action), False, self.t >= 8, {}


OBSERVATION_SPACES = {
    "box": gym.spaces.Box(-1.0, 1.0, (3,)),
    "discrete": gym.spaces.Discrete(4),
    "multidiscrete": gym.spaces.MultiDiscrete([2, 3, 4]),
    "multibinary": gym.spaces.MultiBinary(3),
}


@pytest.mark.parametrize("policy", [MlpDreamPolicy, MlpGruPolicy])
@pytest.mark.parametrize("space", sorted(OBSERVATION_SPACES))
def test_vector_observation_spaces(policy, space):
    """Every flat observation space trains and predicts (the stock MlpLstmPolicy fails at
    construction on MultiDiscrete: nn.LSTM rejects the numpy-integer feature size)."""
    model = small_model(policy, ObservationSpaceEnv(OBSERVATION_SPACES[space])).learn(32)
    reward, _ = evaluate_policy(model, model.get_env(), n_eval_episodes=2, warn=False)
    assert np.isfinite(reward)


@pytest.mark.parametrize("policy", [MultiInputDreamPolicy, MultiInputGruPolicy])
def test_dict_observations(policy):
    env = SimpleMultiObsEnv(random_start=False)
    kwargs = dict(lstm_hidden_size=8, features_extractor_kwargs=dict(cnn_output_dim=8))
    model = small_model(policy, env, policy_kwargs=kwargs).learn(32)
    evaluate_policy(model, model.get_env(), n_eval_episodes=1, warn=False)


def test_image_observations():
    env = FakeImageEnv(screen_height=36, screen_width=36, n_channels=1)
    kwargs = dict(lstm_hidden_size=8, dream_kwargs=dict(rank=2), features_extractor_kwargs=dict(features_dim=16))
    model = small_model(CnnDreamPolicy, env, policy_kwargs=kwargs).learn(32)
    action, _ = model.predict(env.reset()[0])
    assert env.action_space.contains(action)


def test_zero_state_is_the_initial_state():
    model = small_model()
    policy = model.policy
    obs = np.array([[0.1, -0.2, 0.03, 0.4]], dtype=np.float32)
    # predict(state=None) allocates zeros of lstm_hidden_state_shape
    action_none, state_none = policy.predict(obs, state=None, deterministic=True)
    zeros = np.zeros(policy.lstm_hidden_state_shape, dtype=np.float32)
    action_zeros, state_zeros = policy.predict(obs, state=(zeros, zeros), deterministic=True)
    assert np.array_equal(action_none, action_zeros)
    assert np.array_equal(state_none[0], state_zeros[0]) and np.array_equal(state_none[1], state_zeros[1])
    # and zeros decode to the DREAM cell's own initial state
    torso = policy.lstm_actor.torso
    decoded = DREAMState.from_flat(torch.zeros(1, torso.state_size), torso.config)
    initial = torso.cells[0].init_state(1)
    for name in initial.shape():
        assert torch.equal(getattr(decoded, name), getattr(initial, name)), name


def test_episode_start_resets_only_that_env_and_envs_are_independent():
    model = small_model()
    policy = model.policy
    rng = np.random.default_rng(0)
    n_envs, steps = 3, 6
    observations = rng.normal(size=(steps, n_envs, 4)).astype(np.float32)

    def run(obs_seq, reset_env_at=None):
        state, outputs = None, []
        for t, obs in enumerate(obs_seq):
            starts = np.zeros(len(obs), dtype=bool)
            if reset_env_at is not None and t == reset_env_at[1]:
                starts[reset_env_at[0]] = True
            with torch.no_grad():
                dist, state = policy.get_distribution(
                    obs_as_tensor(obs, policy.device), _as_tensors(state, len(obs), policy),
                    torch.tensor(starts, dtype=torch.float32),
                )
            outputs.append(dist.distribution.probs.numpy())
        return np.stack(outputs)

    base = run(observations)
    reset = run(observations, reset_env_at=(1, 3))
    assert np.array_equal(base[:, [0, 2]], reset[:, [0, 2]])
    fresh = run(observations[3:, 1:2])
    np.testing.assert_allclose(reset[3:, 1], fresh[:, 0], rtol=1e-6, atol=1e-7)
    assert not np.allclose(reset[3:, 1], base[3:, 1])
    # independence: changing env 0's observations leaves envs 1 and 2 bit-identical
    perturbed = observations.copy()
    perturbed[:, 0] += 3.0
    assert np.array_equal(run(perturbed)[:, 1:], base[:, 1:])


def _as_tensors(state, n_envs, policy):
    if state is None:
        zeros = torch.zeros(1, n_envs, policy.lstm_actor.hidden_size)
        return zeros, zeros
    return state


@pytest.mark.parametrize("policy", [MlpDreamPolicy, MlpGruPolicy, MlpLstmTorsoPolicy])
@pytest.mark.parametrize("critic", ["separate", "shared", "none"])
def test_rollout_log_probs_equal_evaluate_actions(policy, critic):
    """Rollouts run in eval mode step by step; training replays whole sequences in train mode.
    Both must give the same log-probabilities and values, else PPO's ratio is off from the start."""
    critic_kwargs = {
        "separate": dict(enable_critic_lstm=True),
        "shared": dict(shared_lstm=True, enable_critic_lstm=False),
        "none": dict(enable_critic_lstm=False),
    }[critic]
    base = DREAM_SMALL if policy is MlpDreamPolicy else SMALL
    env = make_vec_env("CartPole-v1", n_envs=4, seed=1)
    model = RecurrentPPO(policy, env, n_steps=64, seed=1, policy_kwargs={**base, **critic_kwargs})
    _, callback = model._setup_learn(64 * 4, None)
    callback.on_training_start(locals(), globals())
    model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=model.n_steps)
    model.policy.set_training_mode(True)
    n_checked = 0
    for batch in model.rollout_buffer.get(batch_size=64):
        values, log_prob, _ = model.policy.evaluate_actions(
            batch.observations, batch.actions.long().flatten(), batch.lstm_states, batch.episode_starts
        )
        mask = batch.mask > 1e-8
        torch.testing.assert_close(log_prob[mask], batch.old_log_prob[mask], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(values.flatten()[mask], batch.old_values[mask], rtol=1e-5, atol=1e-5)
        n_checked += int(mask.sum())
    assert n_checked == 64 * 4


def test_save_load_in_a_fresh_process(tmp_path):
    model = small_model(MlpDreamPolicy, make_vec_env("CartPole-v1", n_envs=2, seed=0)).learn(32)
    model.save(tmp_path / "model.zip")
    model.policy.save(tmp_path / "policy.pt")
    rng = np.random.default_rng(3)
    observations = rng.normal(size=(5, 2, 4)).astype(np.float32)
    np.save(tmp_path / "obs.npy", observations)

    def rollout(predict):
        state, actions, states = None, [], []
        starts = np.array([True, True])
        for obs in observations:
            action, state = predict(obs, state=state, episode_start=starts, deterministic=True)
            starts = np.array([False, False])
            actions.append(action)
            states.append(np.concatenate(state))
        return np.stack(actions), np.stack(states)

    expected_actions, expected_states = rollout(model.predict)
    policy_actions, policy_states = rollout(MlpDreamPolicy.load(tmp_path / "policy.pt").predict)
    assert np.array_equal(policy_actions, expected_actions)
    assert np.array_equal(policy_states, expected_states)

    script = textwrap.dedent(
        f"""
        import numpy as np
        import dream_rl  # the only project import: enough to unpickle the policy class
        from sb3_contrib import RecurrentPPO
        observations = np.load({str(tmp_path / 'obs.npy')!r})
        for name, predict in [
            ("model", RecurrentPPO.load({str(tmp_path / 'model.zip')!r}).predict),
            ("policy", dream_rl.MlpDreamPolicy.load({str(tmp_path / 'policy.pt')!r}).predict),
        ]:
            state, actions, states = None, [], []
            starts = np.array([True, True])
            for obs in observations:
                action, state = predict(obs, state=state, episode_start=starts, deterministic=True)
                starts = np.array([False, False])
                actions.append(action)
                states.append(np.concatenate(state))
            np.save({str(tmp_path)!r} + f"/{{name}}_actions.npy", np.stack(actions))
            np.save({str(tmp_path)!r} + f"/{{name}}_states.npy", np.stack(states))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    for name in ("model", "policy"):
        assert np.array_equal(np.load(tmp_path / f"{name}_actions.npy"), expected_actions)
        assert np.array_equal(np.load(tmp_path / f"{name}_states.npy"), expected_states)


def test_constructor_parameters_round_trip():
    policy = small_model(policy_kwargs=dict(lstm_hidden_size=6, n_lstm_layers=2, dream_kwargs=dict(rank=3, ltc_enabled=False))).policy
    params = policy._get_constructor_parameters()
    assert params["lstm_hidden_size"] == 6 and params["n_lstm_layers"] == 2
    assert params["dream_kwargs"] == dict(time_step=1.0, ltc_tau_sys=2.0, kappa=1.0, rank=3, ltc_enabled=False)
    assert len(policy.lstm_actor.torso.cells) == 2
    assert policy.lstm_actor.torso.config.ltc_enabled is False


def test_rl_defaults_are_overridable():
    config = small_model().policy.lstm_actor.torso.config
    assert (config.time_step, config.ltc_tau_sys, config.kappa) == (1.0, 2.0, 1.0)
    policy = small_model(policy_kwargs=dict(lstm_hidden_size=8, dream_kwargs=dict(time_step=0.1))).policy
    assert policy.lstm_actor.torso.config.time_step == 0.1


def test_bad_dream_kwargs_fail_at_construction_with_a_clear_message():
    with pytest.raises(DREAMError, match="did you mean 'rank'"):
        small_model(policy_kwargs=dict(lstm_hidden_size=8, dream_kwargs=dict(rnak=2)))
    with pytest.raises(DREAMError, match="rank must be <= hidden_dim"):
        small_model(policy_kwargs=dict(lstm_hidden_size=8, dream_kwargs=dict(rank=9)))
    with pytest.raises(DREAMError, match="lstm_kwargs"):
        small_model(policy_kwargs=dict(lstm_hidden_size=8, lstm_kwargs=dict(bias=False)))


def test_internals_reach_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = small_model(tensorboard_log=str(tmp_path))
    model.learn(48, callback=TorsoInternalsCallback(), tb_log_name="run")
    (run_dir,) = tmp_path.iterdir()
    events = EventAccumulator(str(run_dir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"torso/surprise", "torso/tau_eff", "torso/fast_weight_norm"} <= tags
    surprise = [event.value for event in events.Scalars("torso/surprise")]
    assert len(surprise) == 3 and all(0.0 <= value <= 1.0 for value in surprise)
    assert model.policy.lstm_actor.torso.monitor is False


def test_internals_callback_is_a_no_op_for_gru():
    small_model(MlpGruPolicy).learn(16, callback=TorsoInternalsCallback())


def test_rl_defaults_keep_fast_weights_bounded_at_large_hidden_size():
    """dt = 1 with a wide hidden state makes the Hebbian write overshoot; kappa = 1 keeps ||U||
    at most target_norm (kappa = 0.5 diverges on the same input: the failure this default prevents)."""
    from dream_rl.sb3.policies import RL_DREAM_DEFAULTS

    torch.manual_seed(0)
    x = torch.randn(200, 4, 3) * 4.0  # (T, B, I), Pendulum-sized observations
    for kappa, bounded in ((RL_DREAM_DEFAULTS["kappa"], True), (0.5, False)):
        torso = DreamTorso(3, 256, **{**RL_DREAM_DEFAULTS, "kappa": kappa})
        with torch.no_grad():
            out, flat = torso(x, torso.initial_state(4))
        state = DREAMState.from_flat(flat, torso.config)
        norms = state.U.flatten(1).norm(dim=1)
        if bounded:
            assert torch.isfinite(out).all() and torch.isfinite(flat).all()
            assert bool((norms <= torso.config.target_norm * (1 + 1e-5)).all())
        else:
            assert not bool(torch.isfinite(norms).all() and (norms < 1e3).all())
