"""The lmu torso against the Legendre Memory Unit of Voelker, Kajić & Eliasmith 2019: the delay system's
matrices in closed form, their zero-order-hold discretisation, the memory's window, and the cell's
equations. The shared contract is in tests/torsos/test_contract.py."""

import math

import pytest
import torch

from dream_rl import TORSOS
from dream_rl.errors import TorsoError
from dream_rl.torsos.lmu import legendre_delay, zero_order_hold

T, B, F_IN, H = 11, 3, 5, 8


def test_delay_system_matrices_are_the_papers_closed_form():
    """The paper's a_ij = (2i+1)/θ · (−1 if i < j else (−1)^(i−j+1)), b_i = (2i+1)(−1)^i / θ."""
    d, theta = 6, 7.5
    a, b = legendre_delay(d, theta)
    for i in range(d):
        assert b[i, 0].item() == (2 * i + 1) * (-1) ** i / theta
        for j in range(d):
            assert a[i, j].item() == (2 * i + 1) / theta * (-1 if i < j else (-1) ** (i - j + 1))


def rk4_step(a: torch.Tensor, b: torch.Tensor, m: torch.Tensor, u: float, substeps: int = 400) -> torch.Tensor:
    """ṁ = A m + B u over one time unit with the input held at u, by classical Runge-Kutta."""
    h = 1.0 / substeps

    def f(state):
        return a @ state + b[:, 0] * u

    for _ in range(substeps):
        k1 = f(m)
        k2 = f(m + h / 2 * k1)
        k3 = f(m + h / 2 * k2)
        k4 = f(m + h * k3)
        m = m + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return m


def test_zero_order_hold_integrates_the_continuous_system_over_one_step():
    a, b = legendre_delay(5, 4.0)
    a_bar, b_bar = zero_order_hold(a, b)
    m0 = torch.randn(5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a_bar @ m0 + b_bar[:, 0] * 0.7, rk4_step(a, b, m0, 0.7), rtol=1e-9, atol=1e-10)
    # the closed form B̄ = A⁻¹ (Ā − I) B as well
    torch.testing.assert_close(b_bar, torch.linalg.solve(a, (a_bar - torch.eye(5, dtype=torch.float64)) @ b))


def shifted_legendre(i: int, r: float) -> float:
    """The paper's P̃_i(r) = (−1)^i Σ_j C(i, j) C(i+j, j) (−r)^j."""
    return (-1) ** i * sum(math.comb(i, j) * math.comb(i + j, j) * (-r) ** j for j in range(i + 1))


@pytest.mark.parametrize("delay", [5, 20, 39])
def test_memory_holds_the_last_theta_steps_of_its_input(delay):
    """The paper's u(t − θ') ≈ Σ_i P̃_i(θ'/θ) m_i(t) for θ' in [0, θ], read here from the torso's own Ā, B̄
    (at the middle of the step the held input covers)."""
    d, theta, steps = 12, 40.0, 300
    torso = TORSOS["lmu"](1, 4, memory_size=d, theta=theta).double()
    a_bar, b_bar = torso.layers[0].A, torso.layers[0].B
    t = torch.arange(steps, dtype=torch.float64)
    u = torch.sin(2 * math.pi * t / 80) + 0.5 * torch.cos(2 * math.pi * t / 53)
    m, memories = torch.zeros(d, dtype=torch.float64), []
    for step in range(steps):
        m = a_bar @ m + b_bar[:, 0] * u[step]
        memories.append(m)
    decoder = torch.tensor([shifted_legendre(i, (delay + 0.5) / theta) for i in range(d)], dtype=torch.float64)
    decoded = torch.stack(memories) @ decoder
    later = torch.arange(150, steps)
    assert (decoded[later] - u[later - delay]).abs().max() < 0.03  # the signal's amplitude is 1.5
    # the window is θ: a delay beyond it is not represented
    beyond = torch.tensor([shifted_legendre(i, 2.0) for i in range(d)], dtype=torch.float64)
    assert (torch.stack(memories)[later] @ beyond - u[later - 80]).abs().max() > 1.0


def reference(torso, x, state, starts):
    """The paper's cell per layer, step by step: u = e_x·x + e_h·h + e_m·m; m = Ā m + B̄ u;
    h = tanh(W_x x + W_h h + W_m m); the state zeroed where an episode starts."""
    sizes = [layer.state_size for layer in torso.layers]
    states = list(state.split(sizes, dim=1))
    outs = []
    for t in range(x.shape[0]):
        inp = x[t]
        for index, layer in enumerate(torso.layers):
            flat = torch.where(starts[t].reshape(-1, 1), torch.zeros_like(states[index]), states[index])
            h, m = flat.split([layer.hidden_size, layer.memory_size], dim=1)
            u = inp @ layer.e_x.T + h @ layer.e_h.T + m @ layer.e_m.T
            m = m @ layer.A.T + u @ layer.B.T
            h = torch.tanh(inp @ layer.W_x.T + h @ layer.W_h.T + m @ layer.W_m.T)
            states[index] = torch.cat([h, m], dim=1)
            inp = h
        outs.append(inp)
    return torch.stack(outs), torch.cat(states, dim=1)


def test_lmu_is_the_papers_cell():
    torch.manual_seed(0)
    torso = TORSOS["lmu"](F_IN, H, 2, memory_size=6, theta=5.0).double()
    with torch.no_grad():  # e_m starts at 0; give it a value so its term is checked too
        for layer in torso.layers:
            layer.e_m.normal_()
    x = torch.randn(T, B, F_IN, dtype=torch.float64)
    state = torch.randn(B, torso.state_size, dtype=torch.float64)
    starts = torch.zeros(T, B, dtype=torch.bool)
    starts[0, 1] = starts[4, 0] = starts[7, 2] = True
    with torch.no_grad():
        out, final = torso(x, state, starts)
        expected, expected_final = reference(torso, x, state, starts)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(final, expected_final, rtol=1e-12, atol=1e-12)


def test_a_and_b_are_fixed_unless_asked_and_initialisation_is_popgyms():
    torso = TORSOS["lmu"](F_IN, 64)
    layer = torso.layers[0]
    names = {name for name, _ in layer.named_parameters()}
    assert "A" not in names and "B" not in names
    assert {"A", "B"} <= {name for name, _ in layer.named_buffers()}
    assert (layer.memory_size, layer.theta, torso.state_size) == (64, 64.0, 128)
    assert not layer.e_m.any()
    learned = TORSOS["lmu"](F_IN, H, learn_a=True, learn_b=True).layers[0]
    assert {"A", "B"} <= {name for name, _ in learned.named_parameters()}
    a_bar, b_bar = zero_order_hold(*legendre_delay(H, 64.0))
    torch.testing.assert_close(learned.A, a_bar.float())
    torch.testing.assert_close(learned.B, b_bar.float())


@pytest.mark.parametrize("kwargs", [{"memory_size": 0}, {"memory_size": -1}, {"theta": 0}, {"theta": -3.0}])
def test_bad_options_are_one_line_torso_errors(kwargs):
    with pytest.raises(TorsoError, match="lmu needs memory_size >= 1 and theta > 0"):
        TORSOS["lmu"](F_IN, H, **kwargs)
