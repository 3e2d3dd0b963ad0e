"""The windowed POPGym baselines, ``framestack`` and ``tcn``: their equations against direct
implementations, a memory that reaches exactly ``k - 1`` steps back, and the T-maze solved when the
window covers the cue and at chance when it does not."""

import pytest
import torch
import torch.nn.functional as F
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from dream_rl import TORSOS
from dream_rl.errors import TorsoError

T, B, I, H = 9, 3, 5, 8
WINDOWED = ["framestack", "tcn"]


def inputs(seed: int = 0, steps: int = T, batch: int = B) -> torch.Tensor:
    return torch.randn(steps, batch, I, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def block(x: torch.Tensor, core: torch.nn.Sequential) -> torch.Tensor:
    first, second = core[0], core[2]
    return F.leaky_relu(F.leaky_relu(x @ first.weight.T + first.bias, 0.01) @ second.weight.T + second.bias, 0.01)


def episode_index(starts: torch.Tensor) -> torch.Tensor:
    """(T, B) → the number of episode starts at or before each step (which episode the step is in)."""
    return starts.long().cumsum(0)


@pytest.mark.parametrize("k", [1, 3, 4])
def test_framestack_equations_with_episode_starts(k):
    """Per step and sample: the last k inputs of the step's own episode (zeros before its start),
    each compressed, concatenated oldest first, through POPGym's block."""
    torch.manual_seed(0)
    torso = TORSOS["framestack"](I, H, k=k).double()
    x = inputs()
    starts = torch.zeros(T, B)
    starts[4, 0] = starts[2, 2] = starts[3, 2] = 1
    out, final = torso(x, torso.initial_state(B, dtype=torch.float64), starts)
    episode = episode_index(starts)
    W, b = torso.compress.weight, torso.compress.bias
    for t in range(T):
        for n in range(B):
            frames = [
                x[t - lag, n]
                if t - lag >= 0 and episode[t - lag, n] == episode[t, n]
                else torch.zeros(I, dtype=x.dtype)
                for lag in range(k - 1, -1, -1)
            ]
            z = torch.cat([W @ frame + b for frame in frames])
            torch.testing.assert_close(out[t, n], block(z, torso.blocks[0]), rtol=1e-10, atol=1e-12)
    # the state: the inputs of the last k - 1 steps of the current episode, oldest first
    for n in range(B):
        last = [
            x[T - 1 - lag, n] if episode[T - 1 - lag, n] == episode[T - 1, n] else torch.zeros(I, dtype=x.dtype)
            for lag in range(k - 2, -1, -1)
        ]
        expected = torch.cat(last) if last else torch.zeros(0, dtype=x.dtype)
        torch.testing.assert_close(final[n], expected, rtol=0, atol=0)


def test_framestack_equals_popgym_unfold():
    """POPGym's forward_memory (ray_framestack.py), restated: pad with the state, unfold k frames, compress."""
    k = 4
    torch.manual_seed(0)
    torso = TORSOS["framestack"](I, H, k=k).double()
    x, state = inputs(), inputs(seed=1, steps=k - 1).transpose(0, 1).reshape(B, -1)
    out, final = torso(x, state)
    z = x.transpose(0, 1)  # (B, T, F)
    time_padded = torch.cat([state.reshape(B, k - 1, I), z], dim=1)
    stacked = time_padded.unfold(1, k, 1).permute(0, 1, 3, 2).reshape(B * T, k, I)
    compressed = torso.compress(stacked.reshape(B, T, k, I)).reshape(B, T, H)
    popgym_out = torso.blocks[0](compressed)
    popgym_state = stacked.reshape(B, T, k, I)[:, -1, 1:]
    torch.testing.assert_close(out.transpose(0, 1), popgym_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(final, popgym_state.reshape(B, -1), rtol=0, atol=0)


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_tcn_equals_dilated_causal_conv1d(num_layers):
    """From the initial state: layer l is Conv1d(kernel k, dilation 2^l) over the zero-padded past, a
    LeakyReLU between layers (POPGym's TCN is the one-layer case)."""
    k = 3
    torch.manual_seed(0)
    torso = TORSOS["tcn"](I, H, num_layers, k=k).double()
    x = inputs()
    out, _ = torso(x, torso.initial_state(B, dtype=torch.float64))
    y = x.permute(1, 2, 0)  # (B, C, T)
    for index, layer in enumerate(torso.layers):
        if index:
            y = F.leaky_relu(y, 0.01)
        dilation = 2**index
        y = F.conv1d(F.pad(y, ((k - 1) * dilation, 0)), layer.conv_weight(), layer.linear.bias, dilation=dilation)
    torch.testing.assert_close(out, y.permute(2, 0, 1), rtol=1e-10, atol=1e-12)


def test_tcn_equals_popgym_frameconv():
    """POPGym's Frameconv.forward_memory, restated: nn.Conv1d(F, H, k) over [state; inputs]."""
    k = 4
    torch.manual_seed(0)
    torso = TORSOS["tcn"](I, H, k=k).double()
    conv = torch.nn.Conv1d(I, H, k, 1).double()
    with torch.no_grad():
        conv.weight.copy_(torso.layers[0].conv_weight())
        conv.bias.copy_(torso.layers[0].linear.bias)
    x, state = inputs(), inputs(seed=1, steps=k - 1).transpose(0, 1).reshape(B, -1)
    out, final = torso(x, state)
    time_padded = torch.cat([state.reshape(B, k - 1, I), x.transpose(0, 1)], dim=1)
    popgym_out = conv(time_padded.permute(0, 2, 1)).permute(0, 2, 1)
    torch.testing.assert_close(out.transpose(0, 1), popgym_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(final, time_padded[:, -k + 1 :].reshape(B, -1), rtol=0, atol=0)


@pytest.mark.parametrize("name", WINDOWED)
@pytest.mark.parametrize("k", [2, 4, 6])
def test_memory_reaches_exactly_k_minus_1_steps_back(name, k):
    torch.manual_seed(0)
    torso = TORSOS[name](I, H, k=k).double()
    x = inputs(steps=12)
    out, _ = torso(x, torso.initial_state(B, dtype=torch.float64))
    probe = 3
    changed = x.clone()
    changed[probe] += 1.0
    changed_out, _ = torso(changed, torso.initial_state(B, dtype=torch.float64))
    differs = [not torch.equal(out[t], changed_out[t]) for t in range(12)]
    assert differs == [probe <= t <= probe + k - 1 for t in range(12)]


def test_tcn_receptive_field_grows_with_dilated_layers():
    torch.manual_seed(0)
    k, layers, steps = 3, 3, 24
    torso = TORSOS["tcn"](I, H, layers, k=k).double()
    x = inputs(steps=steps)
    changed = x.clone()
    changed[0] += 1.0
    zeros = torso.initial_state(B, dtype=torch.float64)
    out, changed_out = torso(x, zeros)[0], torso(changed, zeros)[0]
    field = 1 + (k - 1) * (2**layers - 1)  # 15 steps
    assert [not torch.equal(out[t], changed_out[t]) for t in range(steps)] == [t < field for t in range(steps)]
    assert torso.state_size == (k - 1) * (I + 2 * H + 4 * H)


@pytest.mark.parametrize("name", WINDOWED)
def test_window_options_are_checked(name):
    assert TORSOS[name](I, H).k == 4  # POPGym's stack_size
    with pytest.raises(TorsoError, match=rf"{name} torso: k must be a positive int, got 0"):
        TORSOS[name](I, H, k=0)
    with pytest.raises(
        TorsoError, match=rf"{name} torso got unknown options \['window'\]; its options are \['dropout', 'k'\]"
    ):
        TORSOS[name](I, H, window=4)


def test_framestack_width_not_a_multiple_of_k():
    torso = TORSOS["framestack"](3, 10, k=4)  # POPGym asserts H % k == 0; here the code rounds up
    assert torso.code_size == 3 and torso.blocks[0][0].in_features == 12
    out, _ = torso(torch.randn(2, 1, 3), torso.initial_state(1))
    assert out.shape == (2, 1, 10)


# --- the T-maze: solved when the window covers the cue, at chance when it does not ---------------

# tests/sb3/test_learning.py's settings. The cue is at step 0 and the decision at step L (the corridor
# length), so a window of k steps covers it iff L <= k - 1. With the default k = 4: L = 3 is covered,
# L = 4 is not. Measured on seeds 0-2: both torsos reach 1.00 at L = 3 by 2048 steps (budget 6144, 3x
# margin); at L = 4 they stay within ±0.12 at 6144 steps and ±0.04 at 12288 (the budget used: more
# training than the covered case gets). 1-12 s each on a 2-core machine.
PPO_KWARGS = dict(n_steps=32, batch_size=64, n_epochs=4, learning_rate=1e-3, gamma=0.9, ent_coef=0.01, seed=0)
EPISODES = 200


def train_on_tmaze(torso: str, corridor_length: int, budget: int) -> float:
    env = make_vec_env("dream_rl/TMaze-v0", n_envs=8, env_kwargs=dict(corridor_length=corridor_length), seed=0)
    model = RecurrentPPO("MlpTorsoPolicy", env, policy_kwargs=dict(torso=torso, lstm_hidden_size=32), **PPO_KWARGS)
    model.learn(budget)
    return evaluate_policy(model, env, n_eval_episodes=EPISODES)[0]


@pytest.mark.parametrize("torso", WINDOWED)
def test_window_that_covers_the_cue_solves_the_tmaze(torso):
    mean_return = train_on_tmaze(torso, corridor_length=3, budget=6144)
    assert mean_return >= 0.9, f"{torso}: mean return {mean_return:.2f}"


@pytest.mark.parametrize("torso", WINDOWED)
def test_window_one_step_short_of_the_cue_stays_at_chance(torso):
    mean_return = train_on_tmaze(torso, corridor_length=4, budget=12288)
    assert abs(mean_return) < 0.3, f"{torso}: mean return {mean_return:.2f}"  # standard error ~ 0.07
