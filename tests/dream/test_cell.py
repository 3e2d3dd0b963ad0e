"""DREAMCell: the equations of docs/dream-cell.md and every invariant listed there."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dream_rl import DREAMCell, DREAMConfig, DREAMError, DREAMState, StepInternals

FIELDS = ["h", "U", "U_target", "adaptive_tau", "error_mean", "error_var", "avg_surprise"]
SMALL = dict(input_dim=3, hidden_dim=6, rank=2)


def make_cell(dtype=torch.float64, seed=0, **overrides) -> DREAMCell:
    torch.manual_seed(seed)
    return DREAMCell(DREAMConfig(**{**SMALL, **overrides})).to(dtype)


def random_state(cell: DREAMCell, batch: int, seed: int = 0) -> DREAMState:
    """A state far from the initial one (every field non-trivial), valid for the cell's dynamics."""
    cfg = cell.config
    g = torch.Generator().manual_seed(seed)
    dtype = cell.weight_in.dtype
    H, r, I = cfg.hidden_dim, cfg.rank, cfg.input_dim

    def rnd(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    def uni(*shape):
        return torch.rand(*shape, generator=g, dtype=dtype)

    return DREAMState(
        h=2 * uni(batch, H) - 1,
        U=0.5 * rnd(batch, H, r),
        U_target=0.5 * rnd(batch, H, r),
        adaptive_tau=uni(batch),
        error_mean=0.3 * rnd(batch, I),
        error_var=torch.exp(2.0 * rnd(batch, I)),  # spans tiny to large: both entropy clamps are hit
        avg_surprise=uni(batch),  # some samples above, some below min_surprise_for_sleep
    )


def assert_states_close(a: DREAMState, b: DREAMState, **tol) -> None:
    for name in FIELDS:
        torch.testing.assert_close(getattr(a, name), getattr(b, name), **tol, msg=lambda m, n=name: f"{n}: {m}")


def assert_states_equal(a: DREAMState, b: DREAMState) -> None:
    for name in FIELDS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name


# ---------------------------------------------------------------------------- reference equations
def reference_step(cell: DREAMCell, x: torch.Tensor, state: DREAMState):
    """docs/dream-cell.md steps 1-11 written out per sample with plain vector algebra, independently
    of the cell's batched code, using the choices the cell's docstring records (the drive reads the
    updated fast weights; z = sqrt(q + 1e-12); entropy of mean(error_var) + eps; norm floored)."""
    cfg = cell.config
    dt, eps = cfg.time_step, 1e-6
    Bw, Rw, Ww, Cw = cell.weight_in, cell.weight_rec, cell.weight_err, cell.weight_pred
    b, eta, V = cell.bias, cell.plasticity, cell.sensory_filter
    tau_sys, s_scale = torch.exp(cell.log_tau_sys), torch.exp(cell.log_surprise_scale)[0]
    outs, new = [], {name: [] for name in FIELDS}
    internals = []
    for i in range(x.shape[0]):
        xi = x[i]
        h, U, Ut = state.h[i], state.U[i], state.U_target[i]
        tau, m, v, avg = state.adaptive_tau[i], state.error_mean[i], state.error_var[i], state.avg_surprise[i]
        x_hat = Cw @ h + V @ (U.T @ h)  # 1
        e = xi - x_hat
        q = torch.mean((e - m) ** 2 / (v + eps))  # 2
        z = torch.sqrt(q + 1e-12)
        n = z / (1 + z)
        He = torch.clamp(0.5 * torch.log(2 * math.pi * math.e * (torch.mean(v) + eps)), 0.0, 2.0)  # 3
        threshold = tau * (1 + cfg.entropy_influence * He)  # 4
        S = 1.0 / (1.0 + torch.exp(-(n - threshold) / cfg.surprise_temperature))  # 5
        U_p = U + dt * (-cfg.forgetting_rate * (U - Ut) + torch.outer(eta * S * h, V.T @ e))  # 6
        norm = torch.linalg.norm(U_p)  # 7 (Frobenius)
        rho = torch.clamp(cfg.target_norm / torch.clamp(norm, min=1e-6), max=1.0)
        U_new = U_p * (1 - cfg.kappa * (1 - rho))
        u = Bw @ xi + Rw @ h + Ww @ (S * e) + U_new @ (V.T @ xi) + b  # 8
        h_star = torch.tanh(u)
        if cfg.ltc_enabled:  # 9
            tau_eff = torch.clamp(tau_sys / (1 + s_scale * S), 0.01, 100.0)
            a = dt / (tau_eff + dt)
            h_new = (1 - a) * h + a * h_star
            tau_mean = tau_eff.mean()
        else:
            h_new, tau_mean = h_star, torch.zeros_like(S)
        beta, beta_s = cfg.error_smoothing, cfg.surprise_smoothing  # 10
        m_new = (1 - beta) * m + beta * e
        v_new = (1 - beta) * v + beta * (e - m) ** 2
        tau_new = (1 - beta) * tau + beta * n
        avg_new = (1 - beta_s) * avg + beta_s * S
        asleep = 1.0 if avg_new < cfg.min_surprise_for_sleep else 0.0  # 11
        Ut_new = Ut + cfg.sleep_rate * asleep * (U_new - Ut)
        outs.append(h_new)
        for name, value in zip(FIELDS, (h_new, U_new, Ut_new, tau_new, m_new, v_new, avg_new)):
            new[name].append(value)
        internals.append((S, tau_mean, torch.linalg.norm(U_new)))
    state_new = DREAMState(*(torch.stack(new[name]) for name in FIELDS))
    return torch.stack(outs), state_new, StepInternals(*(torch.stack(col) for col in zip(*internals)))


REFERENCE_CASES = {
    "defaults": {},
    "hard_projection": dict(kappa=1.0, target_norm=0.3, base_plasticity=3.0),  # ρ < 1 binds
    "half_projection": dict(kappa=0.5, target_norm=0.5),
    "ltc_disabled": dict(ltc_enabled=False),
    "tau_clamped_high": dict(ltc_tau_sys=1e4, ltc_surprise_scale=0.01),  # τ_eff clamped at 100
    "tau_clamped_low": dict(ltc_tau_sys=1e-3),  # τ_eff clamped at 0.01
    "rank_above_input": dict(input_dim=2, hidden_dim=6, rank=4),  # V with orthonormal rows
    "sharp_gate_no_sleep": dict(surprise_temperature=0.02, min_surprise_for_sleep=0.0, entropy_influence=0.5),
}


@pytest.mark.parametrize("case", list(REFERENCE_CASES))
def test_step_matches_the_equations(case):
    cell = make_cell(**REFERENCE_CASES[case])
    B = 8
    state = random_state(cell, B, seed=1)
    state.error_var[0] = 1e-3  # entropy clamped at 0
    state.error_var[1] = 100.0  # entropy clamped at 2
    state.avg_surprise[2] = 0.05  # asleep: consolidation
    state.avg_surprise[3] = 0.9  # awake
    # just around min_surprise_for_sleep: this step's surprise decides (the mask uses the updated average)
    state.avg_surprise[4:] = cell.config.min_surprise_for_sleep + torch.tensor([-2e-3, -1e-4, 1e-4, 2e-3])
    g = torch.Generator().manual_seed(2)
    x = 2.0 * torch.randn(B, cell.config.input_dim, generator=g, dtype=torch.float64)
    x[4:6] *= 5.0  # surprising: pushes the average up across the threshold
    x[6:] = 0.0
    with torch.no_grad():
        h, new_state, internals = cell.step(x, state)
        h_ref, state_ref, internals_ref = reference_step(cell, x, state)
    tol = dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h, h_ref, **tol)
    assert_states_close(new_state, state_ref, **tol)
    for got, want in zip(internals, internals_ref):
        torch.testing.assert_close(got, want, **tol)
    if case == "hard_projection":  # the case exercises the projection
        assert (new_state.U.flatten(1).norm(dim=1) > 0.3 * (1 - 1e-9)).any()
    if case == "defaults":  # the case exercises a sleep decision that differs between old and new average
        threshold = cell.config.min_surprise_for_sleep
        assert ((state.avg_surprise < threshold) != (new_state.avg_surprise < threshold)).any()


def test_reference_agrees_over_a_sequence_from_the_initial_state():
    cell = make_cell(base_plasticity=1.0)
    state = cell.init_state(3)
    ref_state = state
    x = torch.randn(3, 12, 3, dtype=torch.float64)
    with torch.no_grad():
        out, state = cell.forward_sequence(x, state)
        for t in range(12):
            h_ref, ref_state, _ = reference_step(cell, x[:, t], ref_state)
            torch.testing.assert_close(out[:, t], h_ref, rtol=1e-10, atol=1e-12)
    assert_states_close(state, ref_state, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------- parameters and init
def test_parameters_buffers_and_initialisation():
    cfg = DREAMConfig(input_dim=5, hidden_dim=8, rank=3, base_plasticity=0.15, ltc_tau_sys=12.0, ltc_surprise_scale=7.0)
    cell = DREAMCell(cfg)
    shapes = {name: tuple(p.shape) for name, p in cell.named_parameters()}
    assert shapes == {
        "weight_in": (8, 5), "weight_rec": (8, 8), "weight_err": (8, 5), "weight_pred": (5, 8),
        "bias": (8,), "plasticity": (8,), "log_tau_sys": (8,), "log_surprise_scale": (1,),
    }
    assert dict(cell.named_buffers())["sensory_filter"].shape == (5, 3)
    assert "sensory_filter" not in shapes  # V is fixed, not learned
    assert torch.equal(cell.bias, torch.zeros(8))
    assert torch.equal(cell.plasticity, torch.full((8,), 0.15))
    torch.testing.assert_close(cell.log_tau_sys.exp(), torch.full((8,), 12.0))
    torch.testing.assert_close(cell.log_surprise_scale.exp(), torch.tensor([7.0]))
    for w in (cell.weight_in, cell.weight_err, cell.weight_pred):  # Xavier uniform bound
        assert w.abs().max() <= math.sqrt(6.0 / (5 + 8)) + 1e-7
    R = cell.weight_rec  # orthogonal with small gain (0.5): R Rᵀ = 0.25 I
    torch.testing.assert_close(R @ R.T, 0.25 * torch.eye(8), atol=1e-5, rtol=0)
    V = cell.sensory_filter  # orthonormal columns (r <= I)
    torch.testing.assert_close(V.T @ V, torch.eye(3), atol=1e-5, rtol=0)
    V_wide = DREAMCell(DREAMConfig(input_dim=2, hidden_dim=8, rank=4)).sensory_filter  # r > I: rows
    torch.testing.assert_close(V_wide @ V_wide.T, torch.eye(2), atol=1e-5, rtol=0)


def test_reset_parameters_redraws_and_restores():
    cell = make_cell(dtype=torch.float32)
    before = {name: t.detach().clone() for name, t in cell.state_dict().items()}
    with torch.no_grad():
        cell.plasticity.fill_(-3.0)
        cell.bias.fill_(1.0)
        cell.log_tau_sys.zero_()
    cell.reset_parameters()
    after = {name: t.detach().clone() for name, t in cell.state_dict().items()}
    for name in ("weight_in", "weight_rec", "weight_err", "weight_pred", "sensory_filter"):
        assert not torch.equal(before[name], after[name]), f"{name} was not redrawn"
    for name in ("bias", "plasticity", "log_tau_sys", "log_surprise_scale"):
        assert torch.equal(before[name], after[name]), f"{name} was not restored to its initial value"
    # the seed idiom
    cell.apply(lambda m: m.reset_parameters() if hasattr(m, "reset_parameters") else None)
    assert not torch.equal(after["weight_in"], cell.weight_in)


# ---------------------------------------------------------------------------- shapes and API
def test_forward_and_sequence_shapes():
    cell = make_cell(dtype=torch.float32)
    state = cell.init_state(4)
    out, new_state = cell(torch.randn(4, 3), state)
    assert out.shape == (4, 6) and isinstance(new_state, DREAMState)
    assert new_state.shape() == state.shape()
    seq, final = cell.forward_sequence(torch.randn(4, 7, 3), state)
    assert seq.shape == (4, 7, 6) and final.shape() == state.shape()
    last, final_last = cell.forward_sequence(torch.randn(4, 7, 3), state, return_all=False)
    assert last.shape == (4, 6)


def test_return_all_false_returns_the_last_output():
    cell = make_cell()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    seq, s1 = cell.forward_sequence(x, cell.init_state(2))
    last, s2 = cell.forward_sequence(x, cell.init_state(2), return_all=False)
    assert torch.equal(last, seq[:, -1])
    assert_states_equal(s1, s2)


def test_output_is_the_new_hidden_state():
    cell = make_cell()
    out, state = cell(torch.randn(3, 3, dtype=torch.float64), random_state(cell, 3))
    assert torch.equal(out, state.h)
    seq, state = cell.forward_sequence(torch.randn(3, 4, 3, dtype=torch.float64), state)
    assert torch.equal(seq[:, -1], state.h)


def test_forward_does_not_modify_its_input_state():
    cell = make_cell()
    state = random_state(cell, 2)
    copy = DREAMState(*(getattr(state, n).clone() for n in FIELDS))
    cell(torch.randn(2, 3, dtype=torch.float64), state)
    cell.forward_sequence(torch.randn(2, 4, 3, dtype=torch.float64), state)
    assert_states_equal(state, copy)


# ---------------------------------------------------------------------------- invariants
@pytest.mark.parametrize("path", ["forward_sequence", "forward", "with_internals"])
def test_batch_independence(path):
    cell = make_cell(base_plasticity=1.0)
    B, T, j = 4, 6, 2
    g = torch.Generator().manual_seed(5)
    x = torch.randn(B, T, 3, generator=g, dtype=torch.float64)
    state = random_state(cell, B, seed=3)
    x2 = x.clone()
    x2[j] = 10.0 * torch.randn(T, 3, generator=g, dtype=torch.float64)  # perturb sample j only
    state2 = DREAMState(*(getattr(state, n).clone() for n in FIELDS))
    for name in FIELDS:  # and its state
        getattr(state2, name)[j] = getattr(random_state(cell, B, seed=9), name)[j]

    def run(inputs, s):
        if path == "forward_sequence":
            return cell.forward_sequence(inputs, s)
        if path == "with_internals":
            out, s, _ = cell.forward_sequence_with_internals(inputs, s)
            return out, s
        outs = []
        for t in range(T):
            h, s = cell(inputs[:, t], s)
            outs.append(h)
        return torch.stack(outs, 1), s

    out1, s1 = run(x, state)
    out2, s2 = run(x2, state2)
    others = [i for i in range(B) if i != j]
    assert torch.equal(out1[others], out2[others])
    assert not torch.equal(out1[j], out2[j])
    for name in FIELDS:
        assert torch.equal(getattr(s1, name)[others], getattr(s2, name)[others]), name


def test_batch_independence_of_batch_size():
    """A sample's trajectory does not depend on which or how many other samples share the batch."""
    cell = make_cell()
    x = torch.randn(5, 6, 3, dtype=torch.float64)
    out, state = cell.forward_sequence(x, cell.init_state(5))
    for i in (0, 3):
        out_i, state_i = cell.forward_sequence(x[i:i + 1], cell.init_state(1))
        torch.testing.assert_close(out_i[0], out[i], rtol=1e-12, atol=1e-14)
        for name in FIELDS:
            torch.testing.assert_close(getattr(state_i, name)[0], getattr(state, name)[i], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("overrides", [{}, dict(ltc_enabled=False), dict(kappa=1.0, target_norm=0.2, base_plasticity=2.0)])
def test_forward_sequence_equals_repeated_forward(overrides):
    cell = make_cell(**overrides)
    T = 15
    x = torch.randn(3, T, 3, dtype=torch.float64)
    state0 = random_state(cell, 3, seed=4)
    out, final = cell.forward_sequence(x, state0)
    state, outs = state0, []
    for t in range(T):
        h, state = cell(x[:, t], state)
        outs.append(h)
    torch.testing.assert_close(out, torch.stack(outs, 1), rtol=1e-10, atol=1e-12)
    assert_states_close(final, state, rtol=1e-10, atol=1e-12)
    # the monitoring path computes the same function
    out_i, final_i, _ = cell.forward_sequence_with_internals(x, state0)
    torch.testing.assert_close(out_i, out, rtol=1e-10, atol=1e-12)
    assert_states_close(final_i, final, rtol=1e-10, atol=1e-12)


def test_forward_sequence_in_chunks_continues_the_sequence():
    cell = make_cell()
    x = torch.randn(2, 10, 3, dtype=torch.float64)
    out, final = cell.forward_sequence(x, cell.init_state(2))
    out_a, mid = cell.forward_sequence(x[:, :4], cell.init_state(2))
    out_b, end = cell.forward_sequence(x[:, 4:], mid.detach())
    torch.testing.assert_close(torch.cat([out_a, out_b], 1), out, rtol=1e-12, atol=1e-14)
    assert_states_close(end, final, rtol=1e-12, atol=1e-14)


def test_train_and_eval_modes_compute_the_same_function():
    cell = make_cell(dtype=torch.float32)
    x = torch.randn(3, 8, 3)
    state = cell.init_state(3)
    cell.train()
    out_train, s_train = cell.forward_sequence(x, state)
    h_train, _ = cell(x[:, 0], state)
    cell.eval()
    out_eval, s_eval = cell.forward_sequence(x, state)
    h_eval, _ = cell(x[:, 0], state)
    assert torch.equal(out_train, out_eval) and torch.equal(h_train, h_eval)
    assert_states_equal(s_train, s_eval)


def test_reset_of_one_sample_mid_sequence_restarts_it_exactly():
    """After resetting sample i its continuation equals a fresh run; the others continue untouched."""
    cell = make_cell()
    x = torch.randn(3, 10, 3, dtype=torch.float64)
    _, state = cell.forward_sequence(x[:, :5], cell.init_state(3))
    reset = state.reset(torch.tensor([False, True, False]), cell.config)
    initial = cell.init_state(1)
    for name in FIELDS:
        assert torch.equal(getattr(reset, name)[1], getattr(initial, name)[0]), name
        assert torch.equal(getattr(reset, name)[[0, 2]], getattr(state, name)[[0, 2]]), name
    out, _ = cell.forward_sequence(x[:, 5:], reset)
    fresh, _ = cell.forward_sequence(x[1:2, 5:], cell.init_state(1))
    torch.testing.assert_close(out[1], fresh[0], rtol=1e-12, atol=1e-14)


def _mixed_inputs(T: int, g: torch.Generator) -> torch.Tensor:
    x = torch.randn(6, T, 3, generator=g, dtype=torch.float64)
    x[1] *= 100.0  # huge
    x[2] = 0.0  # zero from a non-initial state
    x[3] = 5.0  # constant
    x[4, : T // 2] *= 0.01  # quiet then loud
    x[4, T // 2:] *= 20.0
    return x


def test_surprise_and_running_averages_stay_in_unit_interval():
    cell = make_cell(surprise_temperature=0.01)  # a sharp gate saturates: S must still stay in [0, 1]
    g = torch.Generator().manual_seed(0)
    x = _mixed_inputs(40, g)
    _, state, internals = cell.forward_sequence_with_internals(x, random_state(cell, 6, seed=2))
    S = internals.surprise
    assert S.shape == (6, 40)
    assert (S >= 0).all() and (S <= 1).all()
    assert S.max() > 0.99 and S.min() < 0.01  # both ends are reached, so the bound is exercised
    assert ((state.avg_surprise >= 0) & (state.avg_surprise <= 1)).all()
    assert ((state.adaptive_tau >= 0) & (state.adaptive_tau <= 1)).all()  # an EMA of n ∈ [0, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_weight_norm_bounded_by_target_with_kappa_one(dtype):
    target = 0.5
    cell = make_cell(dtype=dtype, kappa=1.0, target_norm=target, base_plasticity=20.0, hidden_dim=8, rank=3)
    g = torch.Generator().manual_seed(1)
    x = 5.0 * torch.randn(4, 30, 3, generator=g, dtype=dtype)
    state = random_state(cell, 4, seed=1)  # ‖U_0‖ ≈ 2.4: starts outside the ball
    # float tolerance: U_new = U'·(1 − κ(1 − ρ)) loses about log2(1/ρ) bits when ρ = target/‖U'‖ ≪ 1
    # (here ρ ≳ 0.05), so the norm lands within a few tens of ulps of target_norm
    tol = 64 * torch.finfo(dtype).eps
    largest = torch.zeros(4, dtype=dtype)
    with torch.no_grad():
        for t in range(30):
            _, state, internals = cell.step(x[:, t], state)
            norms = state.U.flatten(1).norm(dim=1)
            assert (norms <= target * (1 + tol)).all(), (t, norms / target - 1)
            torch.testing.assert_close(internals.fast_weight_norm, norms)
            largest = torch.maximum(largest, norms)
    # the bound binds: for every sample the Hebbian drive pushes U onto the sphere of radius target_norm
    torch.testing.assert_close(largest, torch.full_like(largest, target), rtol=tol, atol=0)


@pytest.mark.parametrize("overrides", [{}, dict(ltc_enabled=False), dict(ltc_tau_sys=1e-3, time_step=0.2)])
def test_hidden_state_stays_in_unit_box(overrides):
    cell = make_cell(dtype=torch.float32, **overrides)
    g = torch.Generator().manual_seed(3)
    state = random_state(cell, 6, seed=3)
    state.h[0] = 1.0  # |h_0| = 1 exactly
    state.h[1] = -1.0
    x = _mixed_inputs(30, g).float()
    out, final = cell.forward_sequence(x, state)
    assert out.abs().max() <= 1.0
    assert final.h.abs().max() <= 1.0
    assert out.abs().max() > 0.99  # large inputs saturate the tanh: the bound is approached


def _long_run_inputs(chunk: int, start: int, g: torch.Generator) -> torch.Tensor:
    """Four samples: random, constant, zero, regime-switching (alternating every 1000 steps between
    a quiet negative regime and a loud positive one). (4, chunk, 4)."""
    x = torch.zeros(4, chunk, 4)
    x[0] = torch.randn(chunk, 4, generator=g)
    x[1] = 3.0
    steps = torch.arange(start, start + chunk)
    loud = ((steps // 1000) % 2 == 1).float().unsqueeze(1)
    quiet = -2.0 + 0.1 * torch.randn(chunk, 4, generator=g)
    noisy = 2.0 + 2.0 * torch.randn(chunk, 4, generator=g)
    x[3] = loud * noisy + (1 - loud) * quiet
    return x


@pytest.mark.parametrize("steps", [pytest.param(100_000, marks=pytest.mark.slow), 10_000])
def test_long_runs_stay_finite_and_bounded(steps):
    torch.manual_seed(0)
    cfg = DREAMConfig(input_dim=4, hidden_dim=16, rank=4)
    cell = DREAMCell(cfg)
    g = torch.Generator().manual_seed(0)
    state = cell.init_state(4)
    chunk = 1000
    max_u = 0.0
    with torch.no_grad():
        for start in range(0, steps, chunk):
            x = _long_run_inputs(chunk, start, g)
            out, state = cell.forward_sequence(x, state)
            assert torch.isfinite(out).all(), start
            assert out.abs().max() <= 1.0, start
            for name in FIELDS:
                assert torch.isfinite(getattr(state, name)).all(), (start, name)
            u_norm = state.U.flatten(1).norm(dim=1)
            # κ = 0.5 halves any excess over target_norm each step; one step's Hebbian write is
            # dt·η·‖h‖·‖Vᵀe‖ ≲ 0.01·4·‖e‖, so ‖U‖ stays within a small margin of target_norm
            assert (u_norm <= 2 * cfg.target_norm).all(), (start, u_norm)
            assert (state.U_target.flatten(1).norm(dim=1) <= 2 * cfg.target_norm).all(), start
            assert ((state.avg_surprise >= 0) & (state.avg_surprise <= 1)).all(), start
            assert ((state.adaptive_tau >= 0) & (state.adaptive_tau <= 1)).all(), start
            # |x| ≲ 12 here and |x̂| ≤ ‖C‖·‖h‖ + ‖U‖: the error statistics stay in a fixed box
            assert ((state.error_var >= 0) & (state.error_var <= 1e3)).all(), start
            assert (state.error_mean.abs() <= 50).all(), start
            max_u = max(max_u, float(u_norm.max()))
    assert max_u > 0.1  # the fast weights were actually exercised


def test_regime_switch_raises_surprise_within_a_few_steps():
    torch.manual_seed(0)
    cell = DREAMCell(DREAMConfig(input_dim=4, hidden_dim=16, rank=4))
    g = torch.Generator().manual_seed(100)
    T0, T1 = 600, 3
    x = 0.2 * torch.randn(T0 + T1, 3, 4, generator=g)  # (T, B, I): one stationary regime ...
    x[T0:, 0] += 2.0  # ... then a mean shift,
    x[T0:, 1] *= 10.0  # a scale jump,
    x[T0:, 2] = -x[T0:, 2] - 1.0  # a sign flip with an offset
    state = cell.init_state(3)
    surprise = []
    with torch.no_grad():
        for x_t in x:
            _, state, internals = cell.step(x_t, state)
            surprise.append(internals.surprise)
    S = torch.stack(surprise)  # (T, B)
    before = S[T0 - 300:T0].mean(0)  # habituated average (β = 0.01: ~100-step memory)
    after = S[T0:T0 + T1]
    assert (after.max(0).values > before).all(), (before, after)
    assert (after.mean(0) > before + 0.25).all(), (before, after)  # well above chance fluctuation


# ---------------------------------------------------------------------------- internals
def test_forward_sequence_with_internals():
    cell = make_cell(dtype=torch.float32)
    x = torch.randn(4, 9, 3)
    out, state, internals = cell.forward_sequence_with_internals(x, cell.init_state(4))
    assert isinstance(internals, StepInternals)
    assert out.shape == (4, 9, 6)
    for value in internals:
        assert value.shape == (4, 9)
    assert ((internals.surprise >= 0) & (internals.surprise <= 1)).all()
    assert ((internals.tau_eff >= 0.01) & (internals.tau_eff <= 100)).all()
    torch.testing.assert_close(internals.fast_weight_norm[:, -1], state.U.flatten(1).norm(dim=1))
    # τ_eff = mean over units of clamp(τ_sys / (1 + s S)): at initialisation τ_sys = 10, s = 10
    expected_tau = (10.0 / (1.0 + 10.0 * internals.surprise)).clamp(0.01, 100.0)
    torch.testing.assert_close(internals.tau_eff, expected_tau, rtol=1e-5, atol=1e-6)


def test_internals_with_ltc_disabled_report_zero_tau():
    cell = make_cell(dtype=torch.float32, ltc_enabled=False)
    _, _, internals = cell.forward_sequence_with_internals(torch.randn(2, 4, 3), cell.init_state(2))
    assert torch.equal(internals.tau_eff, torch.zeros(2, 4))


def test_step_internals_match_sequence_internals():
    cell = make_cell()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    _, _, seq_internals = cell.forward_sequence_with_internals(x, cell.init_state(2))
    state = cell.init_state(2)
    for t in range(5):
        _, state, internals = cell.step(x[:, t], state)
        for got, want in zip(internals, seq_internals):
            assert torch.equal(got, want[:, t])


# ---------------------------------------------------------------------------- gradients
def _gradcheck_fn(cell: DREAMCell, T: int):
    names = [name for name, _ in cell.named_parameters()]

    def fn(x, h0, U0, Ut0, *params):
        overrides = dict(zip(names, params))
        state = cell.init_state(x.shape[0])
        state = DREAMState(h0, U0, Ut0, state.adaptive_tau, state.error_mean, state.error_var, state.avg_surprise)
        outputs = []
        for t in range(T):  # a few steps so gradients flow through the fast weights
            h, state = torch.func.functional_call(cell, overrides, (x[:, t], state))
            outputs.append(h)
        return (torch.stack(outputs, 1), state.U, state.U_target, state.error_var, state.adaptive_tau, state.avg_surprise)

    return fn


@pytest.mark.parametrize(
    "overrides, fast_mode",
    [
        # the full Jacobian check on the richest path: LTC on, homeostasis active (ρ < 1 throughout)
        (dict(base_plasticity=2.0, kappa=0.7, target_norm=0.05), False),
        # random-projection checks (gradcheck's fast mode) on the other paths, to keep the suite quick
        (dict(base_plasticity=0.5), True),  # ‖U‖ < target_norm: ρ = 1
        (dict(base_plasticity=0.5, ltc_enabled=False), True),
    ],
    ids=["ltc_homeostasis", "ltc", "no_ltc"],
)
def test_gradcheck_float64(overrides, fast_mode):
    cell = make_cell(input_dim=3, hidden_dim=4, rank=2, **overrides)
    B, T = 2, 3
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, T, 3, generator=g, dtype=torch.float64, requires_grad=True)
    h0 = (0.5 * torch.randn(B, 4, generator=g, dtype=torch.float64)).requires_grad_()
    U0 = (0.3 * torch.randn(B, 4, 2, generator=g, dtype=torch.float64)).requires_grad_()
    Ut0 = (0.3 * torch.randn(B, 4, 2, generator=g, dtype=torch.float64)).requires_grad_()
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    assert torch.autograd.gradcheck(_gradcheck_fn(cell, T), (x, h0, U0, Ut0, *params), fast_mode=fast_mode)


class _Sequence(nn.Module):
    def __init__(self, cell: DREAMCell) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x: torch.Tensor, state: DREAMState):
        return self.cell.forward_sequence(x, state)


@pytest.mark.parametrize(
    "overrides",
    [dict(base_plasticity=2.0, kappa=0.7, target_norm=0.05), dict(base_plasticity=0.5, ltc_enabled=False)],
    ids=["ltc_homeostasis", "no_ltc"],
)
def test_gradcheck_float64_forward_sequence(overrides):
    """The same check through forward_sequence (the whole-sequence path used in training)."""
    cell = make_cell(input_dim=3, hidden_dim=4, rank=2, **overrides)
    wrapper = _Sequence(cell)
    names = [f"cell.{name}" for name, _ in cell.named_parameters()]
    B, T = 2, 4
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, 3, generator=g, dtype=torch.float64, requires_grad=True)
    h0 = (0.5 * torch.randn(B, 4, generator=g, dtype=torch.float64)).requires_grad_()
    U0 = (0.3 * torch.randn(B, 4, 2, generator=g, dtype=torch.float64)).requires_grad_()
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]

    def fn(x, h0, U0, *params):
        init = cell.init_state(B)
        state = DREAMState(h0, U0, 0.5 * U0, init.adaptive_tau, init.error_mean, init.error_var, init.avg_surprise)
        out, final = torch.func.functional_call(wrapper, dict(zip(names, params)), (x, state))
        return (out, final.U, final.U_target, final.error_var, final.adaptive_tau, final.avg_surprise)

    assert torch.autograd.gradcheck(fn, (x, h0, U0, *params))


@pytest.mark.parametrize("ltc", [True, False])
def test_gradients_reach_every_parameter(ltc):
    cell = make_cell(dtype=torch.float32, ltc_enabled=ltc)
    x = torch.randn(3, 4, 3)
    out, state = cell.forward_sequence(x, cell.init_state(3))
    (out.pow(2).sum() + state.U.sum()).backward()
    unused = set() if ltc else {"log_tau_sys", "log_surprise_scale"}  # h_new = h* ignores τ
    for name, p in cell.named_parameters():
        if name in unused:
            assert p.grad is None or torch.count_nonzero(p.grad) == 0, name
            continue
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert torch.count_nonzero(p.grad) > 0, name


def test_gradients_finite_from_the_initial_state_and_zero_input():
    """Exactly zero input from the initial state makes q = 0 and U' = 0: gradients must stay finite."""
    cell = make_cell(dtype=torch.float32)
    x = torch.zeros(2, 3, 3, requires_grad=True)
    out, state = cell.forward_sequence(x, cell.init_state(2))
    (out.sum() + state.U.sum() + state.avg_surprise.sum()).backward()
    assert torch.isfinite(x.grad).all()
    for name, p in cell.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


def test_truncated_bptt_with_detach():
    cell = make_cell(dtype=torch.float32)
    x = torch.randn(2, 6, 3)
    _, state = cell.forward_sequence(x[:, :3], cell.init_state(2))
    state = state.detach()
    out, _ = cell.forward_sequence(x[:, 3:], state)
    out.sum().backward()  # no error: the first chunk's graph is cut
    assert all(not getattr(state, n).requires_grad for n in FIELDS)


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "x",
    [torch.randn(4), torch.randn(4, 4), torch.randn(4, 2, 3), [[0.0, 0.0, 0.0]]],
    ids=["1d", "wrong_input_dim", "3d", "list"],
)
def test_forward_rejects_bad_inputs(x):
    cell = make_cell(dtype=torch.float32)
    with pytest.raises(DREAMError, match="input_dim"):
        cell(x, cell.init_state(4))


@pytest.mark.parametrize(
    "x",
    [torch.randn(4, 3), torch.randn(4, 5, 2), torch.randn(1, 4, 5, 3)],
    ids=["2d", "wrong_input_dim", "4d"],
)
def test_forward_sequence_rejects_bad_inputs(x):
    cell = make_cell(dtype=torch.float32)
    with pytest.raises(DREAMError, match="input_dim"):
        cell.forward_sequence(x, cell.init_state(4))
    with pytest.raises(DREAMError, match="input_dim"):
        cell.forward_sequence_with_internals(x, cell.init_state(4))


def test_state_mismatch_raises():
    cell = make_cell(dtype=torch.float32)
    with pytest.raises(DREAMError, match="batch"):
        cell(torch.randn(3, 3), cell.init_state(2))
    with pytest.raises(DREAMError, match="batch"):
        cell.forward_sequence(torch.randn(3, 5, 3), cell.init_state(1))  # no silent broadcasting
    with pytest.raises(DREAMError, match="hidden_dim"):
        cell(torch.randn(2, 3), DREAMCell(DREAMConfig(input_dim=3, hidden_dim=7, rank=2)).init_state(2))
    with pytest.raises(DREAMError, match="DREAMState"):
        cell(torch.randn(2, 3), (torch.zeros(2, 6),))
    with pytest.raises(DREAMError, match="DREAMState"):
        cell.forward_sequence(torch.randn(2, 5, 3), None)


def test_cell_requires_a_config():
    with pytest.raises(DREAMError, match="DREAMConfig"):
        DREAMCell(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("entry", ["forward_sequence", "with_internals", "DREAM"])
def test_empty_sequence_is_a_dream_error(entry):
    from dream_rl import DREAM

    cell = make_cell(dtype=torch.float32)
    x = torch.randn(2, 0, 3)
    with pytest.raises(DREAMError, match="at least one time step"):
        if entry == "forward_sequence":
            cell.forward_sequence(x, cell.init_state(2))
        elif entry == "with_internals":
            cell.forward_sequence_with_internals(x, cell.init_state(2))
        else:
            DREAM(3, 6, 2)(x)


def test_module_is_a_torch_module_with_repr():
    cell = make_cell(dtype=torch.float32)
    assert isinstance(cell, nn.Module)
    assert "hidden_dim=6" in repr(cell) and "rank=2" in repr(cell)
    assert (cell.input_dim, cell.hidden_dim) == (3, 6)
