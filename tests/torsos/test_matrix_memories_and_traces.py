"""The mlstm, linear_attention, shm and rtu torsos against their papers' equations, written out step by step.

The contract suite (tests/torsos/test_contract.py) checks that each torso agrees with itself (sequence vs steps,
resets, ...); these tests check that what it computes is the model of its source.
"""

import math

import pytest
import torch
from torch.nn import functional as F

from dream_rl import TORSOS, TorsoError
from dream_rl.torsos.linear_attention import linear_attention_chunked
from dream_rl.torsos.mlstm import mlstm_chunked

T, B, F_IN = 11, 3, 5


def inputs(seed: int = 0, steps: int = T, batch: int = B, width: int = F_IN) -> torch.Tensor:
    return torch.randn(steps, batch, width, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def some_starts(steps: int = T, batch: int = B) -> torch.Tensor:
    starts = torch.zeros(steps, batch, dtype=torch.bool)
    starts[0, 1] = starts[3, 0] = starts[4, 0] = starts[7, 2] = starts[8, 1] = True
    return starts


def causal_conv_reference(conv, x, starts):
    """Mamba's and xLSTM's short convolution written out: y_t = bias + Σ_l w_l x_{t-l}, with the inputs
    before an episode's start left out (zeros)."""
    ys = []
    for t in range(x.shape[0]):
        y = conv.bias.expand(x.shape[1], -1).clone()
        for b in range(x.shape[1]):
            for lag in range(conv.kernel_size):
                if t - lag < 0:
                    break
                y[b] = y[b] + conv.weight[lag] * x[t - lag, b]
                if starts[t - lag, b]:
                    break  # x_{t-lag} opens the episode: nothing earlier
        ys.append(y)
    return torch.stack(ys)


# ---------------------------------------------------------------- mLSTM


def mlstm_reference(layer, x, starts):
    """xLSTM's mLSTM cell without a stabiliser (C̄, n̄ unscaled; fine for moderate gates in float64), in
    xLSTM's block: q and k from the convolved, SiLU-activated branch, whose query half is also added to
    the normed output through the learnable skip."""
    heads, d = layer.heads, layer.head_dim
    C = torch.zeros(x.shape[1], heads, d, d, dtype=x.dtype)
    n = torch.zeros(x.shape[1], heads, d, dtype=x.dtype)
    W, H = layer.proj.weight, layer.hidden_size  # rows [q, k, v, o, ĩ, f̃]; bias on [o, ĩ, f̃]
    qk_branch = F.silu(causal_conv_reference(layer.conv, x @ W[: 2 * H].T, starts))  # (T, B, 2H)
    outs = []
    for t in range(x.shape[0]):
        keep = (~starts[t]).to(x.dtype).reshape(-1, 1, 1)
        C, n = C * keep.unsqueeze(-1), n * keep
        q, k = qk_branch[t].reshape(-1, 2, heads, d).unbind(1)
        v = (x[t] @ W[2 * H : 3 * H].T).reshape(-1, heads, d)
        k = k / math.sqrt(d)
        o_pre, i_pre, f_pre = (x[t] @ W[3 * H :].T + layer.gate_bias).split([H, heads, heads], dim=-1)
        i_gate, f_gate = torch.exp(i_pre), torch.sigmoid(f_pre)
        C = f_gate[..., None, None] * C + i_gate[..., None, None] * (v.unsqueeze(-1) * k.unsqueeze(-2))
        n = f_gate[..., None] * n + i_gate[..., None] * k
        h = (C @ q.unsqueeze(-1)).squeeze(-1) / torch.clamp((n * q).sum(-1, keepdim=True).abs(), min=1.0)
        h = F.layer_norm(h, (d,)).reshape(x.shape[1], -1) * layer.norm_weight
        outs.append(torch.sigmoid(o_pre) * (h + layer.skip * qk_branch[t, :, :H]))
    return torch.stack(outs), C, n


@pytest.mark.parametrize("chunk", [1, 3, 4, 16])
def test_mlstm_is_the_paper_cell_with_its_stabiliser_in_the_state(chunk):
    """xLSTM's mLSTM cell, and its initialisation: gate weights zero, forget biases over [3, 6]."""
    torch.manual_seed(0)
    torso = TORSOS["mlstm"](F_IN, 8, head_dim=4, chunk=chunk).double()
    layer = torso.layers[0]
    assert not layer.proj.weight[32:].any() and layer.gate_bias[10:].tolist() == [3.0, 6.0]
    with torch.no_grad():
        layer.proj.weight[32:].normal_(0.0, 0.5)  # input-dependent ĩ, f̃: exponents of either sign
    x, starts = inputs(), some_starts()
    out, state = torso(x, torso.initial_state(B, dtype=torch.float64), starts)
    expected, C, n = mlstm_reference(layer, x, starts)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-10)
    # the stabiliser is detached; the gradients are still the cell's exact ones
    weights = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    params = list(torso.parameters())
    grads = torch.autograd.grad((out * weights).sum(), params)
    expected_grads = torch.autograd.grad((expected * weights).sum(), params)
    for name_param, got, want in zip(torso.named_parameters(), grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10, msg=name_param[0])
    out, state, expected, C, n = out.detach(), state.detach(), expected.detach(), C.detach(), n.detach()
    # the flat state holds [C | n] / e^m and m, with m the recurrence's stabiliser
    memory = state[:, : layer.memory_size].reshape(B, 2, 4, 5)  # (B, heads, d_k, d_v + 1)
    m = state[:, layer.memory_size : layer.memory_size + 2]
    scale = torch.exp(m)[..., None, None]
    torch.testing.assert_close(memory[..., :4] * scale, C.transpose(-1, -2), rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(memory[..., 4] * scale[..., 0], n, rtol=1e-9, atol=1e-10)
    m_ref = torch.zeros(B, 2, dtype=torch.float64)
    with torch.no_grad():
        for t in range(T):
            m_ref = torch.where(starts[t].reshape(-1, 1), 0.0, m_ref)
            i_pre, f_pre = (x[t] @ layer.proj.weight[24:].T + layer.gate_bias)[:, 8:].split([2, 2], dim=-1)
            m_ref = torch.maximum(F.logsigmoid(f_pre) + m_ref, i_pre)
    torch.testing.assert_close(m, m_ref, rtol=1e-12, atol=1e-12)


def test_mlstm_large_input_gates_stay_finite_in_float32():
    """exp(ĩ) with ĩ = 200 overflows float32; the stabilised forms (sequence and step) do not."""
    torch.manual_seed(0)
    torso = TORSOS["mlstm"](F_IN, 8, head_dim=4, chunk=4)
    with torch.no_grad():
        torso.layers[0].gate_bias[8:10] = 200.0  # ĩ of both heads
    x = inputs().float()
    state = torso.initial_state(B)
    out, final = torso(x, state)
    steps, step_state = [], state
    for t in range(T):
        step_out, step_state = torso(x[t : t + 1], step_state)
        steps.append(step_out)
    assert torch.isfinite(out).all() and torch.isfinite(final).all()
    # float32: the chunked and the step forms sum in different orders, and the per-head norm rescales
    torch.testing.assert_close(out, torch.cat(steps), rtol=1e-4, atol=5e-5)
    torch.testing.assert_close(final, step_state, rtol=1e-4, atol=1e-4)
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in torso.parameters())


def test_mlstm_chunked_kernel_pads_without_changing_the_state():
    generator = torch.Generator().manual_seed(3)
    q, k = (torch.randn(7, 2, 1, 3, dtype=torch.float64, generator=generator) for _ in range(2))
    v = torch.randn(7, 2, 1, 4, dtype=torch.float64, generator=generator)
    log_f = F.logsigmoid(torch.randn(7, 2, 1, dtype=torch.float64, generator=generator))
    log_i = torch.randn(7, 2, 1, dtype=torch.float64, generator=generator)
    c0, m0 = torch.zeros(2, 1, 3, 4, dtype=torch.float64), torch.zeros(2, 1, dtype=torch.float64)
    results = [mlstm_chunked(q, k, v, log_f, log_i, c0, m0, None, chunk) for chunk in (1, 2, 3, 7, 50)]
    for out, m, state, m_state in results[1:]:
        torch.testing.assert_close(out, results[0][0], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(m, results[0][1], rtol=0, atol=1e-12)
        torch.testing.assert_close(state, results[0][2], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(m_state, results[0][3], rtol=0, atol=1e-12)


# ---------------------------------------------------------------- linear attention


@pytest.mark.parametrize("chunk, feed_forward", [(1, False), (3, True), (4, False), (11, False), (64, True)])
def test_linear_attention_is_kernelised_causal_attention_within_episodes(chunk, feed_forward):
    """Katharopoulos et al.: y_t = Σ_s φ(q_t)·φ(k_s) v_s / (Σ_s φ(q_t)·φ(k_s) + ε) over the episode so far,
    q and k from the short convolution (whose query half is added through the skip), then (POPGym's
    block) the optional feed-forward and the linear shortcut."""
    torch.manual_seed(0)
    torso = TORSOS["linear_attention"](F_IN, 8, head_dim=4, chunk=chunk, feed_forward=feed_forward).double()
    layer = torso.layers[0]
    x, starts = inputs(), some_starts()
    with torch.no_grad():
        out, _ = torso(x, torso.initial_state(B, dtype=torch.float64), starts)
        qk = causal_conv_reference(layer.conv, layer.qkv(x)[..., :16], starts)  # the short convolution of [q | k]
        q, k = (F.elu(qk) + 1).reshape(T, B, 2, 2, 4).unbind(2)  # heads of 4
        v = layer.qkv(x)[..., 16:].reshape(T, B, 2, 4)
        expected = torch.zeros(T, B, 2, 4, dtype=torch.float64)
        for b in range(B):
            episode_start = 0
            for t in range(T):
                if starts[t, b]:
                    episode_start = t
                sim = (q[t, b].unsqueeze(0) * k[episode_start : t + 1, b]).sum(-1)  # (steps, heads)
                num = (sim.unsqueeze(-1) * v[episode_start : t + 1, b]).sum(0)
                expected[t, b] = num / (sim.sum(0).unsqueeze(-1) + 1e-6)
        expected = expected.reshape(T, B, 8) + layer.skip * qk[..., :8]
        if feed_forward:
            expected = layer.feed_forward(expected)
        expected = expected + layer.shortcut(x)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-10)


def test_linear_attention_kernel_carries_the_entering_state():
    generator = torch.Generator().manual_seed(1)
    q, k = (torch.rand(6, 2, 1, 3, dtype=torch.float64, generator=generator) for _ in range(2))
    v = torch.randn(6, 2, 1, 2, dtype=torch.float64, generator=generator)
    s0 = torch.randn(2, 1, 3, 2, dtype=torch.float64, generator=generator)
    state, outs = s0, []
    for t in range(6):
        state = state + k[t].unsqueeze(-1) * v[t].unsqueeze(-2)
        outs.append((q[t].unsqueeze(-2) @ state).squeeze(-2))
    for chunk in (1, 4, 6):
        out, last = linear_attention_chunked(q, k, v, s0, None, chunk)
        torch.testing.assert_close(out, torch.stack(outs), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(last, state, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- SHM


def test_shm_is_the_hadamard_memory_with_theta_drawn_by_the_episode_step():
    torch.manual_seed(0)
    d = 4
    torso = TORSOS["shm"](F_IN, 8, memory_size=d, num_thetas=8).double()
    layer = torso.layers[0]
    x, starts = inputs(), some_starts()
    with torch.no_grad():
        out, state = torso(x, torso.initial_state(B, dtype=torch.float64), starts)
        M = torch.zeros(B, d, d, dtype=torch.float64)
        tau = torch.zeros(B, dtype=torch.long)
        projected = causal_conv_reference(layer.conv, layer.proj(x), starts)
        expected = []
        for t in range(T):
            M = torch.where(starts[t].reshape(-1, 1, 1), 0.0, M)
            tau = torch.where(starts[t], 0, tau)
            v, k, q, v_c, eta = projected[t].split([d, d, d, d, 1], dim=-1)
            k, q = F.relu(k), F.relu(q)
            k, q = k / (k.sum(-1, keepdim=True) + 1e-5), q / (q.sum(-1, keepdim=True) + 1e-5)
            theta = layer.calibration_vectors(tau)  # (B, d): ±Θ[i], drawn by the episode step
            C = 1 + torch.tanh(theta.unsqueeze(-1) * v_c.unsqueeze(-2))
            M = M * C + torch.sigmoid(eta).unsqueeze(-1) * v.unsqueeze(-1) * k.unsqueeze(-2)
            expected.append(layer.out((M @ q.unsqueeze(-1)).squeeze(-1) + layer.skip * v))
            tau = tau + 1
    torch.testing.assert_close(out, torch.stack(expected), rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(state[:, : d * d].reshape(B, d, d), M, rtol=1e-9, atol=1e-10)
    assert state[:, -1].tolist() == tau.double().tolist()  # the episode step, exactly


def test_shm_same_function_in_train_and_eval_mode_and_after_reload():
    torch.manual_seed(0)
    torso = TORSOS["shm"](F_IN, 8, memory_size=4, num_thetas=8).double()
    x = inputs()
    state = torso.initial_state(B, dtype=torch.float64)
    with torch.no_grad():
        train_out, _ = torso.train()(x, state)
        eval_out, _ = torso.eval()(x, state)
        torch.manual_seed(123)  # no hidden randomness: another global seed changes nothing
        again, _ = torso(x, state)
        torch.manual_seed(1)
        copy = TORSOS["shm"](F_IN, 8, memory_size=4, num_thetas=8).double()
        assert not torch.equal(copy.layers[0].draw_key, torso.layers[0].draw_key)
        copy.load_state_dict(torso.state_dict())  # the draws' key is saved with the model
        reloaded, _ = copy(x, state)
    assert torch.equal(train_out, eval_out) and torch.equal(train_out, again) and torch.equal(train_out, reloaded)


def test_shm_corrupt_step_counter_stays_in_bounds():
    torso = TORSOS["shm"](F_IN, 8, memory_size=4, num_thetas=8).double()
    state = torso.initial_state(B, dtype=torch.float64)
    state[:, -1] = torch.tensor([float("nan"), -7.0, 1e30], dtype=torch.float64)
    with torch.no_grad():
        out, new_state = torso(inputs(), state)
    assert torch.isfinite(out).all()
    assert ((new_state[:, -1] >= 0) & (new_state[:, -1] < 2**24)).all()


# ---------------------------------------------------------------- RTU


def test_rtu_is_the_linear_trace_unit_in_rotation_form():
    torch.manual_seed(0)
    torso = TORSOS["rtu"](F_IN, 8).double()
    layer = torso.layers[0]
    x, starts = inputs(), some_starts()
    with torch.no_grad():
        out, state = torso(x, torso.initial_state(B, dtype=torch.float64), starts)
        r = torch.exp(-torch.exp(layer.nu_log))
        theta = torch.exp(layer.theta_log)
        g, phi, gamma = r * torch.cos(theta), r * torch.sin(theta), torch.sqrt(1 - r**2)
        c1 = c2 = torch.zeros(B, 4, dtype=torch.float64)
        expected = []
        for t in range(T):
            c1 = torch.where(starts[t].reshape(-1, 1), 0.0, c1)
            c2 = torch.where(starts[t].reshape(-1, 1), 0.0, c2)
            c1, c2 = (
                g * c1 - phi * c2 + gamma * (x[t] @ layer.w_real.T),
                g * c2 + phi * c1 + gamma * (x[t] @ layer.w_imag.T),
            )
            expected.append(torch.relu(torch.stack([c1, c2], dim=-1).reshape(B, 8)))  # (c¹_j, c²_j) interleaved
    assert (r < 1).all()
    torch.testing.assert_close(out, torch.stack(expected), rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(state, torch.stack([c1, c2], dim=-1).reshape(B, 8), rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------- options


@pytest.mark.parametrize(
    "name, kwargs, hidden, message",
    [
        ("rtu", {}, 7, "even hidden_size"),
        ("rtu", {"activation": "gelu"}, 8, "activation"),
        ("mlstm", {"head_dim": 3}, 8, "divisible by head_dim"),
        ("linear_attention", {"head_dim": 5}, 8, "divisible by head_dim"),
        ("shm", {"memory_size": 0}, 8, "memory_size"),
    ],
)
def test_bad_options_name_the_problem(name, kwargs, hidden, message):
    with pytest.raises(TorsoError, match=message):
        TORSOS[name](F_IN, hidden, **kwargs)


@pytest.mark.parametrize("name, state_size", [("mlstm", 1476), ("linear_attention", 1472), ("shm", 452), ("rtu", 64)])
def test_documented_state_size_at_width_64(name, state_size):
    assert TORSOS[name](8, 64).state_size == state_size
    assert TORSOS[name](8, 64, num_layers=2).state_size == 2 * state_size


@pytest.mark.parametrize("name", ["mlstm", "linear_attention"])
def test_long_float32_sequence_agrees_with_the_steps(name):
    """The chunked forms sum log gates over whole sequences: over 256 float32 steps they still match
    the step recurrence to float32 rounding."""
    torch.manual_seed(0)
    torso = TORSOS[name](F_IN, 16, head_dim=8)
    if name == "mlstm":
        with torch.no_grad():
            torso.layers[0].proj.weight[64:].normal_(0.0, 0.3)
            torso.layers[0].gate_bias[18:] = 0.0  # forget gates near 1/2: Σ log f reaches about -180
    x = inputs(steps=256).float()
    state = torso.initial_state(B)
    with torch.no_grad():
        out, final = torso(x, state)
        steps, step_state = [], state
        for t in range(256):
            step_out, step_state = torso(x[t : t + 1], step_state)
            steps.append(step_out)
    torch.testing.assert_close(out, torch.cat(steps), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(final, step_state, rtol=1e-4, atol=1e-4)
