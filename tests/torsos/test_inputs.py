"""Bad inputs to any torso give one TorsoError line naming what is wrong and how to fix it (issue 21).

Checked once in :class:`~dream_rl.torsos.base.RecurrentTorso` for every registered torso (the tests
iterate ``TORSOS``, so a torso registered later is covered): features and state of the parameters'
dtype, constructor sizes that are positive ints, and an empty batch, which works.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dream_rl import TORSOS, DreamRLError, TorsoError

F_IN, WIDTH, T, B = 3, 8, 5, 2
NAMES = sorted(TORSOS)


def make(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return TORSOS[name](F_IN, WIDTH)


@pytest.mark.parametrize("name", NAMES)
def test_float64_features_into_a_float32_torso_name_both_dtypes_and_both_fixes(name):
    torso = make(name)
    with pytest.raises(TorsoError) as caught:
        torso(torch.zeros(T, B, F_IN, dtype=torch.float64), torso.initial_state(B))
    message = str(caught.value)
    assert "\n" not in message
    assert message.endswith(
        "expects float32 features, got float64; cast with features.float() or convert the torso with .double()"
    )


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_integer_features_are_refused_with_the_cast_to_make(name, dtype):
    torso = make(name)
    with pytest.raises(TorsoError, match=rf"expects float32 features, got {str(dtype)[6:]}; cast with features\.float\(\)$"):
        torso(torch.zeros(T, B, F_IN, dtype=dtype), torso.initial_state(B))


@pytest.mark.parametrize("name", NAMES)
def test_a_state_of_another_dtype_is_refused_not_cast(name):
    """No torso casts a float64 state silently (lru, s5, ffm, rtu did; mingru returned a float64 state;
    lstm crashed inside oneDNN)."""
    torso = make(name)
    with pytest.raises(TorsoError, match=r"expects a float32 state, got float64; start from initial_state\(batch, "
                                         r"dtype=torch\.float32\) or cast with state\.float\(\)"):
        torso(torch.zeros(T, B, F_IN), torso.initial_state(B, dtype=torch.float64))
    double = make(name).double()  # a float64 torso takes float64 features and state
    out, state = double(torch.zeros(T, B, F_IN, dtype=torch.float64), double.initial_state(B, dtype=torch.float64))
    assert out.dtype == state.dtype == torch.float64


@pytest.mark.parametrize("name", NAMES)
def test_an_empty_batch_gives_empty_outputs(name):
    torso = make(name)
    features = torch.zeros(T, 0, F_IN, requires_grad=True)
    out, state = torso(features, torso.initial_state(0), torch.zeros(T, 0))
    assert out.shape == (T, 0, torso.output_size)
    assert state.shape == (0, torso.state_size)
    assert out.dtype == state.dtype == torch.float32
    (out.sum() + state.sum()).backward()  # a loss over an empty batch backpropagates (zeros)
    assert features.grad is not None and features.grad.shape == features.shape


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("argument", ["input_size", "hidden_size", "num_layers"])
@pytest.mark.parametrize("value", [0, -1, 2.5, "8", True, None])
def test_sizes_must_be_positive_ints(name, argument, value):
    sizes = {"input_size": F_IN, "hidden_size": WIDTH, "num_layers": 1, argument: value}
    with pytest.raises(TorsoError, match=rf"{argument} must be a positive int, got {value!r}"):
        TORSOS[name](**sizes)


@pytest.mark.parametrize("name", NAMES)
def test_numpy_integer_sizes_are_accepted(name):
    torso = TORSOS[name](np.int64(F_IN), np.int32(WIDTH), np.int64(1))
    out, _ = torso(torch.zeros(T, B, F_IN), torso.initial_state(B))
    assert out.shape == (T, B, WIDTH)


@pytest.mark.parametrize("name", ["rtu", "slstm"])
def test_zero_width_is_a_torso_error_not_a_zero_division(name):
    with pytest.raises(TorsoError, match="hidden_size must be a positive int, got 0"):
        TORSOS[name](F_IN, 0)


@pytest.mark.parametrize(
    "name, valid",
    [
        ("lstm", "['bias', 'dropout', 'device', 'dtype']"),
        ("gru", "['backend', 'bias', 'dropout', 'device', 'dtype']"),
        ("elman", "['nonlinearity', 'bias', 'dropout', 'device', 'dtype']"),
    ],
)
def test_unknown_option_of_a_torch_rnn_torso_names_it_and_the_valid_ones(name, valid):
    with pytest.raises(TorsoError) as caught:
        TORSOS[name](F_IN, WIDTH, hiden=3)
    assert str(caught.value) == f"{name.upper() if name != 'elman' else 'Elman'} torso got unknown options ['hiden']; " \
                                f"its options are {valid}"


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("lstm", {"dropout": 2.0}, "LSTM torso: dropout should be a number in range"),
        ("elman", {"nonlinearity": "gelu"}, "Elman torso: Unknown nonlinearity 'gelu'"),
        ("gru", {"bidirectional": True}, "does not support \\['bidirectional'\\]"),
    ],
)
def test_option_values_torch_refuses_come_back_as_one_torso_error_line(name, options, message):
    with pytest.raises(TorsoError, match=message):
        TORSOS[name](F_IN, WIDTH, **options)


def test_torso_errors_are_dream_rl_errors_and_value_errors():
    assert issubclass(TorsoError, DreamRLError) and issubclass(TorsoError, ValueError)


@pytest.mark.parametrize("name", NAMES)
def test_features_that_are_not_tensors_are_refused(name):
    torso = make(name)
    with pytest.raises(TorsoError, match="features and state as torch tensors, got ndarray"):
        torso(np.zeros((T, B, F_IN), dtype=np.float32), torso.initial_state(B))


# ---------------------------------------------------------------- self_attention on long calls


def test_self_attention_runs_a_long_call_in_parts_that_fit_its_memory_budget():
    """The attention scores of a call are quadratic in its length (22.5 GB for 20,000 steps at once); a
    long call runs in parts of at most max_steps steps, and gives the one call's result."""
    torch.manual_seed(0)
    torso = TORSOS["self_attention"](F_IN, WIDTH).double()
    x = torch.randn(300, B, F_IN, dtype=torch.float64)
    starts = torch.rand(300, B) < 0.05
    state = torso.initial_state(B, dtype=torch.float64)
    with torch.no_grad():
        whole, whole_state = torso(x, state, starts)
        plain, plain_state = torso(x, state)
        heads, window = torso.layers[0].num_heads, torso.layers[0].window
        torso.max_attention_bytes = B * heads * 40 * (window + 40) * 8  # parts of 40 steps
        assert torso.max_steps(B, torch.float64) == 40
        parts, parts_state = torso(x, state, starts)
        plain_parts, plain_parts_state = torso(x, state)
    torch.testing.assert_close(parts, whole, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(parts_state, whole_state, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(plain_parts, plain, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(plain_parts_state, plain_state, rtol=1e-12, atol=1e-12)


def test_self_attention_default_budget_bounds_a_20000_step_call():
    torso = TORSOS["self_attention"](F_IN, WIDTH)
    part = torso.max_steps(1)
    heads, window = torso.layers[0].num_heads, torso.layers[0].window
    assert part < 20_000
    assert heads * part * (window + part) * 4 <= torso.max_attention_bytes == 64 * 2**20
