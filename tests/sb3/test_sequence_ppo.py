"""SequencePPO: whole-rollout minibatches, the fast runner against the policy's own step-by-step
computation, a short learning run, and save/load with RecurrentPPO."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.buffers import RecurrentRolloutBuffer
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from dream_rl.errors import PolicyError
from dream_rl.sb3 import SequencePPO, SequenceRolloutBuffer
from dream_rl.sb3.buffers import envs_per_batch
from dream_rl.sb3.pieces import CUT_LIMIT, EpisodeLayout, run_as_pieces, run_torso
from dream_rl.sb3.runners import PolicyRunner, TorsoRunner
from dream_rl.torsos import TORSOS

# Short episodes (a random CartPole lasts ~22 steps), so every 32-step sequence has starts inside.
ENV = "dream_rl/CartPoleNoVel-v0"


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------ buffer


def _filled_buffer(n_steps: int, n_envs: int) -> SequenceRolloutBuffer:
    """A buffer whose observation at (t, e) is (t, e), with starts at random steps."""
    buffer = SequenceRolloutBuffer(n_steps, spaces.Box(-np.inf, np.inf, (2,)), spaces.Discrete(2), n_envs)
    zeros = torch.zeros(1, n_envs, 3)
    buffer.start(RNNStates((zeros, zeros), (zeros, zeros)))
    rng = np.random.default_rng(0)
    for t in range(n_steps):
        obs = np.stack([np.full(n_envs, t), np.arange(n_envs)], axis=1).astype(np.float32)
        buffer.add(obs, rng.integers(0, 2, n_envs), np.ones(n_envs, np.float32), rng.random(n_envs) < 0.2,
                   torch.zeros(n_envs), torch.zeros(n_envs))
    buffer.compute_returns_and_advantage(torch.zeros(n_envs), np.zeros(n_envs, dtype=bool))
    return buffer


@pytest.mark.parametrize(("n_envs", "batch_size", "sizes"), [
    (8, 256, [2, 2, 2, 2]),  # 8 envs x 128 steps, 4 minibatches of 2 envs
    (8, 300, [2, 2, 2, 2]),  # 300 steps round to 2 envs
    (5, 256, [2, 2, 1]),  # the last minibatch takes the remaining env
    (4, 10, [1, 1, 1, 1]),  # at least one env
    (3, None, [3]),  # None: all envs at once
])  # fmt: skip
def test_minibatches_cover_every_step_once_per_epoch(n_envs, batch_size, sizes):
    n_steps = 128
    buffer = _filled_buffer(n_steps, n_envs)
    for _ in range(3):  # epochs: each a new shuffle
        seen = np.zeros((n_steps, n_envs), dtype=int)
        got_sizes = []
        for batch in buffer.get(batch_size):
            T, B = batch.episode_starts.shape
            assert T == n_steps and batch.observations.shape == (T, B, 2)
            got_sizes.append(B)
            t, e = batch.observations[..., 0].long(), batch.observations[..., 1].long()
            assert torch.equal(e, batch.env_indices.expand(T, B))  # whole rollouts of the listed envs
            assert torch.equal(t, torch.arange(T).unsqueeze(1).expand(T, B))  # time-major, in order
            np.add.at(seen, (t.numpy(), e.numpy()), 1)
            assert torch.equal(batch.episode_starts, torch.from_numpy(buffer.episode_starts[:, batch.env_indices.numpy()]))
            assert batch.lstm_states.pi[0].shape == (1, B, 3)
        assert (seen == 1).all()
        assert got_sizes == sizes


def test_envs_per_batch_rounds_steps_to_whole_envs():
    assert envs_per_batch(256, 128, 8) == 2
    assert envs_per_batch(2048, 128, 64) == 16
    assert envs_per_batch(100, 128, 8) == 1
    assert envs_per_batch(10**6, 128, 8) == 8


def test_gae_matches_sb3_rollout_buffer():
    from stable_baselines3.common.buffers import RolloutBuffer

    n_steps, n_envs = 16, 3
    ours = SequenceRolloutBuffer(n_steps, spaces.Box(-1, 1, (2,)), spaces.Discrete(2), n_envs, gamma=0.9, gae_lambda=0.8)
    ours.start(RNNStates((torch.zeros(1, n_envs, 1),) * 2, (torch.zeros(1, n_envs, 1),) * 2))
    ref = RolloutBuffer(n_steps, spaces.Box(-1, 1, (2,)), spaces.Discrete(2), gamma=0.9, gae_lambda=0.8, n_envs=n_envs)
    rng = np.random.default_rng(1)
    for _ in range(n_steps):
        obs, action = rng.normal(size=(n_envs, 2)).astype(np.float32), rng.integers(0, 2, (n_envs, 1))
        reward, start = rng.normal(size=n_envs).astype(np.float32), rng.random(n_envs) < 0.3
        value, log_prob = torch.randn(n_envs), torch.randn(n_envs)
        ours.add(obs, action, reward, start, value, log_prob)
        ref.add(obs, action, reward, start, value.unsqueeze(1), log_prob)
    last, dones = torch.randn(n_envs), rng.random(n_envs) < 0.5
    ours.compute_returns_and_advantage(last, dones)
    ref.compute_returns_and_advantage(last.unsqueeze(1), dones)
    np.testing.assert_allclose(ours.advantages, ref.advantages, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.returns, ref.returns, rtol=1e-6, atol=1e-6)


def test_buffer_refuses_a_partial_rollout():
    buffer = SequenceRolloutBuffer(4, spaces.Box(-1, 1, (2,)), spaces.Discrete(2), 2)
    with pytest.raises(PolicyError, match="holds 0 of 4 steps"):
        next(buffer.get(4))


# ------------------------------------------------------------------------------------------ pieces


@pytest.mark.parametrize("torso_name", ["gru", "lstm", "dream", "mingru"])
@pytest.mark.parametrize("start_rate", [0.02, 0.3])
def test_run_torso_equals_the_torso_with_resets(torso_name, start_rate):
    """Outputs and gradients of the cheapest path equal the torso's own reset handling (float64)."""
    torch.manual_seed(0)
    torso = TORSOS[torso_name](3, 8, 1).double()
    T, B = 40, 5
    x = torch.randn(T, B, 3, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():  # a state the torso wrote (a DREAM state carries a layout tag)
        _, state = torso(torch.randn(4, B, 3, dtype=torch.float64), torso.initial_state(B, dtype=torch.float64))
    starts = torch.rand(T, B) < start_rate
    layout = EpisodeLayout.from_starts(starts)
    assert (layout.n_pieces > 0) == (layout.n_cuts > CUT_LIMIT)
    g = torch.randn(T, B, 8, dtype=torch.float64)
    ref, _ = torso(x, state, starts)
    (ref_grad,) = torch.autograd.grad((ref * g).sum(), x)
    out = run_torso(torso, x, state, layout)
    (grad,) = torch.autograd.grad((out * g).sum(), x)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(grad, ref_grad)


def test_pieces_cover_long_and_short_episodes():
    """One env without any start next to envs with a start at every step: the padded phases still
    give every step its own output."""
    torch.manual_seed(1)
    torso = TORSOS["gru"](2, 4, 1).double()
    T = 70
    starts = torch.zeros(T, 3, dtype=torch.bool)
    starts[:, 1] = True
    starts[::7, 2] = True
    x = torch.randn(T, 3, 2, dtype=torch.float64)
    state = torch.randn(3, torso.state_size, dtype=torch.float64)  # a GRU state is any vector
    layout = EpisodeLayout.from_starts(starts)
    assert layout.n_pieces == 1 + T + 10 and len(layout.phases) >= 1
    torch.testing.assert_close(run_as_pieces(torso, x, state, layout), torso(x, state, starts)[0])


# ------------------------------------------------------------------------------------------ policy


def _model(policy: str, algo=SequencePPO, n_envs: int = 4, **kwargs):
    env = make_vec_env(ENV, n_envs=n_envs, seed=0)
    policy_kwargs = dict(lstm_hidden_size=16, **kwargs.pop("policy_kwargs", {}))
    return algo(policy, env, n_steps=32, batch_size=64, n_epochs=2, seed=0, device="cpu",
                policy_kwargs=policy_kwargs, **kwargs)


def _step_by_step(policy, batch):
    """values and log-probs (T, B) recomputed one step at a time by the policy's own code path
    (RecurrentActorCriticPolicy._process_sequence at T = 1), the state carried and reset at starts."""
    T, B = batch.episode_starts.shape
    pi, vf = batch.lstm_states.pi, batch.lstm_states.vf
    values, log_probs = torch.zeros(T, B), torch.zeros(T, B)
    with torch.no_grad():
        for t in range(T):
            obs = batch.observations
            obs = {k: v[t] for k, v in obs.items()} if isinstance(obs, dict) else obs[t]
            start = batch.episode_starts[t].float()
            features = policy.extract_features(obs)
            latent_pi, pi = policy._process_sequence(features, pi, start, policy.lstm_actor)
            if policy.lstm_critic is not None:
                latent_vf, vf = policy._process_sequence(features, vf, start, policy.lstm_critic)
            elif policy.shared_lstm:
                latent_vf = latent_pi
            else:
                latent_vf = policy.critic(features)
            dist = policy._get_action_dist_from_latent(policy.mlp_extractor.forward_actor(latent_pi))
            log_probs[t] = dist.log_prob(batch.actions[t])
            values[t] = policy.value_net(policy.mlp_extractor.forward_critic(latent_vf)).flatten()
    return values, log_probs


@pytest.mark.parametrize(("policy", "kwargs"), [
    ("MlpGruPolicy", {}),
    ("MlpLstmTorsoPolicy", {}),
    ("MlpDreamPolicy", {"dream_kwargs": {"rank": 4}}),
    ("MlpTorsoPolicy", {"torso": "mingru"}),  # folds resets into its scan
    ("MlpTorsoPolicy", {"torso": "self_attention"}),
    ("MlpGruPolicy", {"shared_lstm": True, "enable_critic_lstm": False}),
    ("MlpGruPolicy", {"enable_critic_lstm": False}),
    ("MlpLstmPolicy", {}),  # sb3-contrib's own: the policy's methods
])  # fmt: skip
def test_whole_rollout_log_probs_and_values_equal_step_by_step(policy, kwargs):
    model = _model(policy, policy_kwargs=kwargs)
    assert isinstance(model.runner, PolicyRunner if policy == "MlpLstmPolicy" else TorsoRunner)
    if policy in ("MlpGruPolicy", "MlpLstmTorsoPolicy"):  # actor and critic step as one batched computation
        assert (model.runner.paired is not None) == (not kwargs)
    model.learn(64)  # one update, so the weights are not the initial ones
    _, callback = model._setup_learn(128, callback=None, reset_num_timesteps=False)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=model.n_steps)
    buffer = model.rollout_buffer
    assert buffer.episode_starts[1:].any(), "the rollout must have episode starts inside it"
    model.policy.set_training_mode(False)
    for batch in buffer.get(64):
        with torch.no_grad():
            values, log_prob, entropy = model.runner.evaluate(batch)
        ref_values, ref_log_prob = _step_by_step(model.policy, batch)
        torch.testing.assert_close(log_prob, ref_log_prob, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(values, ref_values, rtol=1e-5, atol=1e-5)
        # what the rollout computed with its single-step path
        torch.testing.assert_close(log_prob, batch.old_log_prob, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(values, batch.old_values, rtol=1e-5, atol=1e-5)
        assert entropy is not None and entropy.shape == values.shape


def test_fast_runner_trains_like_the_policys_own_methods():
    """The same LSTM, through the torso runner (MlpLstmTorsoPolicy) and through sb3-contrib's
    MlpLstmPolicy's own methods: the same samples, losses and weights after two updates."""
    a = _model("MlpLstmTorsoPolicy").learn(2 * 4 * 32)  # one after the other: torch's generator is global
    b = _model("MlpLstmPolicy").learn(2 * 4 * 32)
    assert np.array_equal(a.rollout_buffer.actions, b.rollout_buffer.actions)
    for name in ("train/value_loss", "train/policy_gradient_loss"):
        assert a.logger.name_to_value[name] == pytest.approx(b.logger.name_to_value[name], rel=1e-4, abs=1e-6)
    pa = dict(a.policy.named_parameters())
    for name, p in b.policy.named_parameters():
        ours = pa[name.replace("lstm_actor.", "lstm_actor.torso.rnn.").replace("lstm_critic.", "lstm_critic.torso.rnn.")]
        torch.testing.assert_close(ours, p, rtol=1e-4, atol=1e-5)


def test_rollout_equals_recurrent_ppos_rollout():
    """Same seed, same policy: SequencePPO's rollout (single-step torso path, sampling, time-limit
    bootstrap of the truncated envs in one call) stores what RecurrentPPO's stores. A 5-step time
    limit makes truncations frequent."""
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv

    buffers = []
    for algo in (RecurrentPPO, SequencePPO):
        env = DummyVecEnv([lambda: gym.make(ENV, max_episode_steps=5)] * 3)
        env.seed(0)
        model = algo("MlpGruPolicy", env, n_steps=12, batch_size=12, seed=0, policy_kwargs=dict(lstm_hidden_size=8))
        _, callback = model._setup_learn(36, callback=None)
        model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=12)
        buffers.append(model.rollout_buffer)
    ref, ours = buffers
    assert (ours.rewards != 1.0).any()  # bootstrapped rewards
    np.testing.assert_array_equal(ours.actions, ref.actions.reshape(12, 3))
    np.testing.assert_array_equal(ours.episode_starts, ref.episode_starts)
    np.testing.assert_allclose(ours.observations, ref.observations, rtol=0, atol=0)
    np.testing.assert_allclose(ours.rewards, ref.rewards, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.values, ref.values, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.log_probs, ref.log_probs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.advantages, ref.advantages, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------ learning


def test_sequence_ppo_learns_the_t_maze():
    """The T-maze of tests/sb3/test_learning.py (cue at step 0, decision 5 steps later), GRU, same
    settings and budget."""
    env = make_vec_env("dream_rl/TMaze-v0", n_envs=8, seed=0, env_kwargs=dict(corridor_length=5))
    model = SequencePPO("MlpGruPolicy", env, n_steps=32, batch_size=64, n_epochs=4, learning_rate=1e-3, gamma=0.9,
                        ent_coef=0.01, seed=0, policy_kwargs=dict(lstm_hidden_size=32))
    model.learn(6144)
    mean_return, _ = evaluate_policy(model, env, n_eval_episodes=200)
    assert mean_return >= 0.9


# ------------------------------------------------------------------------------------------ save/load


def test_save_load_round_trip(tmp_path):
    model = _model("MlpGruPolicy")
    model.learn(128)
    obs = model.env.reset()
    starts = np.ones(4, dtype=bool)
    actions, states = model.predict(obs, episode_start=starts, deterministic=True)
    model.save(tmp_path / "m")
    for algo in (SequencePPO, RecurrentPPO):  # either algorithm reads the file
        loaded = algo.load(tmp_path / "m", env=model.env, device="cpu")
        assert type(loaded) is algo
        again, again_states = loaded.predict(obs, episode_start=starts, deterministic=True)
        assert np.array_equal(actions, again)
        np.testing.assert_allclose(again_states[0], states[0])
        loaded.learn(128, reset_num_timesteps=False)  # and trains on
    seq = SequencePPO.load(tmp_path / "m", env=model.env)
    assert isinstance(seq.rollout_buffer, SequenceRolloutBuffer)
    for key, value in model.policy.state_dict().items():
        torch.testing.assert_close(seq.policy.state_dict()[key], value)


def test_recurrent_ppo_is_left_as_it_ships():
    model = _model("MlpGruPolicy", algo=RecurrentPPO)
    assert type(model.rollout_buffer) is RecurrentRolloutBuffer
    assert "MlpGruPolicy" in SequencePPO.policy_aliases and "MlpLstmPolicy" in SequencePPO.policy_aliases
    model.learn(128)


def test_sequence_ppo_rejects_a_feed_forward_policy():
    from stable_baselines3.common.policies import ActorCriticPolicy

    with pytest.raises(PolicyError, match="needs a recurrent policy"):
        SequencePPO(ActorCriticPolicy, make_vec_env(ENV, n_envs=2, seed=0))


# ------------------------------------------------------------------------------------------ clipping


def test_critic_parameters_are_those_only_the_value_loss_reaches():
    from dream_rl.sb3.ppo import critic_parameters

    policy = _model("MlpGruPolicy").policy
    critic = {id(p) for p in critic_parameters(policy)}
    names = {name for name, p in policy.named_parameters() if id(p) in critic}
    assert names and all(n.startswith(("lstm_critic.", "mlp_extractor.value_net.", "value_net.")) for n in names)
    assert {n for n, _ in policy.named_parameters()} - names == {
        n for n, _ in policy.named_parameters() if n.startswith(("lstm_actor.", "mlp_extractor.policy_net.", "action_net."))
    }


@pytest.mark.parametrize("grad_clip", ["separate", "joint"])
def test_gradient_clipping_groups(grad_clip):
    """'separate' bounds the actor's and the critic's gradient norms each by max_grad_norm (a large
    value-loss gradient no longer scales the actor's down); 'joint' is RecurrentPPO's single norm."""
    from dream_rl.sb3.ppo import critic_parameters

    model = _model("MlpGruPolicy", grad_clip=grad_clip, max_grad_norm=0.5)
    policy = model.policy
    for p in policy.parameters():
        p.grad = torch.ones_like(p)
    critic = {id(p) for p in critic_parameters(policy)}
    for group in model._clip_groups():
        torch.nn.utils.clip_grad_norm_(group, model.max_grad_norm)

    def norm(params):
        return torch.norm(torch.stack([p.grad.norm() for p in params])).item()

    actor_params = [p for p in policy.parameters() if id(p) not in critic]
    critic_params = [p for p in policy.parameters() if id(p) in critic]
    if grad_clip == "separate":
        assert norm(actor_params) == pytest.approx(0.5, rel=1e-4) and norm(critic_params) == pytest.approx(0.5, rel=1e-4)
    else:
        assert norm(list(policy.parameters())) == pytest.approx(0.5, rel=1e-4)


def test_unknown_grad_clip_is_a_one_line_error():
    with pytest.raises(PolicyError, match="grad_clip must be one of"):
        _model("MlpGruPolicy", grad_clip="both")


# ------------------------------------------------------------------------------------------ spaces


class _SpacesEnv(__import__("gymnasium").Env):
    """Random observations of a given space, a given action space, episodes of 5 steps (so that every
    training sequence has episode starts inside)."""

    def __init__(self, observation_space, action_space) -> None:
        self.observation_space, self.action_space, self.t = observation_space, action_space, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.observation_space.seed(seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        return self.observation_space.sample(), float(np.sum(action)), self.t >= 5, False, {}


@pytest.mark.parametrize(("observation_space", "action_space", "policy"), [
    (spaces.Discrete(4), spaces.Box(-1.0, 1.0, (2,)), "MlpGruPolicy"),
    (spaces.MultiBinary(3), spaces.MultiDiscrete([2, 3]), "MlpGruPolicy"),
    (spaces.Dict({"a": spaces.Box(-1.0, 1.0, (2,)), "b": spaces.Discrete(3)}), spaces.Discrete(2), "MultiInputGruPolicy"),
    (spaces.Box(-1.0, 1.0, (3,)), spaces.MultiBinary(2), "MlpDreamPolicy"),
])  # fmt: skip
def test_other_spaces_train_and_match_step_by_step(observation_space, action_space, policy):
    env = make_vec_env(lambda: _SpacesEnv(observation_space, action_space), n_envs=3, seed=0)
    kwargs = {"dream_kwargs": {"rank": 2}} if policy == "MlpDreamPolicy" else {}
    model = SequencePPO(policy, env, n_steps=16, batch_size=16, n_epochs=2, seed=0,
                        policy_kwargs=dict(lstm_hidden_size=8, **kwargs))
    model.learn(96)
    model.policy.set_training_mode(False)
    for batch in model.rollout_buffer.get(16):
        with torch.no_grad():
            values, log_prob, _ = model.runner.evaluate(batch)
        ref_values, ref_log_prob = _step_by_step(model.policy, batch)
        torch.testing.assert_close(log_prob, ref_log_prob, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(values, ref_values, rtol=1e-5, atol=1e-5)
