"""Issue 9 (reliability), the policy part: non-finite observations and Dict spaces on Mlp policies."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.envs import SimpleMultiObsEnv
from stable_baselines3.common.utils import obs_as_tensor

from dream_rl import TORSOS, CnnDreamPolicy, DREAMError, MlpDreamPolicy, MlpGruPolicy, MultiInputDreamPolicy
from dream_rl.sb3.policies import MlpTorsoPolicy


class PoisonedEnv(gym.Env):
    """Box observations; from step ``bad_step`` on, NaN or inf in entry 1."""

    def __init__(self, bad_value: float, bad_step: int = 3) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.bad_value, self.bad_step, self.t = bad_value, bad_step, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.full(3, 0.5, np.float32)
        if self.t >= self.bad_step:
            obs[1] = self.bad_value
        return obs, 0.0, False, self.t >= 20, {}


def torso_model(torso: str, env) -> RecurrentPPO:
    return RecurrentPPO(MlpTorsoPolicy, env, n_steps=8, batch_size=8, n_epochs=1, seed=0,
                        policy_kwargs=dict(lstm_hidden_size=16, torso=torso))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("torso", sorted(TORSOS))
def test_non_finite_observation_names_the_env_in_rollouts(torso, bad):
    """Before: ValueError 'Expected parameter logits ... invalid values' from the distribution."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    envs = DummyVecEnv([lambda: PoisonedEnv(0.0), lambda: PoisonedEnv(0.0), lambda: PoisonedEnv(bad)])
    model = torso_model(torso, envs)
    with pytest.raises(DREAMError, match=r"non-finite observation \(NaN or inf\) reached the policy at env index 2"):
        model.learn(16)


@pytest.mark.parametrize("torso", sorted(TORSOS))
def test_non_finite_observation_in_predict_and_values(torso):
    model = torso_model(torso, PoisonedEnv(0.0))
    obs = np.zeros((4, 3), np.float32)
    obs[2, 0] = np.nan
    obs[3, 1] = -np.inf
    starts = np.ones(4, dtype=bool)
    with pytest.raises(DREAMError, match=r"env index 2 \(and 1 more\)"):
        model.predict(obs, episode_start=starts)
    policy = model.policy
    tensor = obs_as_tensor(obs, policy.device)
    with pytest.raises(DREAMError, match="env index 2"):
        policy.predict_values(tensor, _pair(policy, 4).vf, torch.ones(4))
    with pytest.raises(DREAMError, match="env index 2"):
        policy.evaluate_actions(tensor, torch.zeros(4), _pair(policy, 4), torch.ones(4))
    clean, _ = model.predict(np.zeros((4, 3), np.float32), episode_start=starts)  # finite is fine
    assert clean.shape == (4,)


def _pair(policy, batch):
    from sb3_contrib.common.recurrent.type_aliases import RNNStates

    def one(module):
        flat = module.torso.initial_state(batch)
        flat = torch.nn.functional.pad(flat, (0, flat.shape[1] % 2))
        h, c = flat.unsqueeze(0).chunk(2, dim=2)
        return h, c

    return RNNStates(one(policy.lstm_actor), one(policy.lstm_critic))


def test_non_finite_dict_observation_names_the_key():
    env = SimpleMultiObsEnv(random_start=False)
    model = RecurrentPPO(MultiInputDreamPolicy, env, n_steps=8, batch_size=8, n_epochs=1, seed=0,
                         policy_kwargs=dict(lstm_hidden_size=8, features_extractor_kwargs=dict(cnn_output_dim=8)))
    obs = {key: np.stack([space.sample()] * 2).astype(space.dtype) for key, space in env.observation_space.spaces.items()}
    obs["vec"][1, 0] = np.nan
    with pytest.raises(DREAMError, match=r"\(key 'vec'\) reached the policy at env index 1"):
        model.predict(obs, episode_start=np.ones(2, dtype=bool))


@pytest.mark.parametrize("policy, suggestion", [
    (MlpDreamPolicy, "MultiInputDreamPolicy"),
    (CnnDreamPolicy, "MultiInputDreamPolicy"),
    (MlpGruPolicy, "MultiInputGruPolicy"),
    (MlpTorsoPolicy, "MultiInputTorsoPolicy"),
])
def test_mlp_policy_on_a_dict_space_points_to_multi_input(policy, suggestion):
    """Before: AttributeError: 'dict' object has no attribute 'flatten' (at the first step)."""
    with pytest.raises(DREAMError, match=rf"{policy.__name__} cannot take a Dict observation space: use {suggestion}"):
        RecurrentPPO(policy, SimpleMultiObsEnv(random_start=False), n_steps=8, batch_size=8,
                     policy_kwargs=dict(lstm_hidden_size=8))
