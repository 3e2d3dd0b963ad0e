"""Bad inputs to the torso policies give one PolicyError line (issue 21): sizes that are not positive
ints, a checkpoint of another torso, and a NaN or wrong-batch state given to ``predict``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.env_util import make_vec_env

import dream_rl  # noqa: F401  (registers the policy names)
from dream_rl import DREAMError, PolicyError

SMALL = dict(n_steps=16, batch_size=16, n_epochs=1)


def model(torso: str = "lstm", n_envs: int = 1, **policy_kwargs) -> RecurrentPPO:
    env = make_vec_env("CartPole-v1", n_envs=n_envs, seed=0)
    return RecurrentPPO(
        "MlpTorsoPolicy", env, seed=0, **SMALL, policy_kwargs={"lstm_hidden_size": 8, "torso": torso, **policy_kwargs}
    )


@pytest.mark.parametrize("argument", ["lstm_hidden_size", "n_lstm_layers"])
@pytest.mark.parametrize("value", [2.5, "8", 0, -3, True, None])
def test_sizes_must_be_positive_ints_not_truncated_or_converted(argument, value):
    with pytest.raises(PolicyError, match=rf"^{argument} must be a positive int, got {value!r}$"):
        model(**{argument: value})


def test_numpy_integer_sizes_are_accepted():
    policy = model(lstm_hidden_size=np.int64(8), n_lstm_layers=np.int32(1)).policy
    assert policy.lstm_hidden_size == 8 and policy.n_lstm_layers == 1


@pytest.mark.parametrize("name", ["torso_kwargs", "lstm_kwargs"])
def test_option_mappings_must_be_dicts(name):
    with pytest.raises(PolicyError, match=rf"{name} must be a dict of the torso's options, got list"):
        model(**{name: ["hidden"]})


# ---------------------------------------------------------------- checkpoints of another torso

MISMATCH = r"^this checkpoint's memory is the 'lstm' torso, this policy's torso is 'gru'; load it into a policy built with torso='lstm'"


@pytest.fixture(scope="module")
def lstm_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("checkpoint") / "lstm.zip"
    lstm = model("lstm")
    lstm.save(path)
    return path, lstm


def test_set_parameters_of_another_torso_names_both(lstm_checkpoint):
    path, _ = lstm_checkpoint
    with pytest.raises(PolicyError, match=MISMATCH):
        model("gru").set_parameters(str(path))


def test_load_state_dict_of_another_torso_names_both(lstm_checkpoint):
    _, lstm = lstm_checkpoint
    with pytest.raises(PolicyError, match=MISMATCH):
        model("gru").policy.load_state_dict(lstm.policy.state_dict())


def test_load_with_another_torso_in_custom_objects_names_both(lstm_checkpoint):
    path, _ = lstm_checkpoint
    with pytest.raises(PolicyError, match=r"memory is the 'lstm' torso, this policy's torso is 'shm'"):
        RecurrentPPO.load(path, custom_objects={"policy_kwargs": dict(lstm_hidden_size=8, torso="shm")})


def test_the_same_torso_still_loads_and_acts_the_same(lstm_checkpoint):
    path, lstm = lstm_checkpoint
    loaded = RecurrentPPO.load(path)
    obs = np.array([[0.01, -0.02, 0.03, 0.04]], dtype=np.float32)
    for deterministic in (True,):
        a1, s1 = lstm.predict(obs, deterministic=deterministic)
        a2, s2 = loaded.predict(obs, deterministic=deterministic)
        assert np.array_equal(a1, a2) and np.array_equal(s1[0], s2[0])
    assert bytes(loaded.policy.torso_tag.tolist()).decode() == "lstm"


def test_a_checkpoint_without_the_tag_loads_and_another_torsos_is_still_one_line(lstm_checkpoint):
    """Checkpoints written before the tag (dream-rl 0.1) have none: the same torso loads, another gives a
    PolicyError naming both, judged from the parameter names (and, for lstm, gru and elman, which share
    them, from the gate count in their shapes)."""
    _, lstm = lstm_checkpoint
    old = {key: value for key, value in lstm.policy.state_dict().items() if key != "torso_tag"}
    fresh = model("lstm")
    fresh.policy.load_state_dict(old)
    assert torch.equal(fresh.policy.lstm_actor.torso.rnn.weight_hh_l0, lstm.policy.lstm_actor.torso.rnn.weight_hh_l0)
    for other in ("gru", "shm", "elman"):
        with pytest.raises(PolicyError, match=rf"^this checkpoint's memory is 'lstm', this policy's torso is '{other}'"):
            model(other).policy.load_state_dict(old)


def test_other_sizes_of_the_same_torso_name_the_mismatched_parameter(lstm_checkpoint):
    path, _ = lstm_checkpoint
    wider = RecurrentPPO("MlpTorsoPolicy", "CartPole-v1", **SMALL, policy_kwargs=dict(lstm_hidden_size=16, torso="lstm"))
    with pytest.raises(PolicyError, match=r"^this checkpoint does not fit this 'lstm' policy: size mismatch for "):
        wider.set_parameters(str(path))


# ---------------------------------------------------------------- the state given to predict


@pytest.fixture(scope="module")
def two_envs():
    trained = model("lstm", n_envs=2)
    obs = np.zeros((2, 4), dtype=np.float32)
    _, state = trained.predict(obs)
    return trained, obs, state


def test_a_nan_state_in_predict_names_the_env(two_envs):
    trained, obs, (h, c) = two_envs
    h = h.copy()
    h[0, 1, 0] = np.nan
    with pytest.raises(PolicyError, match=r"^predict got a non-finite state \(NaN or inf\) at env index 1; pass the "
                                          r"state the last predict returned, or set episode_start=True there"):
        trained.predict(obs, (h, c))


def test_a_nan_state_where_an_episode_starts_is_dropped_by_the_reset(two_envs):
    trained, obs, (h, c) = two_envs
    h = h.copy()
    h[0, 1, 0] = np.nan
    actions, (new_h, new_c) = trained.predict(obs, (h, c), episode_start=np.array([False, True]))
    assert actions.shape == (2,)
    assert np.isfinite(new_h).all() and np.isfinite(new_c).all()


@pytest.mark.parametrize("rows", [1, 3])
def test_a_wrong_batch_state_names_expected_and_got_shapes(two_envs, rows):
    trained, obs, (h, c) = two_envs
    hidden = h.shape[2]
    state = (np.zeros((1, rows, hidden), np.float32), np.zeros((1, rows, hidden), np.float32))
    with pytest.raises(PolicyError, match=rf"^predict got a state of shapes \(1, {rows}, {hidden}\) and \(1, {rows}, "
                                          rf"{hidden}\) for 2 observation\(s\), expected two arrays of shape "
                                          rf"\(1, 2, {hidden}\)"):
        trained.predict(obs, state)


@pytest.mark.parametrize("state", [np.zeros((1, 2, 8)), (np.zeros((1, 2, 8)),), "h"])
def test_a_state_that_is_not_the_pair_h_c_is_refused(two_envs, state):
    trained, obs, _ = two_envs
    with pytest.raises(PolicyError, match=r"^predict expects state as the pair \(h, c\) of arrays"):
        trained.predict(obs, state)


def test_a_nan_observation_keeps_its_message(two_envs):
    trained, obs, _ = two_envs
    bad = obs.copy()
    bad[1, 2] = np.nan
    with pytest.raises(DREAMError, match=r"non-finite observation \(NaN or inf\) reached the policy at env index 1"):
        trained.predict(bad)
