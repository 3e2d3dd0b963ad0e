"""Property-based tests (hypothesis) for what has a large input space: DREAMConfig validation, the
flat state encoding, the DREAM cell's input checks and the DREAM torso's invariants over random shapes.

Kept fast: few examples each, no deadline (the first call may build the C++ kernel), no example
database written into the repository."""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dream_rl import DREAMCell, DREAMConfig, DREAMError, DREAMState
from dream_rl.torsos import DreamTorso

FAST = settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
CHEAP = settings(FAST, max_examples=300)  # constructing a config takes microseconds
FIELDS = [f.name for f in dataclasses.fields(DREAMConfig)]
STATE_FIELDS = ["h", "U", "U_target", "adaptive_tau", "error_mean", "error_var", "avg_surprise"]

# ---------------------------------------------------------------------------- DREAMConfig validation
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.integers(min_value=-3, max_value=600),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0.0, max_value=2.0),
    st.fractions(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.sampled_from([np.int64(8), np.float32(0.5), np.float64("nan"), np.bool_(True), 1 + 2j]),
)


@CHEAP
@given(st.dictionaries(st.sampled_from(FIELDS), ANY_VALUE, max_size=6))
def test_any_field_values_construct_or_raise_dream_error(values):
    """Never a TypeError, OverflowError or a config that breaks its own invariants."""
    try:
        cfg = DREAMConfig(**values)
    except DREAMError as error:
        assert str(error)  # a message, naming the field
        assert any(name in str(error) for name in values) or "rank" in str(error)
        return
    for name in ("input_dim", "hidden_dim", "rank"):
        assert type(getattr(cfg, name)) is int and getattr(cfg, name) >= 1
    assert cfg.rank <= cfg.hidden_dim
    switches = ("ltc_enabled", "fast_weights", "surprise_gating", "error_injection")
    assert all(type(getattr(cfg, name)) is bool for name in switches)
    for name in FIELDS:
        if name not in ("input_dim", "hidden_dim", "rank", *switches):
            value = getattr(cfg, name)
            assert type(value) is float and math.isfinite(value) and abs(value) <= 3.4028234663852886e38
    assert dataclasses.replace(cfg) == cfg  # re-validating a valid config keeps it
    assert DREAMConfig(**cfg.to_dict()) == cfg


@FAST
@given(st.sampled_from(DREAMConfig.preset_names()), st.dictionaries(st.sampled_from(FIELDS), ANY_VALUE, max_size=3))
def test_presets_with_any_overrides_construct_or_raise_dream_error(name, overrides):
    try:
        cfg = DREAMConfig.preset(name, **overrides)
    except DREAMError:
        return
    assert isinstance(cfg, DREAMConfig)


def test_fractions_and_huge_integers_are_handled():
    assert DREAMConfig(kappa=Fraction(1, 2)).kappa == 0.5
    with pytest.raises(DREAMError, match="time_step"):
        DREAMConfig(time_step=10**400)


# ---------------------------------------------------------------------------- flat encoding
@st.composite
def configs(draw, max_hidden: int = 8) -> DREAMConfig:
    hidden = draw(st.integers(1, max_hidden))
    return DREAMConfig(
        input_dim=draw(st.integers(1, 6)),
        hidden_dim=hidden,
        rank=draw(st.integers(1, hidden)),
        base_threshold=draw(st.floats(0.0, 5.0)),
    )


@FAST
@given(configs(), st.integers(1, 4), st.sampled_from([torch.float32, torch.float64]), st.integers(0, 2**31 - 1))
def test_flat_round_trip(cfg, batch, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    shapes = DREAMState.expected_shapes(cfg, batch)
    state = DREAMState(*(torch.randn(shape, generator=g, dtype=dtype) for shape in shapes))
    flat = state.to_flat(cfg)
    assert flat.shape == (batch, DREAMState.flat_size(cfg)) and flat.dtype == dtype
    back = DREAMState.from_flat(flat, cfg)
    for name in STATE_FIELDS:
        original, decoded = getattr(state, name), getattr(back, name)
        assert decoded.shape == original.shape and decoded.dtype == dtype
        if name in ("adaptive_tau", "error_var"):  # stored with an offset: rounds once
            torch.testing.assert_close(decoded, original, rtol=0, atol=8 * torch.finfo(dtype).eps * (1 + cfg.base_threshold))
        else:
            assert torch.equal(decoded, original), name
    via_numpy = DREAMState.from_flat(flat.numpy(), cfg)
    assert all(torch.equal(getattr(via_numpy, n), getattr(back, n)) for n in STATE_FIELDS)


@FAST
@given(configs(), st.integers(1, 4), st.sampled_from([torch.float32, torch.float64]))
def test_zeros_are_exactly_the_initial_state(cfg, batch, dtype):
    initial = DREAMState.initial(batch, cfg, dtype=dtype)
    assert torch.equal(initial.to_flat(cfg), torch.zeros(batch, DREAMState.flat_size(cfg), dtype=dtype))
    decoded = DREAMState.from_flat(torch.zeros(batch, DREAMState.flat_size(cfg), dtype=dtype), cfg)
    assert all(torch.equal(getattr(decoded, n), getattr(initial, n)) for n in STATE_FIELDS)


@FAST
@given(configs(), configs(), st.integers(1, 3))
def test_a_state_of_another_config_is_refused_or_fits(cfg, other, batch):
    """Any state, any cell: either the shapes agree (and it runs) or a DREAMError names a field."""
    cell = DREAMCell(cfg)
    state = DREAMState.initial(batch, other)
    x = torch.randn(batch, 2, cfg.input_dim)
    fits = (other.hidden_dim, other.rank, other.input_dim) == (cfg.hidden_dim, cfg.rank, cfg.input_dim)
    if fits:
        out, _ = cell.forward_sequence(x, state)
        assert torch.isfinite(out).all()
    else:
        with pytest.raises(DREAMError, match=r"state\.\w+ has shape"):
            cell.forward_sequence(x, state)


# ---------------------------------------------------------------------------- torso invariants
@st.composite
def torso_cases(draw):
    hidden = draw(st.integers(1, 8))
    return dict(
        input_size=draw(st.integers(1, 5)),
        hidden_size=hidden,
        num_layers=draw(st.integers(1, 2)),
        rank=draw(st.integers(1, hidden)),
        ltc_enabled=draw(st.booleans()),
        switches={name: draw(st.booleans()) for name in ("fast_weights", "surprise_gating", "error_injection")},
        batch=draw(st.integers(1, 4)),
        steps=draw(st.integers(1, 6)),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def build(case):
    torch.manual_seed(case["seed"])
    torso = DreamTorso(case["input_size"], case["hidden_size"], case["num_layers"], rank=case["rank"],
                       ltc_enabled=case["ltc_enabled"], **case["switches"]).double()
    g = torch.Generator().manual_seed(case["seed"])
    x = torch.randn(case["steps"], case["batch"], case["input_size"], generator=g, dtype=torch.float64)
    return torso, x


TOL = dict(rtol=1e-9, atol=1e-11)


@FAST
@given(torso_cases())
def test_torso_zero_state_is_the_cells_initial_state(case):
    torso, x = build(case)
    out, _ = torso(x, torso.initial_state(case["batch"], dtype=torch.float64))
    h = x
    for cell in torso.cells:  # no dropout: the layers simply chain
        h, _ = cell.run_time_major(h, cell.init_state(case["batch"]))
    torch.testing.assert_close(out, h, **TOL)


@FAST
@given(torso_cases())
def test_torso_sequence_call_equals_single_steps(case):
    torso, x = build(case)
    state0 = torso.initial_state(case["batch"], dtype=torch.float64)
    out, final = torso(x, state0)
    state, steps = state0, []
    for x_t in x:
        o, state = torso(x_t.unsqueeze(0), state)
        steps.append(o)
    torch.testing.assert_close(out, torch.cat(steps), **TOL)
    torch.testing.assert_close(final, state, **TOL)


@FAST
@given(torso_cases(), st.data())
def test_torso_reset_isolates_the_env_that_restarts(case, data):
    """A start at (t, b) makes env b from t on equal to a fresh run, and leaves the others as they
    were, even when env b's state held NaN."""
    torso, x = build(case)
    B, T = case["batch"], case["steps"]
    t = data.draw(st.integers(0, T - 1))
    b = data.draw(st.integers(0, B - 1))
    state0 = torso(x, torso.initial_state(B, dtype=torch.float64))[1]  # a state far from zeros
    state0[b] = float("nan")
    starts = torch.zeros(T, B, dtype=torch.float64)
    starts[t, b] = 1.0
    out, _ = torso(x, state0, starts)
    others = [i for i in range(B) if i != b]
    if others:
        ref, _ = torso(x[:, others], state0[others])
        torch.testing.assert_close(out[:, others], ref, **TOL)
    fresh, _ = torso(x[t:, b : b + 1], torso.initial_state(1, dtype=torch.float64))
    torch.testing.assert_close(out[t:, b : b + 1], fresh, **TOL)
    assert torch.isfinite(out[t:]).all()
