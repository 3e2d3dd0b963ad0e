"""The indrnn torso against the IndRNN equations (Li et al. 2018); the shared contract is in
tests/torsos/test_contract.py."""

import pytest
import torch

from dream_rl import TORSOS
from dream_rl.errors import TorsoError

T, B, F_IN, H = 11, 3, 5, 8


def inputs(seed: int = 0) -> torch.Tensor:
    return torch.randn(T, B, F_IN, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def make(seed: int = 0, num_layers: int = 1, **kwargs):
    torch.manual_seed(seed)
    return TORSOS["indrnn"](F_IN, H, num_layers, **kwargs).double()


def reference(torso, x: torch.Tensor, state: torch.Tensor, starts: torch.Tensor, activation=torch.relu):
    """``h_t = σ(W x_t + b + u ⊙ h_{t-1})`` per layer, step by step, state zeroed where an episode starts."""
    hs = list(state.split(H, dim=1))
    outs = []
    for t in range(x.shape[0]):
        inp = x[t]
        for index, layer in enumerate(torso.layers):
            u = layer.recurrent.clamp(-layer.bound, layer.bound)
            previous = torch.where(starts[t].reshape(-1, 1), torch.zeros_like(hs[index]), hs[index])
            hs[index] = activation(inp @ layer.input.weight.T + layer.input.bias + u * previous)
            inp = hs[index]
        outs.append(inp)
    return torch.stack(outs), torch.cat(hs, dim=1)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_indrnn_is_the_papers_recurrence(activation):
    torso = make(num_layers=2, activation=activation)
    x = inputs()
    state = 0.5 * torch.randn(B, 2 * H, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).abs()
    starts = torch.zeros(T, B, dtype=torch.bool)
    starts[0, 1] = starts[4, 0] = starts[7, 2] = True
    with torch.no_grad():
        out, final = torso(x, state, starts)
        expected, expected_final = reference(torso, x, state, starts, getattr(torch, activation))
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(final, expected_final, rtol=1e-12, atol=1e-12)


def test_units_are_independent_through_time():
    """The recurrent weight is a vector: changing unit j's state changes only unit j's next output."""
    torso = make(activation="tanh")  # tanh: no unit is cut off, so the change shows wherever it reaches
    x = inputs()[:1]
    state = torch.rand(B, H, dtype=torch.float64)
    changed = state.clone()
    changed[:, 3] += 1.0
    with torch.no_grad():
        out, _ = torso(x, state)
        changed_out, _ = torso(x, changed)
    assert (out != changed_out).any(dim=(0, 1)).nonzero().flatten().tolist() == [3]


def test_recurrent_weights_are_bounded_in_the_forward_pass_without_changing_the_parameter():
    torso = make(max_len=16)
    layer = torso.layers[0]
    with torch.no_grad():
        layer.recurrent[:] = torch.linspace(-3.0, 3.0, H, dtype=torch.float64)
    stored = layer.recurrent.detach().clone()
    bound = 2.0 ** (1 / 16)
    assert layer.recurrent_weight().abs().max().item() == pytest.approx(bound)
    x, state = inputs(), torch.rand(B, H, dtype=torch.float64)
    with torch.no_grad():
        out, _ = torso(x, state)
        expected, _ = reference(torso, x, state, torch.zeros(T, B, dtype=torch.bool))
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(layer.recurrent, stored)


def test_initialisation_is_popgyms():
    torso = TORSOS["indrnn"](F_IN, 64)
    u = torso.layers[0].recurrent
    assert u.min() >= 0 and u.max() <= 1 and u.std() > 0.2  # U(0, 1)
    assert torso.state_size == 64


@pytest.mark.parametrize(
    "kwargs, match", [({"activation": "gelu"}, "activation must be one of"), ({"max_len": 0}, "max_len must be >= 1")]
)
def test_bad_options_are_one_line_torso_errors(kwargs, match):
    with pytest.raises(TorsoError, match=match):
        TORSOS["indrnn"](F_IN, H, **kwargs)
