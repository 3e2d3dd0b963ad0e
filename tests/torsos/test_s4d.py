"""The s4d torso against S4D (Gu et al. 2022) in POPGym's setup: the SSM's convolution kernel, the
recurrence with resets, the S4D-Lin initialisation, and why ``s5`` and ``lru`` are not S4D.
The shared contract is in tests/torsos/test_contract.py."""

import math

import pytest
import torch
from torch.nn import functional as F

from dream_rl import TORSOS
from dream_rl.errors import TorsoError

T, B, F_IN, H = 11, 3, 5, 8


def make(seed: int = 0, num_layers: int = 1, **kwargs):
    torch.manual_seed(seed)
    return TORSOS["s4d"](F_IN, H, num_layers, **kwargs).double()


def inputs(seed: int = 0, steps: int = T, width: int = F_IN) -> torch.Tensor:
    return torch.randn(steps, B, width, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def parameters_of(layer):
    """A (H, N/2), B, C complex, Δ (H,), D (H,), from the layer's stored parameters."""
    a = torch.complex(-torch.exp(layer.a_real_log), layer.a_imag)
    return a, torch.view_as_complex(layer.B), torch.view_as_complex(layer.C), torch.exp(layer.log_dt), layer.D


def test_ssm_is_s4ds_convolution():
    """S4D's convolution form: K_l = 2·Re(Σ_n C_n B̄_n Ā_n^l) with ZOH Ā = exp(ΔA), B̄ = (Ā − 1)/A · B, and
    y_t = Σ_{l<=t} K_l u_{t−l} + D u_t + 2·Re(Σ_n C_n Ā_n^(t+1) s_{-1,n}) from a carried state."""
    torso = make(state_dim=6)
    layer = torso.layers[0]
    a, b, c, dt, d = parameters_of(layer)
    a_bar = torch.exp(dt.unsqueeze(-1) * a)
    b_bar = (a_bar - 1) / a * b
    powers = a_bar.unsqueeze(0) ** torch.arange(T + 1, dtype=torch.float64).reshape(-1, 1, 1)  # (T+1, H, N/2)
    kernel = 2 * (c * b_bar * powers[:T]).sum(-1).real  # (T, H)
    u = inputs(width=H)
    s0 = torch.randn(B, H, 3, dtype=torch.complex128, generator=torch.Generator().manual_seed(5))
    expected = torch.stack([sum(kernel[lag] * u[t - lag] for lag in range(t + 1)) for t in range(T)]) + d * u
    expected = expected + 2 * torch.einsum("hn,thn,bhn->tbh", c, powers[1:], s0).real
    with torch.no_grad():
        y, _ = layer.ssm(u, s0, None)
    torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-12)


def test_s4d_block_is_the_recurrence_with_resets():
    """Per layer: u = W_u x + b; s = Ā s + B̄ u (zeroed where an episode starts); y = 2 Re(C s) + D u;
    out = GLU(W_o GELU(y) + b_o); step by step, from a warm state."""
    torso = make(num_layers=2)
    x = inputs()
    state = torch.randn(B, torso.state_size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    starts = torch.zeros(T, B, dtype=torch.bool)
    starts[0, 1] = starts[4, 0] = starts[5, 0] = starts[8, 2] = True
    modes = torso.layers[0].modes
    states = [torch.view_as_complex(s.reshape(B, H, modes, 2).contiguous()) for s in state.split(torso.layer_sizes, 1)]
    outs = []
    with torch.no_grad():
        for t in range(T):
            inp = x[t]
            for index, layer in enumerate(torso.layers):
                a, b, c, dt, d = parameters_of(layer)
                a_bar = torch.exp(dt.unsqueeze(-1) * a)
                u = layer.encoder(inp)
                s = torch.where(starts[t].reshape(B, 1, 1), torch.zeros_like(states[index]), states[index])
                s = a_bar * s + (a_bar - 1) / a * b * u.unsqueeze(-1)
                states[index] = s
                y = 2 * (c * s).sum(-1).real + d * u
                inp = F.glu(layer.output(F.gelu(y)), dim=-1)
            outs.append(inp)
        out, final = torso(x, state, starts)
    torch.testing.assert_close(out, torch.stack(outs), rtol=1e-10, atol=1e-12)
    expected_final = torch.cat([torch.view_as_real(s).reshape(B, -1) for s in states], dim=1)
    torch.testing.assert_close(final, expected_final, rtol=1e-10, atol=1e-12)


def test_initialisation_is_s4d_lin_with_popgyms_state_size():
    torso = TORSOS["s4d"](F_IN, 64)
    layer = torso.layers[0]
    a, b, _, dt, _ = parameters_of(layer)
    assert layer.modes == 4 and torso.state_size == 64 * 8 == 512  # N = 2·round(√64 / 2) = 8
    torch.testing.assert_close(a, torch.complex(torch.full((64, 4), -0.5), math.pi * torch.arange(4.0).repeat(64, 1)))
    torch.testing.assert_close(b, torch.ones(64, 4, dtype=torch.complex64))
    assert dt.min() >= 0.001 and dt.max() <= 0.1
    assert [TORSOS["s4d"](F_IN, width).layers[0].modes * 2 for width in (4, 16, 128, 256)] == [2, 4, 12, 16]


def channel_coupling(jacobian: torch.Tensor) -> float:
    """The largest |∂state_j / ∂u_i| off the channel's own block, relative to the largest entry."""
    return (jacobian.abs() * (1 - torch.eye(jacobian.shape[0], dtype=jacobian.dtype).unsqueeze(-1))).max().item() / (
        jacobian.abs().max().item()
    )


def test_s4d_is_per_channel_siso_which_s5_and_lru_are_not():
    """The S4D decision's evidence: in s4d, channel h's modes see only input channel h (the Jacobian of the
    state on the SSM's input is block-diagonal); s5 and lru feed every input feature into every mode."""
    layer = make().layers[0]
    s0 = torch.zeros(1, H, layer.modes, dtype=torch.complex128)

    def s4d_state(u: torch.Tensor) -> torch.Tensor:  # u (H,) → states (H, N/2) as reals
        return torch.view_as_real(layer.ssm(u.reshape(1, 1, H), s0, None)[1][0, 0]).flatten(1)

    jacobian = torch.autograd.functional.jacobian(s4d_state, torch.randn(H, dtype=torch.float64))  # (H, N, H)
    assert channel_coupling(jacobian.permute(2, 0, 1)) == 0.0

    for name in ("s5", "lru"):
        torch.manual_seed(0)
        other = TORSOS[name](H, H).double().layers[0]
        state_dim = other.state_dim

        def other_state(x: torch.Tensor) -> torch.Tensor:  # x (H,) → the flat state (2P,) as (H, 2P/H)
            _, flat = other(x.reshape(1, 1, H), torch.zeros(1, 2 * state_dim, dtype=torch.float64), None)
            return flat.reshape(H, -1)

        coupling = torch.autograd.functional.jacobian(other_state, torch.randn(H, dtype=torch.float64))
        assert channel_coupling(coupling.permute(2, 0, 1)) > 0.1, name


@pytest.mark.parametrize(
    "kwargs", [{"state_dim": 3}, {"state_dim": 0}, {"dt_min": 0.0}, {"dt_min": 0.2, "dt_max": 0.1}]
)
def test_bad_options_are_one_line_torso_errors(kwargs):
    with pytest.raises(TorsoError, match="s4d needs an even state_dim >= 2"):
        TORSOS["s4d"](F_IN, H, **kwargs)
