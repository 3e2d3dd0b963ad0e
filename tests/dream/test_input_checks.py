"""Issue 9 (reliability), the DREAM library part: states that do not fit the cell, non-finite and
mismatched input, exact resets, and the flat encoding from numpy."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from dream_rl import DREAM, DREAMCell, DREAMConfig, DREAMError, DREAMStack, DREAMState
from dream_rl.dream.kernels.dispatch import native_available

FIELDS = ["h", "U", "U_target", "adaptive_tau", "error_mean", "error_var", "avg_surprise"]
BACKENDS = ["reference", "torch"] + (["native"] if native_available() else [])
REPO = Path(__file__).resolve().parents[2]


def make_cell(dtype=torch.float32, seed=0, **overrides) -> DREAMCell:
    torch.manual_seed(seed)
    return DREAMCell(DREAMConfig(**{**dict(input_dim=3, hidden_dim=6, rank=2), **overrides})).to(dtype)


def with_field(state: DREAMState, name: str, value: torch.Tensor) -> DREAMState:
    return DREAMState(*(value if n == name else getattr(state, n) for n in FIELDS))


# ---------------------------------------------------------------------------- item 1: the crash
def test_state_of_another_rank_does_not_crash_the_native_kernel():
    """The issue's case: a rank-1 state for a rank-512 cell was read out of bounds by the C++ kernel
    (segmentation fault). Run in a child process so a crash fails this test instead of killing pytest."""
    script = textwrap.dedent(
        """
        import torch
        from dream_rl import DREAMCell, DREAMConfig, DREAMError, DREAMState
        cell = DREAMCell(DREAMConfig(input_dim=4, hidden_dim=512, rank=512))
        bad = DREAMState.initial(64, DREAMConfig(input_dim=4, hidden_dim=512, rank=1))
        try:
            with torch.no_grad():
                cell.forward_sequence(torch.randn(64, 3, 4), bad)
        except DREAMError as error:
            print("DREAMError:", error)
        else:
            print("no error")
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, f"child died with status {result.returncode}: {result.stderr[-2000:]}"
    assert "DREAMError: state.U has shape (64, 512, 1)" in result.stdout
    assert "(64, 512, 512)" in result.stdout


# ---------------------------------------------------------------------------- item 1: every field, every entry
def _bad_states(cell: DREAMCell, batch: int) -> list[tuple[str, str, DREAMState]]:
    """(field, expected-text, state) with exactly one field that does not fit the cell."""
    good = cell.init_state(batch)
    other_rank = DREAMState.initial(batch, DREAMConfig(input_dim=3, hidden_dim=6, rank=1))
    other_input = DREAMState.initial(batch, DREAMConfig(input_dim=5, hidden_dim=6, rank=2))
    cases = [
        ("U", f"({batch}, 6, 2)", with_field(good, "U", other_rank.U)),
        ("U_target", f"({batch}, 6, 2)", with_field(good, "U_target", other_rank.U_target)),
        ("error_mean", f"({batch}, 3)", with_field(good, "error_mean", other_input.error_mean)),
        ("error_var", f"({batch}, 3)", with_field(good, "error_var", other_input.error_var)),
        ("adaptive_tau", f"({batch},)", with_field(good, "adaptive_tau", torch.zeros(batch, 1))),
        ("avg_surprise", f"({batch},)", with_field(good, "avg_surprise", torch.zeros(batch + 1))),
        ("h", f"({batch}, 6)", with_field(good, "h", torch.zeros(batch, 7))),
    ]
    for name in FIELDS:  # dtype and device, field by field
        cases.append((name, "float64", with_field(good, name, getattr(good, name).double())))
        cases.append((name, "device meta", with_field(good, name, getattr(good, name).to("meta"))))
    cases.append(("U", "must be a tensor", with_field(good, "U", np.zeros((batch, 6, 2), np.float32))))
    return cases


def _entries(cell_or_model: str, backend: str):
    """Entry points taking (x batch-first (B, T, I), state) through one code path each."""
    cell = make_cell()
    cell.sequence_backend = backend
    if cell_or_model == "forward":
        return cell, lambda x, s: cell(x[:, 0], s)
    if cell_or_model == "forward_sequence":
        return cell, lambda x, s: cell.forward_sequence(x, s)
    if cell_or_model == "with_internals":
        return cell, lambda x, s: cell.forward_sequence_with_internals(x, s)
    if cell_or_model == "run_time_major":
        return cell, lambda x, s: cell.run_time_major(x.transpose(0, 1), s)
    model = DREAM(3, 6, 2)
    model.cell.sequence_backend = backend
    if cell_or_model == "DREAM":
        return model.cell, lambda x, s: model(x, s)
    if cell_or_model == "forward_with_mask":
        return model.cell, lambda x, s: model.forward_with_mask(x, torch.full((x.shape[0],), x.shape[1]), s)
    raise AssertionError(cell_or_model)


ENTRIES = ["forward", "forward_sequence", "with_internals", "run_time_major", "DREAM", "forward_with_mask"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("entry", ENTRIES)
def test_every_state_field_is_checked_before_any_kernel_runs(entry, backend):
    cell, call = _entries(entry, backend)
    x = torch.randn(4, 3, 3)
    call(x, cell.init_state(4))  # the good state runs
    for field, expected, state in _bad_states(cell, 4):
        with pytest.raises(DREAMError, match=rf"state\.{field}\b") as info:
            with torch.no_grad():
                call(x, state)
        assert expected in str(info.value), (field, str(info.value))


def test_state_errors_name_the_field_and_the_expected_shape():
    cell = make_cell()
    bad = with_field(cell.init_state(2), "U", torch.zeros(2, 6, 1))
    with pytest.raises(DREAMError) as info:
        cell.forward_sequence(torch.randn(2, 3, 3), bad)
    text = str(info.value)
    assert "state.U has shape (2, 6, 1)" in text and "needs (2, 6, 2) (batch, hidden_dim, rank)" in text
    assert "rank=2" in text and "init_state(2)" in text


def test_stack_names_the_layer_whose_state_does_not_fit():
    torch.manual_seed(0)
    stack = DREAMStack(3, [6, 5], rank=2)
    states = stack.init_state(2)
    states[1] = with_field(states[1], "error_mean", torch.zeros(2, 3))  # layer 1 takes 6 inputs
    with pytest.raises(DREAMError, match=r"DREAMStack layer 1: state\.error_mean .*\(2, 6\)"):
        stack(torch.randn(2, 4, 3), states)


def test_batch_one_state_is_not_broadcast():
    cell = make_cell()
    with pytest.raises(DREAMError, match="batch of 3"):
        cell.run_time_major(torch.randn(5, 3, 3), cell.init_state(1))


def test_run_time_major_rejects_batch_first_input_of_the_wrong_layout():
    cell = make_cell()
    with pytest.raises(DREAMError, match=r"\(time, batch, input_dim\)"):
        cell.run_time_major(torch.randn(5, 3, 4), cell.init_state(3))
    with pytest.raises(DREAMError, match="at least one time step"):
        cell.run_time_major(torch.randn(0, 3, 3), cell.init_state(3))


# ---------------------------------------------------------------------------- item 5: input dtype / device
@pytest.mark.parametrize("entry", ENTRIES)
def test_input_dtype_mismatch_names_both_dtypes(entry):
    cell, call = _entries(entry, "auto")
    x = torch.randn(2, 3, 3, dtype=torch.float64)
    with pytest.raises(DREAMError, match=r"has dtype torch\.float64 but the model's parameters are torch\.float32"):
        call(x, cell.init_state(2))


def test_input_dtype_mismatch_with_default_state():
    model = DREAM(3, 6, 2)
    with pytest.raises(DREAMError, match=r"torch\.float64.*torch\.float32"):
        model(torch.randn(2, 3, 3, dtype=torch.float64))
    with pytest.raises(DREAMError, match=r"torch\.int64.*torch\.float32"):
        model(torch.ones(2, 3, 3, dtype=torch.long))


@pytest.mark.parametrize("entry", ENTRIES)
def test_input_device_mismatch_names_both_devices(entry):
    cell, call = _entries(entry, "auto")
    x = torch.randn(2, 3, 3, device="meta")
    with pytest.raises(DREAMError, match=r"is on device meta but the model is on cpu"):
        call(x, cell.init_state(2))


# ---------------------------------------------------------------------------- item 3: non-finite input
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("entry", ["forward", "forward_sequence", "with_internals", "DREAM", "forward_with_mask"])
def test_non_finite_input_names_the_first_bad_batch_index(entry, bad):
    cell, call = _entries(entry, "auto")
    x = torch.randn(5, 3, 3)
    x[3, 0, 1] = bad
    x[4, 0, 0] = bad
    with pytest.raises(DREAMError, match=r"non-finite .* at batch index 3 \(and 1 more\)"):
        call(x, cell.init_state(5))


def test_stack_checks_the_input_of_its_first_layer():
    torch.manual_seed(0)
    stack = DREAMStack(3, [6, 5], rank=2)
    x = torch.randn(2, 4, 3)
    x[1, 2, 0] = float("nan")
    with pytest.raises(DREAMError, match="layer 0: x_seq contains non-finite values .* batch index 1"):
        stack(x)


def test_forward_with_mask_looks_only_inside_each_length():
    model = DREAM(3, 6, 2)
    x = torch.randn(2, 5, 3)
    x[0, 3:] = float("nan")  # padding of sequence 0: allowed
    model.forward_with_mask(x, torch.tensor([3, 5]))
    with pytest.raises(DREAMError, match="batch index 0"):
        model.forward_with_mask(x, torch.tensor([4, 5]))


def test_run_time_major_leaves_values_to_the_caller():
    """The per-step torso entry makes no value reduction: NaN input goes through (and stays in its
    own sample), as documented in dream_rl.dream.cell."""
    cell = make_cell()
    x = torch.randn(2, 2, 3)
    x[0, 1] = float("nan")
    with torch.no_grad():
        out, state = cell.run_time_major(x, cell.init_state(2))
    assert torch.isnan(out[0, 1]).all() and torch.isfinite(out[:, 0]).all()


def test_non_finite_check_is_skipped_under_vmap():
    cell = make_cell(dtype=torch.float64)

    def one(x_bi):  # batch of 1 inside vmap: data-dependent checks cannot run there
        out, _ = cell(x_bi[None], cell.init_state(1))
        return out[0]

    x = torch.randn(3, 3, dtype=torch.float64)
    got = torch.func.vmap(one)(x)
    ref, _ = cell(x, cell.init_state(3))
    torch.testing.assert_close(got, ref)


# ---------------------------------------------------------------------------- item 2: exact reset with NaN
def test_reset_by_selection_clears_nan_and_inf():
    cfg = DREAMConfig(input_dim=3, hidden_dim=6, rank=2, base_threshold=0.3)
    state = DREAMState.initial(3, cfg)
    poisoned = DREAMState(*(torch.full_like(getattr(state, n), float("nan")) for n in FIELDS))
    poisoned.U[1] = float("inf")
    out = poisoned.reset(torch.tensor([True, True, False]), cfg)
    for name in FIELDS:
        value = getattr(out, name)
        assert torch.equal(value[:2], getattr(state, name)[:2]), name  # exactly the initial state
        assert torch.isnan(value[2]).all(), name  # the other sample is untouched
    out = poisoned.reset(np.array([1, 0, 0]), cfg)  # a numpy mask (as a vec-env hands out) works too
    assert torch.equal(out.h[0], state.h[0])


# ---------------------------------------------------------------------------- item 8: from_flat
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_from_flat_takes_a_numpy_array(dtype):
    cfg = DREAMConfig(input_dim=3, hidden_dim=6, rank=2, base_threshold=0.3)
    g = torch.Generator().manual_seed(0)
    flat = torch.randn(4, DREAMState.flat_size(cfg), generator=g, dtype=torch.float64).numpy().astype(dtype)
    flat[:, -1] = DREAMState.layout_tag(cfg)  # the layout tag of a row this config wrote
    state = DREAMState.from_flat(flat, cfg)
    assert state.h.dtype == torch.from_numpy(flat).dtype
    np.testing.assert_allclose(state.to_flat(cfg).numpy(), flat, rtol=1e-6, atol=1e-6)  # offsets round
    zeros = DREAMState.from_flat(np.zeros((2, DREAMState.flat_size(cfg)), dtype), cfg)
    assert torch.equal(zeros.adaptive_tau, torch.full((2,), 0.3, dtype=zeros.h.dtype))


@pytest.mark.parametrize("flat, match", [
    (np.zeros((2, 39), np.int64), "floats"),
    (torch.zeros(2, 39, dtype=torch.long), "floats"),
    ([[0.0] * 39], "tensor or numpy array"),
    (np.zeros((2, 38), np.float32), r"shape \(batch, 39\)"),
])
def test_from_flat_rejects_what_it_cannot_decode(flat, match):
    cfg = DREAMConfig(input_dim=3, hidden_dim=6, rank=2)
    assert DREAMState.flat_size(cfg) == 39
    with pytest.raises(DREAMError, match=match):
        DREAMState.from_flat(flat, cfg)


def test_to_flat_names_the_field_of_another_config():
    cfg = DREAMConfig(input_dim=3, hidden_dim=6, rank=2)
    other = DREAMState.initial(2, DREAMConfig(input_dim=3, hidden_dim=6, rank=1))
    with pytest.raises(DREAMError, match=r"state\.U has shape \(2, 6, 1\) .* needs \(2, 6, 2\)"):
        other.to_flat(cfg)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_model_refuses_cpu_state_and_input_and_checks_finiteness_on_device():
    cell = make_cell().cuda()
    x = torch.randn(2, 3, 3, device="cuda")
    with pytest.raises(DREAMError, match=r"state\.h is on device cpu but the cell is on cuda"):
        cell.forward_sequence(x, cell.init_state(2).to("cpu"))
    with pytest.raises(DREAMError, match=r"is on device cpu but the model is on cuda"):
        cell.forward_sequence(x.cpu(), cell.init_state(2))
    x[1, 2, 0] = float("nan")
    with pytest.raises(DREAMError, match="batch index 1"):
        cell.forward_sequence(x, cell.init_state(2))
