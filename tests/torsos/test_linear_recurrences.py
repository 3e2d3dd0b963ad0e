"""The mingru, lru, s5, mamba and ffm torsos against their papers' equations and initialisations.

The contract suite (tests/torsos/test_contract.py) checks that each torso agrees with itself (sequence vs steps,
resets, ...); these tests check that what it computes, step by step, is the model of its source, and
that the initialisations are the papers'.
"""

import math

import pytest
import torch
from torch.nn import functional as F

from dream_rl import TORSOS, TorsoError
from dream_rl.torsos.mamba import ssd_chunked
from dream_rl.torsos.s5 import hippo_normal_eigen
from dream_rl.torsos.scan import CausalConv, _DepthwiseCausalConv

T, B, F_IN, H = 11, 3, 5, 8


def inputs(seed: int = 0, steps: int = T, batch: int = B, width: int = F_IN) -> torch.Tensor:
    return torch.randn(steps, batch, width, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def some_starts(steps: int = T, batch: int = B) -> torch.Tensor:
    starts = torch.zeros(steps, batch, dtype=torch.bool)
    starts[0, 1] = starts[3, 0] = starts[4, 0] = starts[7, 2] = starts[8, 1] = True
    return starts


def run_reference(step, state, x, starts):
    """Apply ``step(state, x_t) -> (out, state)`` along x, zeroing the state where an episode starts."""
    outs = []
    for t in range(x.shape[0]):
        state = state * (~starts[t]).to(state.real.dtype).reshape(-1, *([1] * (state.dim() - 1)))
        out, state = step(state, x[t])
        outs.append(out)
    return torch.stack(outs), state


def make(name, seed=0, **kwargs):
    torch.manual_seed(seed)
    return TORSOS[name](F_IN, H, **kwargs).double()


def test_mingru_is_the_papers_recurrence():
    torso = make("mingru", conv_kernel=0)  # the default adds a short convolution (test_causal_convolution_...)
    layer = torso.layers[0]
    W, b = layer.proj.weight, layer.proj.bias

    def step(h, x):
        gate, cand = (x @ W.T + b).chunk(2, dim=-1)
        z = torch.sigmoid(gate)
        g = torch.where(cand >= 0, cand + 0.5, torch.sigmoid(cand))
        h = (1 - z) * h + z * g
        return h, h

    x, starts = inputs(), some_starts()
    with torch.no_grad():
        out, final = torso(x, torso.initial_state(B, dtype=torch.float64), starts)
        ref, ref_final = run_reference(step, torch.zeros(B, H, dtype=torch.float64), x, starts)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(final, ref_final)


def test_lru_init_is_on_the_ring_and_normalised():
    torso = make("lru", state_dim=400, r_min=0.4, r_max=0.8, max_phase=math.pi / 4)
    layer = torso.layers[0]
    lam = layer.eigenvalues().detach()
    assert lam.abs().min() >= 0.4 - 1e-9 and lam.abs().max() <= 0.8 + 1e-9
    assert lam.angle().min() >= 0 and lam.angle().max() <= math.pi / 4 + 1e-9
    # uniform on the ring: |λ|² uniform on [r_min², r_max²], so its mean is the midpoint
    assert abs(lam.abs().square().mean().item() - (0.16 + 0.64) / 2) < 0.03
    torch.testing.assert_close(torch.exp(layer.gamma_log).detach(), torch.sqrt(1 - lam.abs().square()))
    assert torso.state_size == 800
    with pytest.raises(TorsoError, match="r_min"):
        make("lru", r_min=0.9, r_max=0.5)


def test_lru_is_the_papers_recurrence():
    torso = make("lru", state_dim=6)
    layer = torso.layers[0]
    lam = layer.eigenvalues().detach()
    gamma = torch.exp(layer.gamma_log).detach()
    Bc = torch.complex(layer.B[:, 0], layer.B[:, 1]).detach()  # (N, I)
    Cc = torch.complex(layer.C[..., 0], layer.C[..., 1]).detach()  # (H, N)

    def step(h, x):
        h = lam * h + gamma * (x.to(Bc.dtype) @ Bc.T)
        y = (h @ Cc.T).real + layer.D(x)
        return F.gelu(y), h

    x, starts = inputs(1), some_starts()
    with torch.no_grad():
        out, final = torso(x, torso.initial_state(B, dtype=torch.float64), starts)
        ref, ref_final = run_reference(step, torch.zeros(B, 6, dtype=torch.complex128), x, starts)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(final, torch.view_as_real(ref_final).reshape(B, -1))


def test_hippo_eigenvalues_are_those_of_the_normal_legs_matrix():
    eig, vec = hippo_normal_eigen(10)
    n = torch.arange(10, dtype=torch.float64)
    root = torch.sqrt(2 * n + 1)
    legs = -torch.tril(torch.outer(root, root), -1) - torch.diag(n + 1)  # HiPPO-LegS A
    p = torch.sqrt(n + 0.5)
    normal = (legs + torch.outer(p, p)).to(torch.complex128)
    torch.testing.assert_close(normal @ vec, vec * eig)
    torch.testing.assert_close(eig.real, torch.full((10,), -0.5, dtype=torch.float64))


def test_s5_init_and_zero_order_hold_recurrence():
    torso = make("s5", state_dim=6, blocks=2, dt_min=0.01, dt_max=0.05)
    layer = torso.layers[0]
    lam = torch.complex(-torch.exp(layer.lambda_re_log), layer.lambda_im).detach()
    eig, _ = hippo_normal_eigen(6)  # 2 blocks of 3 kept modes each, from a HiPPO-N of size 6
    kept = eig[eig.imag >= 0]
    torch.testing.assert_close(lam, kept.repeat(2))
    dt = torch.exp(layer.log_dt).detach()
    assert dt.min() >= 0.01 - 1e-9 and dt.max() <= 0.05 + 1e-9
    lam_bar = torch.exp(lam * dt)
    Bt = torch.complex(layer.B[:, 0], layer.B[:, 1]).detach()
    B_bar = ((lam_bar - 1) / lam).unsqueeze(1) * Bt  # zero-order hold
    Ct = torch.complex(layer.C[..., 0], layer.C[..., 1]).detach()

    def step(h, x):
        h = lam_bar * h + x.to(B_bar.dtype) @ B_bar.T
        y = F.gelu(2 * (h @ Ct.T).real + layer.D(x))
        return y * torch.sigmoid(layer.gate(y)), h

    x, starts = inputs(2), some_starts()
    with torch.no_grad():
        out, final = torso(x, torso.initial_state(B, dtype=torch.float64), starts)
        ref, ref_final = run_reference(step, torch.zeros(B, 6, dtype=torch.complex128), x, starts)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(final, torch.view_as_real(ref_final).reshape(B, -1))


def test_mamba_init_and_step_equations():
    torso = make("mamba", head_dim=4, d_state=3, chunk=4)
    layer = torso.layers[0]
    A = torch.exp(layer.A_log).detach()
    assert A.min() >= 1 - 1e-9 and A.max() <= 16 + 1e-9  # Mamba-2's A ~ U(1, 16)
    dt0 = F.softplus(layer.dt_bias).detach()  # Δ at zero input
    assert dt0.min() >= 1e-3 * (1 - 1e-6) and dt0.max() <= 0.1 * (1 + 1e-6)
    heads, P, N, K = layer.heads, 4, 3, 4
    conv_channels = H + 2 * N
    assert layer.conv.weight.shape == (K, conv_channels)  # Mamba-2's depthwise convolution of width 4

    def step(state, x):  # state: [S (heads·P·N) | the last K-1 inputs of the convolution, oldest first]
        S = state[:, : heads * P * N].reshape(-1, heads, P, N)
        history = state[:, heads * P * N :].reshape(-1, K - 1, conv_channels)
        z, ubc, delta = layer.in_proj(x).split([H, conv_channels, heads], dim=-1)
        window = torch.cat([history, ubc.unsqueeze(1)], dim=1)  # (B, K, C), oldest first
        conv = layer.conv.bias + sum(layer.conv.weight[lag] * window[:, K - 1 - lag] for lag in range(K))
        u, bc = F.silu(conv).split([H, 2 * N], dim=-1)
        u = u.reshape(-1, heads, P)
        b, c = bc.chunk(2, dim=-1)
        dt = F.softplus(delta + layer.dt_bias)
        S = torch.exp(-dt * A).reshape(-1, heads, 1, 1) * S + (dt.unsqueeze(-1) * u).unsqueeze(-1) * b.reshape(-1, 1, 1, N)
        y = torch.einsum("bhpn,bn->bhp", S, c) + layer.D.reshape(heads, 1) * u
        y = y.reshape(-1, H) * F.silu(z)
        y = y / torch.sqrt(y.square().mean(-1, keepdim=True) + 1e-5) * layer.norm_weight
        return layer.out_proj(y), torch.cat([S.reshape(x.shape[0], -1), window[:, 1:].reshape(x.shape[0], -1)], dim=1)

    x, starts = inputs(3, steps=13), some_starts(13)
    with torch.no_grad():
        out, final = torso(x, torso.initial_state(B, dtype=torch.float64), starts)
        ref, ref_final = run_reference(step, torch.zeros(B, torso.state_size, dtype=torch.float64), x, starts)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(final, ref_final)


def test_causal_convolution_equals_steps_and_cuts_at_episode_starts():
    conv = CausalConv(channels=5, kernel_size=4).double()
    x, starts = inputs(4, steps=11, width=5), some_starts(11)
    history = torch.randn(B, conv.state_size, dtype=torch.float64)
    with torch.no_grad():
        y, final = conv(x, history, starts)
        ys, state = [], history
        for t in range(x.shape[0]):
            step_y, state = conv(x[t : t + 1], state, starts[t : t + 1])
            ys.append(step_y)
        # by hand, for sample 0 (starts before steps 3 and 4): step 5 sees x_4, x_5 and nothing earlier
        expected = conv.bias + conv.weight[0] * x[5, 0] + conv.weight[1] * x[4, 0]
    torch.testing.assert_close(y, torch.cat(ys))
    torch.testing.assert_close(final, state)
    torch.testing.assert_close(y[5, 0], expected)
    # the fast path (no start after step 0) has a hand-written backward: gradcheck it
    full = torch.randn(9, 2, 5, dtype=torch.float64, requires_grad=True)
    weight, bias = (conv.weight.detach().clone().requires_grad_(), conv.bias.detach().clone().requires_grad_())
    assert torch.autograd.gradcheck(_DepthwiseCausalConv.apply, (full, weight, bias))
    history[0] = float("nan")  # a start before step 0 drops sample 0's history, NaN included
    starts0 = torch.zeros(3, B, dtype=torch.bool)
    starts0[0, 0] = True
    assert torch.isfinite(conv(x[:3], history, starts0)[0][:, 0]).all()


@pytest.mark.parametrize("chunk", [1, 3, 8, 64])
def test_ssd_chunks_do_not_change_the_result(chunk):
    gen = torch.Generator().manual_seed(chunk)
    steps, heads, P, N = 20, 2, 3, 4
    u = torch.randn(steps, B, heads, P, dtype=torch.float64, generator=gen)
    log_a = -torch.rand(steps, B, heads, dtype=torch.float64, generator=gen)
    b, c = (torch.randn(steps, B, N, dtype=torch.float64, generator=gen) for _ in range(2))
    s0 = torch.randn(B, heads, P, N, dtype=torch.float64, generator=gen)
    starts = torch.rand(steps, B, generator=gen) < 0.15
    starts[0] = False  # s0 is zeroed by the caller where step 0 starts
    y, final = ssd_chunked(u, log_a, b, c, s0, starts, chunk)
    S, ys = s0, []
    for t in range(steps):
        S = S * (~starts[t]).to(S.dtype).reshape(B, 1, 1, 1)
        S = torch.exp(log_a[t]).reshape(B, heads, 1, 1) * S + u[t].unsqueeze(-1) * b[t].reshape(B, 1, 1, N)
        ys.append(torch.einsum("bhpn,bn->bhp", S, c[t]))
    torch.testing.assert_close(y, torch.stack(ys))
    torch.testing.assert_close(final, S)


def test_ffm_init_and_recurrence():
    torso = make("ffm", memory_size=5, context_size=3, max_period=100)
    layer = torso.layers[0]
    torch.testing.assert_close(layer.alpha.detach(), torch.linspace(1e-6, 0.5, 5, dtype=torch.float64))
    torch.testing.assert_close(layer.omega.detach(), 2 * math.pi / torch.linspace(1, 100, 3, dtype=torch.float64))
    gamma = layer.decay().detach()
    torch.testing.assert_close(gamma.abs(), torch.exp(-layer.alpha.detach()).unsqueeze(1).expand(5, 3))
    m = 5

    def step(S, x):
        pre, gi, go, skip = layer.proj(x).split([m, m, H, H], dim=-1)
        S = gamma * S + (pre * torch.sigmoid(gi)).unsqueeze(-1).to(gamma.dtype)
        z = layer.norm(layer.mix(torch.view_as_real(S).reshape(x.shape[0], -1)))
        g = torch.sigmoid(go)
        return z * g + skip * (1 - g), S

    x, starts = inputs(4), some_starts()
    with torch.no_grad():
        out, final = torso(x, torso.initial_state(B, dtype=torch.float64), starts)
        ref, ref_final = run_reference(step, torch.zeros(B, 5, 3, dtype=torch.complex128), x, starts)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(final, torch.view_as_real(ref_final).reshape(B, -1))


def test_mingru_convolution_feeds_the_gates_and_candidates():
    torso = make("mingru")  # conv_kernel = 4
    layer = torso.layers[0]
    assert torso.state_size == H + 3 * 2 * H

    def step(state, x):  # state: [h | the last 3 projected inputs, oldest first]
        h, history = state[:, :H], state[:, H:].reshape(-1, 3, 2 * H)
        window = torch.cat([history, layer.proj(x).unsqueeze(1)], dim=1)  # (B, 4, 2H)
        conv = layer.conv.bias + sum(layer.conv.weight[lag] * window[:, 3 - lag] for lag in range(4))
        gate, cand = conv.chunk(2, dim=-1)
        z = torch.sigmoid(gate)
        h = (1 - z) * h + z * torch.where(cand >= 0, cand + 0.5, torch.sigmoid(cand))
        return h, torch.cat([h, window[:, 1:].reshape(x.shape[0], -1)], dim=1)

    x, starts = inputs(2), some_starts()
    with torch.no_grad():
        out, final = torso(x, torso.initial_state(B, dtype=torch.float64), starts)
        ref, ref_final = run_reference(step, torch.zeros(B, torso.state_size, dtype=torch.float64), x, starts)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(final, ref_final)


@pytest.mark.parametrize("name", ["mingru", "lru", "s5", "mamba", "ffm"])
def test_unknown_option_names_the_options(name):
    with pytest.raises(TorsoError, match="unknown options \\['hiden'\\]; its options are"):
        TORSOS[name](F_IN, H, hiden=3)


@pytest.mark.parametrize(("width", "head_dim"), [(64, 16), (8, 8), (24, 8), (7, 1)])
def test_mamba_default_head_dim_divides_any_width(width, head_dim):
    """A drop-in memory works at any lstm_hidden_size (sb3-contrib's own tests use 8)."""
    layer = TORSOS["mamba"](3, width).layers[0]
    assert layer.head_dim == head_dim and layer.heads * head_dim == width
    with pytest.raises(TorsoError, match="divisible by head_dim"):
        TORSOS["mamba"](3, width, head_dim=5 if width % 5 else 3)
