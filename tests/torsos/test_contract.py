"""The torso contract, checked for every registered memory (``dream_rl.TORSOS``).

Adding a torso to the registry adds it here: zeros are the initial state, one sequence call equals
single steps, a reset gives a fresh run for that sample only, samples never interact, gradients reach
every parameter, and the torso trains inside RecurrentPPO and reloads in a fresh process.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from sb3_contrib import RecurrentPPO

from dream_rl import TORSOS, DREAMError, TorsoError

T, B, F, H = 9, 4, 5, 8
# Options that keep a torso small in these tests (defaults are sized for RL widths of 64+).
SMALL_KWARGS: dict[str, dict] = {
    "dream": {"rank": 4},
    "mamba": {"head_dim": 4, "d_state": 4, "chunk": 4},  # two heads, several chunks in a 9-step test
    "ffm": {"memory_size": 4, "context_size": 2},
    "mlstm": {"head_dim": 4, "chunk": 4},  # two heads, several chunks in a 9-step test
    "linear_attention": {"head_dim": 4, "chunk": 4},
    "shm": {"memory_size": 4, "num_thetas": 8},
    "slstm": {"num_heads": 2},
    "self_attention": {"window": 4, "attention_size": 8, "num_heads": 2},  # window < T: the window slides
    "leworld": {"num_words": 16, "word_size": 4, "max_range": 4, "controller_size": 8, "query_size": 4},
}
NAMES = sorted(TORSOS)


def make_torso(name: str, num_layers: int = 1, seed: int = 0):
    torch.manual_seed(seed)
    return TORSOS[name](F, H, num_layers, **SMALL_KWARGS.get(name, {})).double()


def warm_state(torso, batch: int = B, seed: int = 1) -> torch.Tensor:
    """A state the torso can reach: the state after a random sequence from the initial state."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(T, batch, F, dtype=torch.float64, generator=generator)
    with torch.no_grad():
        _, state = torso(x, torso.initial_state(batch, dtype=torch.float64))
    return state


def random_inputs(seed: int = 2, steps: int = T, batch: int = B) -> torch.Tensor:
    return torch.randn(steps, batch, F, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("num_layers", [1, 2])
def test_sizes_and_zero_initial_state(name, num_layers):
    torso = make_torso(name, num_layers)
    assert (torso.input_size, torso.output_size) == (F, H)
    state = torso.initial_state(B, dtype=torch.float64)
    assert state.shape == (B, torso.state_size) and not state.any()
    out, new_state = torso(random_inputs(), state)
    assert out.shape == (T, B, H) and new_state.shape == (B, torso.state_size)
    assert torch.isfinite(out).all() and torch.isfinite(new_state).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("num_layers", [1, 2])
def test_sequence_call_equals_single_steps(name, num_layers):
    torso = make_torso(name, num_layers)
    x, state = random_inputs(), warm_state(torso)
    starts = torch.zeros(T, B)
    starts[0, 1] = starts[4, 2] = starts[5, 2] = starts[7, 0] = 1
    with torch.no_grad():
        out, final = torso(x, state, starts)
        step_state, step_outs = state, []
        for t in range(T):
            step_out, step_state = torso(x[t : t + 1], step_state, starts[t : t + 1])
            step_outs.append(step_out)
    torch.testing.assert_close(out, torch.cat(step_outs), rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(final, step_state, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_episode_start_gives_a_fresh_run_for_that_sample_only(name):
    torso = make_torso(name)
    x, state = random_inputs(), warm_state(torso)
    starts = torch.zeros(T, B)
    starts[4, 2] = 1
    with torch.no_grad():
        out, final = torso(x, state, starts)
        no_reset, no_reset_final = torso(x, state)
        fresh, fresh_final = torso(x[4:, 2:3], torso.initial_state(1, dtype=torch.float64))
    torch.testing.assert_close(out[4:, 2:3], fresh, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(final[2:3], fresh_final, rtol=1e-9, atol=1e-10)
    others = [0, 1, 3]
    torch.testing.assert_close(out[:, others], no_reset[:, others], rtol=0, atol=0)
    torch.testing.assert_close(out[:4, 2], no_reset[:4, 2], rtol=0, atol=0)
    torch.testing.assert_close(final[others], no_reset_final[others], rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_reset_clears_non_finite_state(name):
    """A reset is a selection, not a multiplication: NaN/inf in a finished episode do not survive it."""
    torso = make_torso(name)
    state = warm_state(torso)
    state[1] = float("nan")
    state[2, 0] = float("inf")
    starts = torch.zeros(T, B)
    starts[0, 1] = starts[0, 2] = 1
    with torch.no_grad():
        out, final = torso(random_inputs(), state, starts)
        clean, clean_final = torso(random_inputs()[:, 1:3], torso.initial_state(2, dtype=torch.float64))
    torch.testing.assert_close(out[:, 1:3], clean, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(final[1:3], clean_final, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_samples_never_interact(name):
    torso = make_torso(name, num_layers=2)
    x, state = random_inputs(), warm_state(torso)
    changed_x, changed_state = x.clone(), state.clone()
    changed_x[:, 0] += 1.0
    changed_state[0] = warm_state(torso, seed=7)[0]
    with torch.no_grad():
        out, final = torso(x, state)
        changed_out, changed_final = torso(changed_x, changed_state)
    assert not torch.equal(out[:, 0], changed_out[:, 0])
    torch.testing.assert_close(out[:, 1:], changed_out[:, 1:], rtol=0, atol=0)
    torch.testing.assert_close(final[1:], changed_final[1:], rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter_input_and_state(name):
    torso = make_torso(name, num_layers=2)
    x = random_inputs().requires_grad_()
    state = warm_state(torso).requires_grad_()
    out, final = torso(x, state)
    (out.square().sum() + final.square().sum()).backward()
    for param_name, param in torso.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), param_name
        assert param.grad.abs().sum() > 0, f"{name}: no gradient reaches {param_name}"
    assert x.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()
    assert torch.isfinite(state.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_bad_shapes_name_the_expected_shape(name):
    torso = make_torso(name)
    with pytest.raises(TorsoError, match="features of shape"):
        torso(torch.zeros(T, B, F + 1, dtype=torch.float64), torso.initial_state(B, dtype=torch.float64))
    with pytest.raises(TorsoError, match="state of shape"):
        torso(random_inputs(), torch.zeros(B, torso.state_size + 1, dtype=torch.float64))
    with pytest.raises(TorsoError, match="episode_starts of shape"):
        torso(random_inputs(), torso.initial_state(B, dtype=torch.float64), torch.zeros(T, B + 1))


def test_registry_names_the_design_note_models():
    assert {"dream", "lstm", "gru"} <= set(TORSOS)
    for name, cls in TORSOS.items():
        module_doc = sys.modules[cls.__module__].__doc__ or ""
        assert "state size" in module_doc.lower(), f"{name}: the module docstring must document its state size"


def test_every_torso_trains_in_recurrent_ppo_and_reloads_in_a_fresh_process(tmp_path):
    """MlpTorsoPolicy with each torso: a short training, then the saved model predicts the same actions
    (and states) in a new interpreter."""
    env_id = "dream_rl/RepeatFirst-v0"
    for name in NAMES:
        model = RecurrentPPO(
            "MlpTorsoPolicy", env_id, n_steps=16, batch_size=16, n_epochs=1, seed=0,
            policy_kwargs=dict(torso=name, lstm_hidden_size=H, torso_kwargs=SMALL_KWARGS.get(name, {})),
        )
        before = [p.detach().clone() for p in model.policy.parameters()]
        model.learn(32)
        assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters())), name
        model.save(tmp_path / name)
        obs = np.stack([model.observation_space.sample() for _ in range(6)]).astype(np.float32)
        actions, state = [], None
        starts = np.array([True])
        for ob in obs:
            action, state = model.predict(ob[None], state=state, episode_start=starts, deterministic=True)
            actions.append(action)
            starts = np.array([False])
        np.save(tmp_path / f"{name}_obs.npy", obs)
        np.save(tmp_path / f"{name}_expected.npy", np.concatenate(actions))
    script = textwrap.dedent(f"""
        import numpy as np, dream_rl
        from pathlib import Path
        from sb3_contrib import RecurrentPPO
        root = Path({str(tmp_path)!r})
        for name in {NAMES!r}:
            model = RecurrentPPO.load(root / name)
            obs = np.load(root / f"{{name}}_obs.npy")
            actions, state, starts = [], None, np.array([True])
            for ob in obs:
                action, state = model.predict(ob[None], state=state, episode_start=starts, deterministic=True)
                actions.append(action)
                starts = np.array([False])
            assert np.array_equal(np.concatenate(actions), np.load(root / f"{{name}}_expected.npy")), name
        print("reloaded", len({NAMES!r}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"reloaded {len(NAMES)}" in result.stdout


def test_policy_strings_and_unknown_torso():
    model = RecurrentPPO("MlpDreamPolicy", "CartPole-v1", n_steps=16, batch_size=16, policy_kwargs=dict(lstm_hidden_size=8))
    assert type(model.policy).__name__ == "MlpDreamPolicy"
    with pytest.raises(DREAMError, match="did you mean 'gru'"):
        RecurrentPPO("MlpTorsoPolicy", "CartPole-v1", policy_kwargs=dict(torso="gruu"))
    with pytest.raises(DREAMError, match="fixes the torso"):
        RecurrentPPO("MlpGruPolicy", "CartPole-v1", policy_kwargs=dict(torso="lstm"))
