"""DREAMState: fields and shapes, seed methods, per-sample reset and the flat (rollout-buffer) encoding."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dream_rl import DREAMCell, DREAMConfig, DREAMError, DREAMState

FIELDS = ["h", "U", "U_target", "adaptive_tau", "error_mean", "error_var", "avg_surprise"]
I, H, R = 3, 6, 2


def config(**overrides) -> DREAMConfig:
    # base_threshold 0.3 is not a dyadic float: the offset encoding must still give exact zeros
    return DREAMConfig(**{**dict(input_dim=I, hidden_dim=H, rank=R, base_threshold=0.3), **overrides})


def random_state(batch: int, cfg: DREAMConfig, dtype=torch.float32, seed: int = 0) -> DREAMState:
    g = torch.Generator().manual_seed(seed)
    shapes = DREAMState.initial(batch, cfg).shape()

    def draw(name):
        t = torch.randn(shapes[name], generator=g, dtype=dtype)
        return t.abs() + 0.1 if name == "error_var" else t

    return DREAMState(*(draw(name) for name in FIELDS))


def expected_shapes(B: int, cfg: DREAMConfig) -> dict:
    Hd, r, Id = cfg.hidden_dim, cfg.rank, cfg.input_dim
    return {"h": (B, Hd), "U": (B, Hd, r), "U_target": (B, Hd, r), "adaptive_tau": (B,),
            "error_mean": (B, Id), "error_var": (B, Id), "avg_surprise": (B,)}


def assert_states_identical(a: DREAMState, b: DREAMState) -> None:
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape and x.dtype == y.dtype, name
        assert torch.equal(x, y), name


# ---------------------------------------------------------------------------- fields, shapes, initial
def test_dataclass_with_the_seven_seed_fields():
    assert dataclasses.is_dataclass(DREAMState)
    assert [f.name for f in dataclasses.fields(DREAMState)] == FIELDS


@pytest.mark.parametrize("batch", [1, 5])
def test_initial_state_shapes_and_values(batch):
    cfg = config()
    state = DREAMState.initial(batch, cfg)
    assert state.shape() == expected_shapes(batch, cfg)  # the batch axis is kept at batch size 1
    assert state.batch_size == batch
    for name in ("h", "U", "U_target", "error_mean", "avg_surprise"):
        assert torch.equal(getattr(state, name), torch.zeros_like(getattr(state, name))), name
    assert torch.equal(state.error_var, torch.ones(batch, I))
    assert torch.equal(state.adaptive_tau, torch.full((batch,), 0.3))
    assert all(getattr(state, n).dtype == torch.get_default_dtype() for n in FIELDS)


def test_initial_state_dtype_and_device():
    state = DREAMState.initial(2, config(), device="cpu", dtype=torch.float64)
    assert all(getattr(state, n).dtype == torch.float64 and getattr(state, n).device.type == "cpu" for n in FIELDS)


def test_cell_init_state_matches_initial_and_follows_cell_dtype():
    cfg = config()
    cell = DREAMCell(cfg)
    assert_states_identical(cell.init_state(4), DREAMState.initial(4, cfg))
    cell = cell.double()
    assert cell.init_state(2).h.dtype == torch.float64
    assert cell.init_state(2, dtype=torch.float32).h.dtype == torch.float32
    assert cell.init_state(batch_size=np.int64(3)).batch_size == 3  # numpy ints (vec-env sizes) accepted


@pytest.mark.parametrize("batch", [0, -1, 2.0, True, "2", None])
def test_initial_rejects_bad_batch_size(batch):
    with pytest.raises(DREAMError, match="batch_size"):
        DREAMState.initial(batch, config())
    with pytest.raises(DREAMError, match="batch_size"):
        DREAMCell(config()).init_state(batch)


# ---------------------------------------------------------------------------- seed methods
def test_detach_cuts_the_graph_and_keeps_values():
    cfg = config()
    state = random_state(3, cfg)
    leaves = DREAMState(*(getattr(state, n).clone().requires_grad_(True) for n in FIELDS))
    derived = DREAMState(*(getattr(leaves, n) * 2.0 for n in FIELDS))
    detached = derived.detach()
    for name in FIELDS:
        t = getattr(detached, name)
        assert not t.requires_grad and t.grad_fn is None, name
        assert torch.equal(t, getattr(derived, name).detach()), name
    assert all(getattr(derived, n).requires_grad for n in FIELDS)  # the original is untouched


def test_to_moves_and_casts_every_tensor():
    state = random_state(2, config())
    moved = state.to("cpu")
    assert_states_identical(moved, state)
    moved = state.to(torch.device("cpu"))
    assert all(getattr(moved, n).device.type == "cpu" for n in FIELDS)
    cast = state.to(torch.float64)
    for name in FIELDS:
        assert getattr(cast, name).dtype == torch.float64
        assert torch.equal(getattr(cast, name), getattr(state, name).double())


def test_shape_returns_tuples_per_field():
    cfg = config(hidden_dim=128, rank=8)
    shapes = DREAMState.initial(32, cfg).shape()
    assert shapes["h"] == (32, 128) and shapes["U"] == (32, 128, 8)  # the seed's example
    assert shapes == expected_shapes(32, cfg)
    assert all(type(s) is tuple for s in shapes.values())


# ---------------------------------------------------------------------------- per-sample reset
@pytest.mark.parametrize("mask_kind", ["bool", "float", "long"])
def test_reset_gives_exact_initial_state_and_leaves_others_bit_identical(mask_kind):
    cfg = config()
    state = random_state(5, cfg)
    flags = [False, True, False, True, True]
    mask = torch.tensor(flags)
    mask = {"bool": mask, "float": mask.float(), "long": mask.long()}[mask_kind]
    out = state.reset(mask, cfg)
    initial = DREAMState.initial(1, cfg)
    for name in FIELDS:
        new, old, init = getattr(out, name), getattr(state, name), getattr(initial, name)[0]
        assert new.shape == old.shape and new.dtype == old.dtype
        for i, flag in enumerate(flags):
            assert torch.equal(new[i], init if flag else old[i]), (name, i)


def test_reset_all_and_none():
    cfg = config()
    state = random_state(3, cfg, dtype=torch.float64)
    assert_states_identical(state.reset(torch.ones(3), cfg), DREAMState.initial(3, cfg, dtype=torch.float64))
    assert_states_identical(state.reset(torch.zeros(3, dtype=torch.bool), cfg), state)
    assert_states_identical(state.reset(torch.zeros(3, 1), cfg), state)  # (B, 1) masks are flattened


def test_reset_mask_length_mismatch_raises():
    cfg = config()
    with pytest.raises(DREAMError, match="mask"):
        random_state(2, cfg).reset(torch.tensor([True, False, True]), cfg)


def test_where_picks_per_sample():
    cfg = config()
    a, b = random_state(4, cfg, seed=1), random_state(4, cfg, seed=2)
    mask = torch.tensor([True, False, False, True])
    out = DREAMState.where(mask, a, b)
    for name in FIELDS:
        for i in range(4):
            assert torch.equal(getattr(out, name)[i], getattr(a if mask[i] else b, name)[i])


# ---------------------------------------------------------------------------- flat encoding
def test_flat_size_formula():
    cfg = config()
    assert DREAMState.flat_size(cfg) == H + 2 * H * R + 2 * I + 3
    assert DREAMState.initial(2, cfg).to_flat(cfg).shape == (2, DREAMState.flat_size(cfg))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("base_threshold", [0.3, 0.5, 0.7, 0.0])
def test_flat_is_all_zeros_exactly_at_the_initial_state(dtype, base_threshold):
    cfg = config(base_threshold=base_threshold)
    flat = DREAMState.initial(3, cfg, dtype=dtype).to_flat(cfg)
    assert flat.dtype == dtype
    assert torch.equal(flat, torch.zeros_like(flat))
    # and zeros decode to exactly the initial state
    assert_states_identical(DREAMState.from_flat(flat, cfg), DREAMState.initial(3, cfg, dtype=dtype))


@pytest.mark.parametrize("name", FIELDS)
def test_flat_is_nonzero_as_soon_as_any_field_leaves_the_initial_state(name):
    cfg = config()
    state = DREAMState.initial(2, cfg)
    getattr(state, name).view(2, -1)[1, -1] += 0.25
    flat = state.to_flat(cfg)
    assert torch.equal(flat[0], torch.zeros_like(flat[0]))
    assert torch.count_nonzero(flat[1]) == 2  # the field's entry and the layout tag
    assert flat[1, -1] == DREAMState.layout_tag(cfg)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_flat_round_trip(dtype):
    cfg = config()
    state = random_state(4, cfg, dtype=dtype)
    back = DREAMState.from_flat(state.to_flat(cfg), cfg)
    assert back.shape() == state.shape()
    for name in ("h", "U", "U_target", "error_mean", "avg_surprise"):  # stored as is: exact
        assert torch.equal(getattr(back, name), getattr(state, name)), name
    # stored as offsets, decoded as fl(fl(x - c) + c) with c = base_threshold or 1: two roundings,
    # each at most half an ulp of |x - c| or |x| -- exact equality is not possible in general
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(back.adaptive_tau, state.adaptive_tau, rtol=2 * eps, atol=2 * eps)
    torch.testing.assert_close(back.error_var, state.error_var, rtol=2 * eps, atol=2 * eps)


def test_flat_round_trip_is_exact_for_representable_offsets():
    cfg = config(base_threshold=0.5)
    state = random_state(2, cfg, dtype=torch.float64)
    state.error_var = torch.tensor([[0.25, 1.5, 3.0], [1.0, 0.5, 2.0]], dtype=torch.float64)
    state.adaptive_tau = torch.tensor([0.25, 0.75], dtype=torch.float64)
    assert_states_identical(DREAMState.from_flat(state.to_flat(cfg), cfg), state)


def test_flat_round_trip_of_a_real_cell_state():
    cfg = config()
    cell = DREAMCell(cfg).double()
    x = torch.randn(3, 7, I, dtype=torch.float64)
    _, state = cell.forward_sequence(x, cell.init_state(3))
    back = DREAMState.from_flat(state.to_flat(cfg), cfg)
    for name in FIELDS:
        torch.testing.assert_close(getattr(back, name), getattr(state, name), rtol=1e-15, atol=1e-15)


def test_masked_flat_decodes_to_a_per_sample_reset():
    cfg = config()
    for dtype in (torch.float32, torch.float64):
        state = random_state(4, cfg, dtype=dtype, seed=3)
        flat = state.to_flat(cfg)
        start = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=dtype)
        decoded = DREAMState.from_flat((1.0 - start).unsqueeze(1) * flat, cfg)
        reference = DREAMState.from_flat(flat, cfg).reset(start, cfg)
        assert_states_identical(decoded, reference)
        initial = DREAMState.initial(1, cfg, dtype=dtype)
        for name in FIELDS:
            assert torch.equal(getattr(decoded, name)[0], getattr(initial, name)[0]), name
            assert torch.equal(getattr(decoded, name)[2], getattr(initial, name)[0]), name


@pytest.mark.parametrize("shape", [
    (2, DREAMState.flat_size(config()) + 1), (2, 5), (DREAMState.flat_size(config()),), (1, 2, DREAMState.flat_size(config())),
])
def test_from_flat_rejects_bad_shapes(shape):
    with pytest.raises(DREAMError, match="flat"):
        DREAMState.from_flat(torch.zeros(shape), config())


def test_to_flat_rejects_a_state_of_another_config():
    cfg = config()
    state = DREAMState.initial(2, cfg)
    for other in (config(rank=3), config(hidden_dim=7), config(input_dim=4)):
        with pytest.raises(DREAMError, match="rank"):
            state.to_flat(other)
    broken = DREAMState.initial(2, cfg)
    broken.avg_surprise = torch.zeros(3)  # batch mismatch inside the state
    with pytest.raises(DREAMError):
        broken.to_flat(cfg)


def test_from_flat_refuses_a_state_written_by_another_shape_of_the_same_length():
    """(I=4, H=8, r=2) and (I=12, H=8, r=1) both flatten to 51 floats: the layout tag tells them apart."""
    written_by = DREAMConfig(input_dim=4, hidden_dim=8, rank=2)
    read_as = DREAMConfig(input_dim=12, hidden_dim=8, rank=1)
    assert DREAMState.flat_size(written_by) == DREAMState.flat_size(read_as)
    cell = DREAMCell(written_by)
    _, state, _ = cell.step(torch.randn(3, 4), cell.init_state(3))
    flat = state.to_flat(written_by)
    assert DREAMState.from_flat(flat, written_by).h.shape == (3, 8)
    with pytest.raises(DREAMError, match="another shape"):
        DREAMState.from_flat(flat, read_as)
    # zeros are the initial state of every config, and a written row stays readable after a reset
    assert torch.count_nonzero(DREAMState.initial(3, written_by).to_flat(written_by)) == 0
    flat[1] = 0
    with pytest.raises(DREAMError, match="another shape"):
        DREAMState.from_flat(flat, read_as)
    DREAMState.from_flat(torch.zeros_like(flat), read_as)
