"""The torso interface: flat zero state, resets at episode starts, batch independence."""

import pytest
import torch

from dream_rl import DREAMError, DREAMState, DreamTorso, GruTorso, LstmTorso, TorsoError

T, B, F, H = 7, 3, 5, 8


def make_torso(kind: str, num_layers: int = 1) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "dream":
        return DreamTorso(F, H, num_layers, rank=4).double()
    if kind == "lstm":
        return LstmTorso(F, H, num_layers).double()
    return GruTorso(F, H, num_layers).double()


KINDS = ["dream", "lstm", "gru"]


def step_by_step(torso, features, state, episode_starts):
    """Reference: one step at a time, resetting by hand."""
    outputs = []
    for t in range(features.shape[0]):
        state = state * (1.0 - episode_starts[t]).unsqueeze(1)
        out, state = torso.run(features[t : t + 1], state)
        outputs.append(out)
    return torch.cat(outputs), state


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("num_layers", [1, 2])
def test_sizes_and_zero_initial_state(kind, num_layers):
    torso = make_torso(kind, num_layers)
    assert torso.input_size == F and torso.output_size == H
    state = torso.initial_state(B, dtype=torch.float64)
    assert state.shape == (B, torso.state_size) and not state.any()
    out, new_state = torso(torch.randn(T, B, F, dtype=torch.float64), state)
    assert out.shape == (T, B, H) and new_state.shape == (B, torso.state_size)


def test_dream_zero_state_decodes_to_cell_initial_state():
    torso = make_torso("dream")
    cell = torso.cells[0]
    decoded = DREAMState.from_flat(torso.initial_state(B, dtype=torch.float64), cell.config)
    expected = cell.init_state(B)
    for name in decoded.shape():
        assert torch.equal(getattr(decoded, name), getattr(expected, name)), name


@pytest.mark.parametrize("kind", KINDS)
def test_dream_torso_equals_its_cells(kind):
    """The torso computes its layer's function: DREAM cell, nn.LSTM or nn.GRU."""
    torso = make_torso(kind)
    x = torch.randn(T, B, F, dtype=torch.float64)
    out, _ = torso(x, torso.initial_state(B, dtype=torch.float64))
    if kind == "dream":
        expected, _ = torso.cells[0].forward_sequence(x.transpose(0, 1), torso.cells[0].init_state(B))
        expected = expected.transpose(0, 1)
    else:
        expected, _ = torso.rnn(x)
    torch.testing.assert_close(out, expected)


def reached_state(torso) -> torch.Tensor:
    """A nonzero state the torso itself wrote (B, state_size): three steps of random input from zeros.
    (A random vector is not a state of every torso: DREAM's flat state carries a layout tag.)"""
    _, state = torso(torch.randn(3, B, F, dtype=torch.float64), torso.initial_state(B, dtype=torch.float64))
    return state


@pytest.mark.parametrize("kind", KINDS)
def test_resets_mid_sequence_match_step_by_step(kind):
    torso = make_torso(kind, num_layers=2)
    x = torch.randn(T, B, F, dtype=torch.float64)
    state = reached_state(torso)
    starts = torch.zeros(T, B, dtype=torch.float64)
    starts[0, 1] = starts[3, 0] = starts[5, 2] = starts[5, 0] = 1.0
    out, final = torso(x, state, starts)
    ref_out, ref_final = step_by_step(torso, x, state, starts)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(final, ref_final)


@pytest.mark.parametrize("kind", KINDS)
def test_reset_touches_only_that_sequence(kind):
    torso = make_torso(kind)
    x = torch.randn(T, B, F, dtype=torch.float64)
    state = reached_state(torso)
    starts = torch.zeros(T, B, dtype=torch.float64)
    starts[4, 1] = 1.0
    out, _ = torso(x, state, starts)
    no_reset, _ = torso(x, state)
    # untouched sequences: bit-identical
    assert torch.equal(out[:, [0, 2]], no_reset[:, [0, 2]])
    # the reset one, from step 4 on, equals a fresh run from the initial state
    fresh, _ = torso(x[4:, 1:2], torso.initial_state(1, dtype=torch.float64))
    torch.testing.assert_close(out[4:, 1:2], fresh)
    assert not torch.allclose(out[4:, 1], no_reset[4:, 1])


@pytest.mark.parametrize("kind", KINDS)
def test_sequences_are_independent(kind):
    torso = make_torso(kind)
    x = torch.randn(T, B, F, dtype=torch.float64)
    state = torso.initial_state(B, dtype=torch.float64)
    out, final = torso(x, state)
    x_other = x.clone()
    x_other[:, 0] += 5.0
    out_other, final_other = torso(x_other, state)
    assert torch.equal(out[:, 1:], out_other[:, 1:])
    assert torch.equal(final[1:], final_other[1:])


def test_bad_shapes_and_kwargs_raise_clear_errors():
    torso = make_torso("dream")
    with pytest.raises(TorsoError, match="features of shape"):
        torso(torch.randn(T, B, F + 1, dtype=torch.float64), torso.initial_state(B, dtype=torch.float64))
    with pytest.raises(TorsoError, match="state of shape"):
        torso(torch.randn(T, B, F, dtype=torch.float64), torso.initial_state(B + 1, dtype=torch.float64))
    with pytest.raises(DREAMError, match="did you mean 'rank'"):
        DreamTorso(F, H, rnak=4)
    with pytest.raises(DREAMError, match="input_dim"):
        DreamTorso(F, H, input_dim=3)
    with pytest.raises(TorsoError, match="bidirectional"):
        LstmTorso(F, H, bidirectional=True)


def test_dream_torso_monitoring_records_internals_on_single_steps():
    torso = make_torso("dream")
    assert torso.pop_internals() == {}
    torso.monitor = True
    state = torso.initial_state(B, dtype=torch.float64)
    for _ in range(3):
        _, state = torso(torch.randn(1, B, F, dtype=torch.float64), state)
    internals = torso.pop_internals()
    assert set(internals) == {"surprise", "tau_eff", "fast_weight_norm"}
    assert 0.0 <= internals["surprise"] <= 1.0
    assert internals["tau_eff"] > 0.0 and internals["fast_weight_norm"] > 0.0
    assert torso.pop_internals() == {}
