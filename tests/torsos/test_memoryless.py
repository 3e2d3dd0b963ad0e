"""The memoryless POPGym baselines, ``mlp`` and ``positional_mlp``: their equations, their state, and
that neither learns a task that needs memory (the T-maze's cue), where memories do."""

import math

import pytest
import torch
import torch.nn.functional as F
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from dream_rl import TORSOS
from dream_rl.errors import TorsoError
from dream_rl.torsos.positional_mlp import sinusoidal_encoding

T, B, I, H = 7, 3, 5, 8


def inputs(seed: int = 0, steps: int = T, batch: int = B) -> torch.Tensor:
    return torch.randn(steps, batch, I, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def block(x: torch.Tensor, core: torch.nn.Sequential) -> torch.Tensor:
    """POPGym's two-layer block, written out: LeakyReLU(W_2 LeakyReLU(W_1 x + b_1) + b_2)."""
    first, second = core[0], core[2]
    hidden = F.leaky_relu(x @ first.weight.T + first.bias, 0.01)
    return F.leaky_relu(hidden @ second.weight.T + second.bias, 0.01)


# --- mlp ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_layers", [1, 2])
def test_mlp_is_popgym_block_per_step(num_layers):
    torch.manual_seed(0)
    torso = TORSOS["mlp"](I, H, num_layers).double()
    x = inputs()
    out, state = torso(x, torso.initial_state(B, dtype=torch.float64))
    expected = x
    for core in torso.blocks:
        expected = block(expected, core)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    assert torso.state_size == 1 and not state.any()  # the placeholder stays zero


def test_mlp_output_ignores_the_past_and_the_state():
    torch.manual_seed(0)
    torso = TORSOS["mlp"](I, H).double()
    x = inputs()
    changed = x.clone()
    changed[:3] += 5.0  # other earlier inputs
    state = torso.initial_state(B, dtype=torch.float64)
    out, _ = torso(x, state)
    changed_out, _ = torso(changed, state)
    torch.testing.assert_close(out[3:], changed_out[3:], rtol=0, atol=0)
    assert not torch.equal(out[:3], changed_out[:3])


def test_mlp_rejects_unknown_options():
    with pytest.raises(TorsoError, match=r"mlp torso got unknown options \['k'\]; its options are \['dropout'\]"):
        TORSOS["mlp"](I, H, k=4)
    with pytest.raises(TorsoError, match=r"mlp torso: dropout must be in \[0, 1\), got 1.5"):
        TORSOS["mlp"](I, H, dropout=1.5)


# --- positional_mlp ----------------------------------------------------------------------------


def popgym_table(max_len: int, d_model: int) -> torch.Tensor:
    """POPGym's ``positional_encoding(max_len, d_model)`` (popgym/baselines/models/embeddings.py), restated."""
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    position = torch.arange(0, max_len, dtype=torch.float64).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(max_len) / d_model))
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe


def paper_encoding(p: float, j: int, size: int, max_len: float) -> float:
    """Entry j of the encoding of step p: sin for even j, cos for odd j, at frequency max_len^(-2·(j // 2)/size)."""
    angle = p * max_len ** (-2 * (j // 2) / size)
    return math.sin(angle) if j % 2 == 0 else math.cos(angle)


def test_encoding_equals_popgym_table():
    table = popgym_table(1024, 16)
    ours = sinusoidal_encoding(torch.arange(1024, dtype=torch.float64), 16, 1024)
    torch.testing.assert_close(ours, table, rtol=1e-12, atol=1e-12)
    # POPGym's table needs an even width; any width here, each entry by the formula
    odd = sinusoidal_encoding(torch.arange(50, dtype=torch.float64), 7, 1024)
    formula = torch.tensor([[paper_encoding(p, j, 7, 1024) for j in range(7)] for p in range(50)], dtype=torch.float64)
    torch.testing.assert_close(odd, formula, rtol=1e-12, atol=1e-12)


def test_positional_mlp_equations_with_episode_starts():
    """Step by step, from the paper's definition: p counts steps since the episode start; the output
    is the block over (1 - s)·LayerNorm(W_f x + b_f) + s·PE(p)."""
    torch.manual_seed(0)
    torso = TORSOS["positional_mlp"](I, H, max_len=64).double()
    with torch.no_grad():
        torso.strength_logit.fill_(0.3)
    x = inputs()
    starts = torch.zeros(T, B)
    starts[3, 0] = starts[0, 1] = starts[5, 1] = 1
    state = torch.tensor([[10.0], [4.0], [2.0]], dtype=torch.float64)  # counts carried in
    out, final = torso(x, state, starts)

    s = torch.sigmoid(torch.tensor(0.3, dtype=torch.float64))
    count = state[:, 0].clone()
    for t in range(T):
        count = torch.where(starts[t] != 0, torch.zeros_like(count), count)
        u = F.layer_norm(x[t] @ torso.feature_map.weight.T + torso.feature_map.bias, (H,))
        pe = torch.tensor([[paper_encoding(p, j, H, 64) for j in range(H)] for p in count.tolist()], dtype=x.dtype)
        torch.testing.assert_close(out[t], block((1 - s) * u + s * pe, torso.blocks[0]), rtol=1e-10, atol=1e-12)
        count = count + 1
    torch.testing.assert_close(final[:, 0], torch.tensor([4.0, 2.0, 9.0], dtype=torch.float64), rtol=0, atol=0)
    torch.testing.assert_close(final[:, 0], count, rtol=0, atol=0)


def test_positional_mlp_state_is_the_step_count():
    torso = TORSOS["positional_mlp"](I, H)
    _, state = torso(torch.randn(12, 2, I), torso.initial_state(2))
    assert state.tolist() == [[12.0], [12.0]]
    _, state = torso(torch.randn(1, 2, I), state, torch.tensor([[1.0, 0.0]]))
    assert state.tolist() == [[1.0], [13.0]]
    assert torso.state_size == 1


def test_positional_mlp_sees_the_step_index_but_not_past_inputs():
    torch.manual_seed(0)
    torso = TORSOS["positional_mlp"](I, H).double()
    x = inputs()
    changed = x.clone()
    changed[:3] += 5.0
    zeros = torso.initial_state(B, dtype=torch.float64)
    out, _ = torso(x, zeros)
    changed_out, _ = torso(changed, zeros)
    torch.testing.assert_close(out[3:], changed_out[3:], rtol=0, atol=0)  # no memory of inputs
    later, _ = torso(x, zeros + 5)  # the same inputs five steps later in the episode
    assert not torch.allclose(out, later)


def test_positional_mlp_rejects_bad_options():
    with pytest.raises(TorsoError, match="positional_mlp torso: max_len .* must be > 1, got 0"):
        TORSOS["positional_mlp"](I, H, max_len=0)
    with pytest.raises(TorsoError, match=r"positional_mlp torso got unknown options \['window'\]"):
        TORSOS["positional_mlp"](I, H, window=3)


# --- the control: no memory, no T-maze ---------------------------------------------------------

# tests/sb3/test_learning.py's T-maze (cue at step 0, decision 5 steps later), settings and budget, with
# which every memory there reaches >= 0.9. Neither torso can recall the cue at any budget (a
# deterministic policy that cannot tell the cues apart turns the same way for both); measured on seeds
# 0-2: mlp +0.07, +0.08, 0.00; positional_mlp +0.07, -0.08, 0.00 (2-5 s each on an idle 2-core machine).
TASK = dict(env_id="dream_rl/TMaze-v0", n_envs=8, env_kwargs=dict(corridor_length=5))
PPO_KWARGS = dict(n_steps=32, batch_size=64, n_epochs=4, learning_rate=1e-3, gamma=0.9, ent_coef=0.01, seed=0)
BUDGET = 6144
EPISODES = 200


@pytest.mark.parametrize("torso", ["mlp", "positional_mlp"])
def test_memoryless_torso_stays_at_chance_on_the_tmaze(torso):
    env = make_vec_env(**TASK, seed=0)
    model = RecurrentPPO("MlpTorsoPolicy", env, policy_kwargs=dict(torso=torso, lstm_hidden_size=32), **PPO_KWARGS)
    model.learn(BUDGET)
    mean_return, _ = evaluate_policy(model, env, n_eval_episodes=EPISODES)
    # expectation 0 for any policy that cannot recall the cue; standard error 1/sqrt(200) ~ 0.07
    assert abs(mean_return) < 0.3, f"{torso}: mean return {mean_return:.2f}"
