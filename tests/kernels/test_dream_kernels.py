"""The fast sequence path (dream_rl.dream.kernels.dispatch, dream_rl.dream.kernels.native) equals the reference step loop.

Outputs, final state and gradients with respect to the input, every parameter and every initial
state tensor, allclose in float64, on both kernels (the C++ one wherever it builds, the
pure-PyTorch one always), over the configurations whose piecewise branches differ: LTC on/off,
rank 1 and rank H, batch 1, T = 1 and T = 50, κ = 0 and 1, sleep active and inactive, the
homeostatic norm bound binding, rank above the input width.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from dream_rl._native import build
from dream_rl.dream.cell import DREAMCell
from dream_rl.dream.config import DREAMConfig
from dream_rl.dream.kernels import dispatch, native
from dream_rl.dream.state import DREAMState
from dream_rl.errors import DREAMError, KernelError

NATIVE = dispatch.native_available()
BACKENDS = ["torch", pytest.param("native", marks=pytest.mark.skipif(not NATIVE, reason="no C++ kernel here"))]
F64 = torch.float64


def as_tuple(state: DREAMState) -> tuple:
    """The state's tensors in field order (dataclasses.astuple would deep-copy them)."""
    return tuple(getattr(state, f.name) for f in dataclasses.fields(state))


def make_cell(dtype=F64, seed=0, **overrides) -> DREAMCell:
    fields = dict(input_dim=5, hidden_dim=12, rank=3)
    fields.update(overrides)
    torch.manual_seed(seed)
    return DREAMCell(DREAMConfig(**fields)).to(dtype)


def random_state(cell: DREAMCell, B: int, dtype=F64, seed=1) -> DREAMState:
    """A state away from the initial one (every field nonzero and in its natural range)."""
    g = torch.Generator().manual_seed(seed)
    H, r, I = cell.config.hidden_dim, cell.config.rank, cell.config.input_dim

    def rnd(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    return DREAMState(
        h=rnd(B, H).tanh(),
        U=0.3 * rnd(B, H, r),
        U_target=0.3 * rnd(B, H, r),
        adaptive_tau=0.4 + 0.2 * torch.rand(B, generator=g, dtype=dtype),
        error_mean=0.2 * rnd(B, I),
        error_var=0.3 + torch.rand(B, I, generator=g, dtype=dtype),
        avg_surprise=0.5 * torch.rand(B, generator=g, dtype=dtype),
    )


def run(cell: DREAMCell, x: torch.Tensor, state: DREAMState, backend: str, grad: bool = True) -> dict:
    """Run ``backend`` and backpropagate a random linear function of the outputs and the final state."""
    cell.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(grad)
    state = DREAMState(*(t.detach().clone().requires_grad_(grad) for t in as_tuple(state)))
    if backend == "reference":
        out, final = cell.reference_run_time_major(x, state)
    else:
        out, final = dispatch.run_sequence(cell, x, state, backend)
    result = {"out": out.detach()}
    result.update({f"final.{f.name}": getattr(final, f.name).detach() for f in dataclasses.fields(final)})
    if grad:
        g = torch.Generator().manual_seed(123)

        def weights(t: torch.Tensor) -> torch.Tensor:
            return torch.randn(t.shape, generator=g, dtype=t.dtype).to(t.device)

        loss = (out * weights(out)).sum()
        for f in dataclasses.fields(final):
            value = getattr(final, f.name)
            loss = loss + (value * weights(value)).sum()
        loss.backward()
        result["grad.x"] = x.grad
        result.update({f"grad.state.{f.name}": getattr(state, f.name).grad for f in dataclasses.fields(state)})
        result.update({f"grad.{name}": p.grad for name, p in cell.named_parameters()})
    return result


def assert_same(ref: dict, got: dict, rtol: float, atol: float) -> None:
    assert ref.keys() == got.keys()
    for key in ref:
        a, b = ref[key], got[key]
        assert (a is None) == (b is None), f"{key}: one gradient is None, the other is not"
        if a is None:
            continue
        assert a.shape == b.shape and a.dtype == b.dtype, key
        assert torch.allclose(a, b, rtol=rtol, atol=atol), f"{key}: max |diff| = {(a - b).abs().max().item():.3g}"


CASES = {
    "default": dict(),
    "ltc_off": dict(ltc_enabled=False),
    "rank_1": dict(rank=1),
    "rank_H": dict(hidden_dim=6, rank=6),
    "rank_above_input": dict(input_dim=2, hidden_dim=8, rank=4),
    "kappa_0": dict(kappa=0.0),
    "kappa_1_norm_binds": dict(kappa=1.0, target_norm=0.05, base_plasticity=2.0),
    "kappa_half_norm_binds": dict(kappa=0.5, target_norm=0.05, base_plasticity=2.0),
    "sleep_forced": dict(min_surprise_for_sleep=1.0, sleep_rate=0.3),
    "sleep_never": dict(min_surprise_for_sleep=0.0),
    "sharp_gate": dict(surprise_temperature=0.01, entropy_influence=1.0),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("start", ["initial", "random"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_reference_float64(case, start, backend):
    cell = make_cell(**CASES[case])
    B, T = 3, 12
    x = 1.5 * torch.randn(T, B, cell.config.input_dim, generator=torch.Generator().manual_seed(7), dtype=F64)
    state = cell.init_state(B) if start == "initial" else random_state(cell, B)
    assert_same(run(cell, x, state, "reference"), run(cell, x, state, backend), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("B, T", [(1, 1), (1, 7), (4, 1), (1, 50)])
def test_matches_reference_batch_and_length(B, T, backend):
    cell = make_cell()
    x = torch.randn(T, B, 5, generator=torch.Generator().manual_seed(B * 100 + T), dtype=F64)
    state = random_state(cell, B)
    assert_same(run(cell, x, state, "reference"), run(cell, x, state, backend), rtol=1e-8, atol=1e-10)


def test_piecewise_regimes_are_exercised():
    """The cases above really reach the branches they are named after."""
    B, T = 3, 12
    x = 1.5 * torch.randn(T, B, 5, generator=torch.Generator().manual_seed(7), dtype=F64)
    with torch.no_grad():
        cell = make_cell(**CASES["kappa_1_norm_binds"])
        _, final = cell.reference_run_time_major(x, cell.init_state(B))
        norms = final.U.flatten(1).norm(dim=1)
        assert bool((norms <= 0.05 + 1e-12).all()) and bool(((norms - 0.05).abs() < 1e-12).any())  # on the bound
        cell = make_cell(**CASES["sleep_forced"])
        _, final = cell.reference_run_time_major(x, cell.init_state(B))
        assert final.U_target.abs().sum() > 0  # consolidation happened
        cell = make_cell(**CASES["sleep_never"])
        _, final = cell.reference_run_time_major(x, cell.init_state(B))
        assert final.U_target.abs().sum() == 0 and final.U.abs().sum() > 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ltc", [True, False])
def test_float32_agrees_with_float64_reference(backend, ltc):
    """float32 kernels stay as close to the float64 reference as the float32 reference does."""
    cell64 = make_cell(input_dim=8, hidden_dim=16, rank=8, ltc_enabled=ltc)
    cell32 = make_cell(dtype=torch.float32, input_dim=8, hidden_dim=16, rank=8, ltc_enabled=ltc)
    cell32.load_state_dict({k: v.float() for k, v in cell64.state_dict().items()})
    B, T = 3, 25
    x = torch.randn(T, B, 8, generator=torch.Generator().manual_seed(3), dtype=F64)
    state = random_state(cell64, B)
    ref = run(cell64, x, state, "reference")
    state32 = DREAMState(*(t.float() for t in as_tuple(state)))
    ref32 = run(cell32, x.float(), state32, "reference")
    got = run(cell32, x.float(), state32, backend)
    for key in ref:
        if ref[key] is None:
            assert got[key] is None
            continue
        scale = ref[key].abs().max().item() + 1e-6
        err_ref32 = (ref32[key].double() - ref[key]).abs().max().item() / scale
        err_got = (got[key].double() - ref[key]).abs().max().item() / scale
        assert got[key].dtype == torch.float32
        assert err_got < max(1e-4, 10 * err_ref32), f"{key}: {err_got:.3g} (float32 reference: {err_ref32:.3g})"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_no_grad_path_equals_grad_path(backend, dtype):
    cell = make_cell(dtype=dtype)
    x = torch.randn(9, 3, 5, dtype=dtype)
    state = random_state(cell, 3, dtype=dtype)
    with_grad = run(cell, x, state, backend, grad=True)
    with torch.no_grad():
        without = run(cell, x, state, backend, grad=False)
    nothing_requires_grad = run(cell.requires_grad_(False), x, state, backend, grad=False)
    for key, value in without.items():
        assert torch.equal(value, with_grad[key]), key
        assert torch.equal(value, nothing_requires_grad[key]), key


@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_requires_grad(backend):
    """Only the input needs a gradient (frozen cell), then only the initial state."""
    cell = make_cell().requires_grad_(False)
    x = torch.randn(6, 2, 5, dtype=F64, requires_grad=True)
    state = random_state(cell, 2)
    out, _ = dispatch.run_sequence(cell, x, state, backend)
    (g_fast,) = torch.autograd.grad(out.sum(), x)
    out, _ = cell.reference_run_time_major(x, state)
    (g_ref,) = torch.autograd.grad(out.sum(), x)
    assert torch.allclose(g_fast, g_ref, rtol=1e-9, atol=1e-11)
    U0 = state.U.clone().requires_grad_()
    state = dataclasses.replace(state, U=U0)
    out, final = dispatch.run_sequence(cell, x.detach(), state, backend)
    (g_fast,) = torch.autograd.grad(out.sum() + final.U_target.sum(), U0)
    out, final = cell.reference_run_time_major(x.detach(), state)
    (g_ref,) = torch.autograd.grad(out.sum() + final.U_target.sum(), U0)
    assert torch.allclose(g_fast, g_ref, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(backend):
    cell = make_cell(input_dim=3, hidden_dim=4, rank=2, base_plasticity=2.0, kappa=0.7, target_norm=0.05)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 2, 3, generator=g, dtype=F64, requires_grad=True)
    base = random_state(cell, 2)
    leaves = [t.clone().requires_grad_() for t in as_tuple(base)]

    def fn(x, *leaves):
        out, final = dispatch.run_sequence(cell, x, DREAMState(*leaves), backend)
        return (out, *as_tuple(final)[1:])

    assert torch.autograd.gradcheck(fn, (x, *leaves))


@pytest.mark.parametrize("backend", BACKENDS)
def test_chunked_sequence_continues_exactly(backend):
    """Two calls carrying the state equal one call (truncated BPTT chunks, rollouts at T = 1)."""
    cell = make_cell()
    x = torch.randn(10, 2, 5, dtype=F64)
    state = random_state(cell, 2)
    with torch.no_grad():
        whole, final = dispatch.run_sequence(cell, x, state, backend)
        first, mid = dispatch.run_sequence(cell, x[:4], state, backend)
        outs = [first]
        for t in range(4, 10):
            out, mid = dispatch.run_sequence(cell, x[t : t + 1], mid, backend)
            outs.append(out)
    assert torch.allclose(torch.cat(outs), whole, rtol=0, atol=1e-13)
    for a, b in zip(as_tuple(mid), as_tuple(final)):
        assert torch.allclose(a, b, rtol=0, atol=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_inputs_and_state(backend):
    """States decoded from the flat encoding are strided views; the input may be a transposed view."""
    cell = make_cell()
    state = random_state(cell, 3)
    flat = torch.cat([state.to_flat(cell.config), torch.zeros(3, 5, dtype=F64)], dim=1)[:, :-5]
    view_state = DREAMState.from_flat(flat, cell.config)
    assert not view_state.U.is_contiguous()
    x = torch.randn(3, 7, 5, dtype=F64).transpose(0, 1)  # (T, B, I), not contiguous
    with torch.no_grad():
        ref, ref_final = cell.reference_run_time_major(x, state)
        got, got_final = dispatch.run_sequence(cell, x, view_state, backend)
    assert torch.allclose(got, ref, rtol=1e-10, atol=1e-12)
    for a, b in zip(as_tuple(got_final), as_tuple(ref_final)):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_run_time_major_dispatch_and_backend_selection():
    cell = make_cell(dtype=torch.float32)
    x = torch.randn(3, 2, 5)
    state = cell.init_state(2)
    with torch.no_grad():
        ref, _ = cell.reference_run_time_major(x, state)
        assert dispatch.get_backend() in dispatch.BACKENDS
        for name in ("auto", "torch", "reference") + (("native",) if NATIVE else ()):
            cell.sequence_backend = name
            out, _ = cell.run_time_major(x, state)
            assert torch.allclose(out, ref, rtol=1e-4, atol=1e-5), name
        cell.sequence_backend = None
        previous = dispatch.get_backend()
        try:
            dispatch.set_backend("torch")
            assert dispatch.get_backend() == "torch"
            out, _ = cell.run_time_major(x, state)
            assert torch.allclose(out, ref, rtol=1e-4, atol=1e-5)
        finally:
            dispatch.set_backend(previous)
    with pytest.raises(KernelError, match="unknown sequence backend"):
        dispatch.set_backend("fastest")
    cell.sequence_backend = "fastest"
    with pytest.raises(KernelError, match="unknown DREAM sequence backend"):
        cell.run_time_major(x, state)


def test_unsupported_inputs_fall_back_to_the_reference():
    """Mixed dtypes go to the reference loop under 'auto' (which raises as it always did), and
    are refused by an explicitly requested fast backend."""
    cell = make_cell(dtype=torch.float32)
    x = torch.randn(3, 2, 5, dtype=F64)
    state = cell.init_state(2, dtype=F64)
    with pytest.raises(RuntimeError):
        dispatch.run_sequence(cell, x, state, "auto")
    with pytest.raises(KernelError, match="one device"):
        dispatch.run_sequence(cell, x, state, "torch")


def test_native_kernel_builds_where_a_compiler_exists():
    """On any machine with a C++ compiler (CI included) the C++ kernel must build and pass its self-test."""
    if os.environ.get("DREAM_RL_NO_EXTENSION", "").strip() not in ("", "0"):
        pytest.skip("disabled by DREAM_RL_NO_EXTENSION")
    if os.name == "nt" or not (os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")):
        pytest.skip("no C++ compiler")
    assert NATIVE, native.unavailable_reason()
    assert native.library_path() is not None and native.library_path().exists()


def fresh_native_loader(monkeypatch) -> None:
    """A not-yet-tried loader for the C++ kernel for this test (the process's own is restored after)."""
    monkeypatch.setattr(native, "_EXTENSION", build.OptionalExtension(native._EXTENSION.description, native._load))


def test_build_failure_warns_once_and_falls_back(tmp_path, monkeypatch):
    monkeypatch.setenv("DREAM_RL_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", "false")  # a "compiler" that always fails
    monkeypatch.delenv("DREAM_RL_NO_EXTENSION", raising=False)
    monkeypatch.setattr(build, "cpu_signature", lambda: "test-build-failure")  # a fresh cache key
    fresh_native_loader(monkeypatch)
    with pytest.warns(RuntimeWarning, match="C\\+\\+ sequence kernel unavailable"):
        assert native.load() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert native.load() is None  # no second warning, no second attempt
    assert "compilation failed" in native.unavailable_reason()
    # 'auto' still runs (pure PyTorch), 'native' says why it cannot
    cell = make_cell()
    x = torch.randn(2, 2, 5, dtype=F64)
    with torch.no_grad():
        out, _ = dispatch.run_sequence(cell, x, cell.init_state(2), "auto")
        ref, _ = cell.reference_run_time_major(x, cell.init_state(2))
    assert torch.allclose(out, ref, rtol=1e-10, atol=1e-12)
    with pytest.raises(KernelError, match="not available"):
        dispatch.run_sequence(cell, x, cell.init_state(2), "native")


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("DREAM_RL_NO_EXTENSION", "1")
    fresh_native_loader(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # disabling on purpose is silent
        assert native.load() is None
    assert "DREAM_RL_NO_EXTENSION" in native.unavailable_reason()


def test_vmap_over_the_batch_uses_the_reference_loop():
    """torch.func transforms see ordinary ops (the kernels take raw buffers): same result."""
    cell = make_cell()
    x = torch.randn(4, 3, 5, dtype=F64)
    state = random_state(cell, 3)

    def one(x_tbi, h, U, Ut, at, em, ev, avg):  # a batch of 1 inside vmap
        st = DREAMState(h[None], U[None], Ut[None], at[None], em[None], ev[None], avg[None])
        out, _ = cell.run_time_major(x_tbi[:, None], st)
        return out[:, 0]

    with torch.no_grad():
        got = torch.func.vmap(one, in_dims=(1, 0, 0, 0, 0, 0, 0, 0), out_dims=1)(x, *as_tuple(state))
        ref, _ = cell.reference_run_time_major(x, state)
    assert torch.allclose(got, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_torch_kernel_on_cuda_matches_the_cpu_reference():
    cell = make_cell()
    x = torch.randn(8, 3, 5, generator=torch.Generator().manual_seed(5), dtype=F64)
    state = random_state(cell, 3)
    ref = run(cell, x, state, "reference")
    cell_cuda = make_cell().cuda()
    state_cuda = DREAMState(*(t.cuda() for t in as_tuple(state)))
    got = run(cell_cuda, x.cuda(), state_cuda, "auto")
    assert_same(ref, {k: (v.cpu() if v is not None else None) for k, v in got.items()}, rtol=1e-8, atol=1e-10)


def test_parametrized_weight_goes_through_the_attribute():
    """A weight under torch.nn.utils.parametrize is not in _parameters: read it as the reference does."""
    from torch.nn.utils import parametrize

    class Scale(torch.nn.Module):
        def forward(self, w):
            return 0.5 * w

    cell = make_cell()
    parametrize.register_parametrization(cell, "weight_rec", Scale())
    x = torch.randn(5, 2, 5, dtype=F64)
    state = random_state(cell, 2)
    assert_same(run(cell, x, state, "reference"), run(cell, x, state, "auto"), rtol=1e-9, atol=1e-11)


def test_config_changes_are_seen_on_the_next_call():
    cell = make_cell()
    x = torch.randn(4, 2, 5, dtype=F64)
    state = random_state(cell, 2)
    with torch.no_grad():
        dispatch.run_sequence(cell, x, state, "auto")
        cell.config = dataclasses.replace(cell.config, kappa=1.0, ltc_enabled=False)
        got, _ = dispatch.run_sequence(cell, x, state, "auto")
        ref, _ = cell.reference_run_time_major(x, state)
    assert torch.allclose(got, ref, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ C++ kernel: threads, checkpoints, boundary

needs_native = pytest.mark.skipif(not NATIVE, reason="no C++ kernel here")


@needs_native
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("B", [1, 5, 9])
def test_native_threads_and_batch_chunks_match_reference(threads, B, monkeypatch):
    """The batch split over 1 or 2 threads (uneven slices, chunks of up to 4 samples, B = 1 with a
    thread to spare) changes nothing but the summation order of the parameter gradients."""
    monkeypatch.setattr(native, "MIN_WORK_FOR_THREADS", 0)  # thread even this small problem
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for case in ("default", "sleep_forced", "kappa_1_norm_binds"):
            cell = make_cell(**CASES[case])
            x = 1.5 * torch.randn(11, B, 5, generator=torch.Generator().manual_seed(B), dtype=F64)
            state = random_state(cell, B)
            assert_same(run(cell, x, state, "reference"), run(cell, x, state, "native"), rtol=1e-9, atol=1e-11)
    finally:
        torch.set_num_threads(previous)


@needs_native
@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc/self/maps")
def test_native_kernel_shares_torchs_openmp_runtime():
    """Built with OpenMP, the kernel must bind the libgomp torch loaded (its threads are torch's),
    not load a second runtime whose workers would compete with torch's for the cores."""
    native.load()
    with open("/proc/self/maps", encoding="utf-8") as maps:
        runtimes = {line.split()[-1] for line in maps if "libgomp" in line}
    assert len(runtimes) <= 1, f"two OpenMP runtimes loaded: {sorted(runtimes)}"


@needs_native
@pytest.mark.parametrize("interval", [1, 2, 3, 5, 11, 12])
def test_native_checkpoint_intervals_match_reference(interval, monkeypatch):
    """The backward recomputes the fast weights from checkpoints every K steps; any K (a partial last
    segment, one segment, a checkpoint every step) gives the reference's values."""
    monkeypatch.setattr(native, "checkpoint_interval", lambda T: interval)
    cell = make_cell(**CASES["sleep_forced"])
    x = 1.5 * torch.randn(12, 3, 5, generator=torch.Generator().manual_seed(11), dtype=F64)
    state = random_state(cell, 3)
    assert_same(run(cell, x, state, "reference"), run(cell, x, state, "native"), rtol=1e-9, atol=1e-11)


def _kernel_args(cell: DREAMCell, T: int, B: int, dtype=F64):
    p = cell._parameters
    params = tuple(p[n].detach() for n in ("weight_in", "bias", "weight_rec", "weight_pred", "weight_err",
                                            "plasticity", "log_tau_sys", "log_surprise_scale"))
    x = torch.randn(T, B, cell.config.input_dim, dtype=dtype)
    return dispatch.Consts.of(cell), cell.sensory_filter, x, params, as_tuple(random_state(cell, B, dtype=dtype))


def _wrong_shape(t: torch.Tensor) -> torch.Tensor:
    """Same dtype and device, one more element along the last axis."""
    shape = list(t.shape)
    shape[-1] += 1
    return torch.zeros(shape, dtype=t.dtype)


@needs_native
@pytest.mark.parametrize("index", range(17))
def test_native_boundary_rejects_any_mismatched_tensor(index):
    """Every tensor handed to the C++ forward is checked (shape, dtype, device, layout) before the call:
    a mismatch is a DREAMError naming it, never an out-of-bounds read."""
    kernel = native.load()
    cell = make_cell()
    k, V, x, params, states = _kernel_args(cell, 4, 2)
    tensors = [x, *params[:5], V, *params[5:], *states]
    name = native._FORWARD_NAMES[index]

    def call(replacement):
        ts = list(tensors)
        ts[index] = replacement
        kernel.forward(k, ts[6], ts[0], (*ts[1:6], *ts[7:10]), tuple(ts[10:]), True)

    # x and the filter define T, B, I and r (and x the dtype): a change there shows as the next
    # tensor that no longer fits
    pattern = "native DREAM kernel" if name in ("x", "sensory_filter") else name.replace(".", r"\.")
    for bad in (_wrong_shape(tensors[index]), tensors[index].float(), tensors[index].to("meta")):
        with pytest.raises(DREAMError, match=pattern):
            call(bad)
    if tensors[index].dim() == 2:
        with pytest.raises(DREAMError, match=pattern):
            call(tensors[index].to_sparse())


@needs_native
def test_native_boundary_state_of_another_config_is_an_error_not_a_crash():
    """The issue's crash: a rank-1 state handed to a rank-512 cell (and a rank-512 state to a rank-1
    cell, same hidden width) reached the C++ kernel unchecked."""
    big = DREAMCell(DREAMConfig(input_dim=4, hidden_dim=512, rank=512))
    small = DREAMCell(DREAMConfig(input_dim=4, hidden_dim=512, rank=1))
    x = torch.randn(3, 2, 4)
    for cell, other in ((big, small), (small, big)):
        with pytest.raises(DREAMError, match=r"state\.U"):
            dispatch.run_sequence(cell, x, other.init_state(2), "native")
        with pytest.raises(DREAMError, match=r"state\.U"):
            with torch.no_grad():
                dispatch.run_sequence(cell, x, other.init_state(2), "native")


@needs_native
@pytest.mark.parametrize("replace", ["sensory_filter", "weight_in", "weight_rec"])
def test_native_rollout_path_checks_weights_against_the_validated_state(replace):
    """On the no-grad path the kernel trusts the cell's check of the state's shapes (made against the
    config); a weight or filter replaced by one of another size must still be an error, never a read
    past the state's buffers."""
    cell = DREAMCell(DREAMConfig(input_dim=4, hidden_dim=16, rank=4))
    state = cell.init_state(2)
    bigger = {"sensory_filter": torch.randn(4, 8), "weight_in": torch.nn.Parameter(torch.randn(32, 4)),
              "weight_rec": torch.nn.Parameter(torch.randn(32, 32))}[replace]
    setattr(cell, replace, bigger)
    cell.sequence_backend = "native"
    with torch.no_grad(), pytest.raises(DREAMError, match="native DREAM kernel"):
        cell.run_time_major(torch.randn(1, 2, 4), state)


@needs_native
def test_native_rollout_path_still_checks_the_state_layout():
    """The no-grad path from the cell skips only the repeated shape/dtype/device check of the state:
    an expanded state is still made contiguous and a sparse one (right shape) is still refused."""
    cell = make_cell()
    cell.sequence_backend = "native"
    state = random_state(cell, 3)
    x = torch.randn(1, 3, 5, dtype=F64)
    expanded = dataclasses.replace(state, adaptive_tau=state.adaptive_tau[:1].expand(3))
    sparse = dataclasses.replace(state, error_mean=state.error_mean.to_sparse())
    with torch.no_grad():
        ref, _ = cell.reference_run_time_major(x, expanded)
        got, _ = cell.run_time_major(x, expanded)
        assert torch.allclose(got, ref, rtol=1e-10, atol=1e-12)
        with pytest.raises(DREAMError, match=r"state\.error_mean"):
            cell.run_time_major(x, sparse)


@needs_native
def test_native_boundary_checks_the_backward_inputs():
    kernel = native.load()
    cell = make_cell()
    k, V, x, params, states = _kernel_args(cell, 6, 2)
    out, final, saved = kernel.forward(k, V, x, params, states, True)
    g_out = torch.randn_like(out)
    g_final = tuple(torch.randn_like(t) for t in final)
    kernel.backward(k, V, x, states[0], states[1], out, params, saved, g_out, g_final)  # fine as built
    four = torch.cat([saved.U_ckpt[:1]] * 4)  # no interval gives 4 checkpoints over 6 steps
    for bad in (saved.U_ckpt[:0], four):
        with pytest.raises(DREAMError, match="checkpoints"):
            kernel.backward(k, V, x, states[0], states[1], out, params, saved._replace(U_ckpt=bad), g_out, g_final)
    with pytest.raises(DREAMError, match=r"saved\.Ut_ckpt"):  # one checkpoint (K = 6) for U, three for U_target
        kernel.backward(k, V, x, states[0], states[1], out, params, saved._replace(U_ckpt=saved.U_ckpt[:1]),
                        g_out, g_final)
    with pytest.raises(DREAMError, match=r"saved\.e"):
        kernel.backward(k, V, x, states[0], states[1], out, params, saved._replace(e=saved.e[:, :1]), g_out, g_final)
    with pytest.raises(DREAMError, match="grad of outputs"):
        kernel.backward(k, V, x, states[0], states[1], out, params, saved, g_out[:-1], g_final)
    with pytest.raises(DREAMError, match=r"state\.h"):
        kernel.backward(k, V, x, states[0][:1], states[1], out, params, saved, g_out, g_final)
    with pytest.raises(DREAMError, match="NativeSaved"):
        kernel.backward(k, V, x, states[0], states[1], out, params, tuple(saved), g_out, g_final)


@needs_native
def test_native_boundary_resolves_lazy_negation_and_strides():
    """A lazily negated view (its buffer holds the un-negated values) and an expanded view are
    materialised before the kernel reads them."""
    cell = make_cell()
    state = random_state(cell, 3)
    x = torch.randn(4, 3, 5, dtype=F64)
    neg_x = torch._neg_view(-x)
    assert neg_x.is_neg()
    expanded = dataclasses.replace(state, adaptive_tau=state.adaptive_tau[:1].expand(3))
    with torch.no_grad():
        ref, _ = cell.reference_run_time_major(x, expanded)
        got, _ = dispatch.run_sequence(cell, neg_x, expanded, "native")
    assert torch.allclose(got, ref, rtol=1e-10, atol=1e-12)
