"""The fused GRU (dream_rl.torsos.gru_kernel) equals nn.GRU: values and gradients, float64, every kernel.

Outputs, final state and the gradients of the input, the initial state and all four parameter
tensors of every layer, against ``nn.GRU`` on the same parameters; hidden sizes that are and are
not multiples of the SIMD width, batch 1 and odd batches, T = 1, several layers, no bias,
saturated gates, NaN kept to its own sample. The GRU torso keeps nn.GRU's parameter names.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from dream_rl import GruTorso, KernelError
from dream_rl._native import build
from dream_rl.torsos import gru_kernel

NATIVE = gru_kernel.native_kernel() is not None
KERNELS = ["torch", pytest.param("native", marks=pytest.mark.skipif(not NATIVE, reason="no C++ kernel here"))]
F64 = torch.float64
# (T, B, I, H, layers): tails of the vector width (H = 1, 5, 17, 33), whole vectors (16, 64), odd
# batches (1, 3, 9, 13: every row-tile size), T = 1
CASES = [(6, 3, 4, 5, 1), (1, 1, 2, 1, 1), (5, 9, 3, 17, 2), (4, 13, 7, 16, 3), (3, 2, 5, 64, 1), (8, 4, 6, 33, 2)]


def gru_and_inputs(T: int, B: int, I: int, H: int, layers: int, bias: bool = True, seed: int = 0, scale: float = 1.0):
    torch.manual_seed(seed)
    rnn = nn.GRU(I, H, num_layers=layers, bias=bias).double()
    x = (scale * torch.randn(T, B, I, dtype=F64)).requires_grad_()
    h0 = (0.5 * torch.randn(layers, B, H, dtype=F64)).requires_grad_()
    return rnn, x, h0


def values_and_grads(run, rnn: nn.GRU, x: torch.Tensor, h0: torch.Tensor, seed: int = 1) -> list[torch.Tensor]:
    """out, h_n and d(loss)/d(x, h0, every parameter) for a loss on both outputs."""
    out, h_n = run()
    g = torch.Generator().manual_seed(seed)
    g_out = torch.randn(out.shape, generator=g, dtype=out.dtype)
    g_h = torch.randn(h_n.shape, generator=g, dtype=out.dtype)
    grads = torch.autograd.grad((out * g_out).sum() + (h_n * g_h).sum(), [x, h0, *rnn.parameters()])
    return [out, h_n, *grads]


def assert_all_close(got: list[torch.Tensor], expected: list[torch.Tensor], rtol: float, atol: float) -> None:
    assert len(got) == len(expected)
    for i, (a, b) in enumerate(zip(got, expected)):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m, i=i: f"tensor {i}: {m}")


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "T{}-B{}-I{}-H{}-L{}".format(*c))
def test_values_and_gradients_equal_nn_gru(kernel, case):
    rnn, x, h0 = gru_and_inputs(*case)
    expected = values_and_grads(lambda: rnn(x, h0), rnn, x, h0)
    got = values_and_grads(lambda: gru_kernel.gru_forward(rnn, x, h0, kernel), rnn, x, h0)
    assert_all_close(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kernel", KERNELS)
def test_without_bias(kernel):
    rnn, x, h0 = gru_and_inputs(5, 3, 4, 9, 2, bias=False)
    expected = values_and_grads(lambda: rnn(x, h0), rnn, x, h0)
    got = values_and_grads(lambda: gru_kernel.gru_forward(rnn, x, h0, kernel), rnn, x, h0)
    assert_all_close(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kernel", KERNELS)
def test_saturated_gates(kernel):
    """Inputs 50x too large drive every gate into saturation: exp's clamping must not show."""
    rnn, x, h0 = gru_and_inputs(6, 5, 3, 20, 1, scale=50.0)
    expected = values_and_grads(lambda: rnn(x, h0), rnn, x, h0)
    got = values_and_grads(lambda: gru_kernel.gru_forward(rnn, x, h0, kernel), rnn, x, h0)
    assert all(torch.isfinite(t).all() for t in got)
    assert_all_close(got, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kernel", KERNELS)
def test_float32_close_to_nn_gru(kernel):
    torch.manual_seed(0)
    rnn = nn.GRU(6, 40, num_layers=2)
    x = torch.randn(12, 7, 6, requires_grad=True)
    h0 = torch.randn(2, 7, 40, requires_grad=True)
    expected = values_and_grads(lambda: rnn(x, h0), rnn, x, h0)
    got = values_and_grads(lambda: gru_kernel.gru_forward(rnn, x, h0, kernel), rnn, x, h0)
    assert all(t.dtype == torch.float32 for t in got)
    assert_all_close(got, expected, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("kernel", KERNELS)
def test_inference_path_equals_training_path(kernel):
    """Without gradients nothing is saved for a backward; the values are the same."""
    rnn, x, h0 = gru_and_inputs(7, 4, 3, 18, 2)
    with torch.no_grad():
        out, h_n = gru_kernel.gru_forward(rnn, x, h0, kernel)
        ref_out, ref_h = rnn(x, h0)
    assert not out.requires_grad
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h_n, ref_h, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kernel", KERNELS)
def test_nan_stays_in_its_sample(kernel):
    """Samples never interact: a NaN input in sample 0 leaves the other samples' values and input
    gradients finite and equal to a clean run's."""
    rnn, x, h0 = gru_and_inputs(5, 4, 3, 21, 2)
    bad = x.detach().clone()
    bad[2, 0, 1] = float("nan")
    bad.requires_grad_()
    out, h_n = gru_kernel.gru_forward(rnn, bad, h0.detach(), kernel)
    (g_bad,) = torch.autograd.grad(out[:, 1:].sum() + h_n[:, 1:].sum(), bad)
    ref_out, ref_h = rnn(x, h0)
    (g_ref,) = torch.autograd.grad(ref_out[:, 1:].sum() + ref_h[:, 1:].sum(), x)
    assert torch.isnan(out[2:, 0]).all()
    torch.testing.assert_close(out[:, 1:], ref_out[:, 1:], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g_bad[:, 1:], g_ref[:, 1:], rtol=1e-10, atol=1e-12)


def test_gradients_reach_only_what_requires_them():
    """A frozen h0 and frozen hidden weights get no gradient; the rest still matches nn.GRU."""
    rnn, x, h0 = gru_and_inputs(4, 3, 2, 6, 1)
    h0 = h0.detach()
    rnn.weight_hh_l0.requires_grad_(False)
    out, _ = gru_kernel.gru_forward(rnn, x, h0)
    out.sum().backward()
    assert rnn.weight_hh_l0.grad is None and rnn.bias_hh_l0.grad is not None
    g_x = x.grad.clone()
    x.grad = None
    rnn(x, h0)[0].sum().backward()
    torch.testing.assert_close(g_x, x.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.skipif(not NATIVE, reason="no C++ kernel here")
def test_native_kernel_rejects_bad_buffers():
    """Every buffer is checked before C++ sees it: shape, dtype, contiguity, device, sizes > 0."""
    kernel = gru_kernel.native_kernel()
    T, B, H = 3, 2, 4
    gi, w, b, h0 = torch.zeros(T, B, 3 * H), torch.zeros(3 * H, H), torch.zeros(3 * H), torch.zeros(B, H)
    kernel.forward(gi, w, b, h0, True)  # the good call works
    bad_calls = {
        "h0 has shape": (gi, w, b, torch.zeros(B + 1, H)),
        "w_hh has shape": (gi, torch.zeros(3 * H, H + 1), b, h0),
        "b_hh has shape": (gi, w, torch.zeros(2 * H), h0),
        "expected torch.float32": (gi, w.double(), b, h0),
        "contiguous": (gi, torch.zeros(H, 3 * H).t(), b, h0),
        "float32 or float64": (gi.half(), w.half(), b.half(), h0.half()),
    }
    for message, args in bad_calls.items():
        with pytest.raises(KernelError, match=message):
            kernel.forward(*args, True)
    out, hn = kernel.forward(gi, w, b, h0, True)
    with pytest.raises(KernelError, match="hn has shape"):
        kernel.backward(w, h0, out, gi, hn[:, :, :-1], out)
    with pytest.raises(KernelError, match="gates has shape"):
        kernel.backward(w, h0, out, gi[:-1], hn, out)
    with pytest.raises(KernelError, match="g_out has shape"):
        kernel.backward(w, h0, out, gi, hn, out[:-1])
    with pytest.raises(KernelError, match="all sizes > 0"):
        kernel.forward(gi[:0], w, b, h0, True)
    with pytest.raises(KernelError, match="out has shape"):
        kernel.mm(gi[0], w, out=torch.zeros(B, H + 1))
    with pytest.raises(KernelError, match="out must not be an input"):
        square = torch.zeros(H, H)
        kernel.mm(square, square, out=square)


@pytest.mark.parametrize("kernel", KERNELS)
def test_a_second_backward_is_refused(kernel):
    """The backward turns the saved gates into gradients in place: differentiating the same graph
    twice (retain_graph=True) raises instead of returning wrong gradients."""
    rnn, x, h0 = gru_and_inputs(4, 2, 3, 6, 1)
    out, _ = gru_kernel.gru_forward(rnn, x, h0, kernel)
    out.sum().backward(retain_graph=True)
    with pytest.raises(KernelError, match="one backward pass"):
        out.sum().backward()


@pytest.mark.skipif(not NATIVE, reason="no C++ kernel here")
@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("shape", [(1, 1, 1), (13, 37, 300), (40, 16, 5), (9, 33, 129), (100, 8, 384)])
def test_native_matrix_product_equals_torch(dtype, shape):
    """The C++ products (input projection, weight and input gradients) on strided views: transposes,
    every row-tile size, column tails, k over several chunks, with and without bias."""
    M, N, K = shape
    g = torch.Generator().manual_seed(M * N * K)
    kernel = gru_kernel.native_kernel()
    a = torch.randn(M, K, generator=g, dtype=dtype)
    a_t = torch.randn(K, M, generator=g, dtype=dtype).t()
    b = torch.randn(K, N, generator=g, dtype=dtype)
    b_t = torch.randn(N, K, generator=g, dtype=dtype).t()
    bias = torch.randn(N, generator=g, dtype=dtype)
    tol = dict(rtol=1e-11, atol=1e-11) if dtype == F64 else dict(rtol=1e-4, atol=1e-4)
    for left in (a, a_t):
        for right in (b, b_t):
            torch.testing.assert_close(kernel.mm(left, right), left @ right, **tol)
            torch.testing.assert_close(kernel.mm(left, right, bias), torch.addmm(bias, left, right), **tol)
    target = torch.full((M + 2, N), 7.0, dtype=dtype)
    kernel.mm(a, b, out=target[1:-1])  # into rows of a bigger tensor, nothing else touched
    torch.testing.assert_close(target[1:-1], a @ b, **tol)
    assert (target[0] == 7).all() and (target[-1] == 7).all()
    sliced = torch.randn(M, 2 * K, generator=g, dtype=dtype)[:, ::2]  # a non-unit k stride
    torch.testing.assert_close(kernel.mm(sliced, b), sliced @ b, **tol)
    with pytest.raises(KernelError, match="cannot multiply"):
        kernel.mm(a, b[:-1] if K > 1 else torch.zeros(2, N, dtype=dtype))
    with pytest.raises(KernelError, match="bias has shape"):
        kernel.mm(a, b, torch.zeros(N + 1, dtype=dtype))


def test_unknown_backend_and_layout_are_rejected():
    rnn, x, h0 = gru_and_inputs(2, 2, 3, 4, 1)
    with pytest.raises(KernelError, match="unknown GRU backend"):
        gru_kernel.gru_forward(rnn, x, h0, "fast")
    with pytest.raises(KernelError, match="unknown GRU backend"):
        GruTorso(3, 4, backend="fast")
    with pytest.raises(KernelError, match="parameters are"):
        gru_kernel.gru_forward(rnn, x.float(), h0.float(), "torch")
    with pytest.raises(KernelError, match="GRU state must be"):
        gru_kernel.gru_forward(rnn, x, h0[:, :1], "torch")
    with pytest.raises(KernelError, match="GRU input must be"):
        gru_kernel.gru_forward(rnn, x[:, :, :2], h0, "torch")
    with pytest.raises(KernelError, match="unidirectional"):
        gru_kernel.gru_forward(nn.GRU(3, 4, batch_first=True).double(), x, h0, "torch")


# ---------------------------------------------------------------------------------------------
# the torso


@pytest.mark.parametrize("backend", ["auto", "torch", "module"])
def test_torso_equals_nn_gru_and_keeps_its_parameter_names(backend):
    torch.manual_seed(0)
    torso = GruTorso(5, 12, num_layers=2, backend=backend).double()
    assert sorted(name for name, _ in torso.named_parameters()) == sorted(
        f"rnn.{kind}_{part}_l{layer}" for kind in ("weight", "bias") for part in ("ih", "hh") for layer in (0, 1)
    )
    x = torch.randn(9, 3, 5, dtype=F64, requires_grad=True)
    state = 0.3 * torch.randn(3, torso.state_size, dtype=F64)
    out, final = torso(x, state)
    h0 = state.reshape(3, 2, 12).transpose(0, 1)
    ref_out, ref_h = torso.rnn(x, h0)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(final, ref_h.transpose(0, 1).reshape(3, -1), rtol=1e-10, atol=1e-12)


def test_torso_loads_a_checkpoint_of_the_nn_gru_torso():
    """A state dict saved from an nn.GRU held as ``rnn`` (the torso before the fused path) loads
    unchanged and gives nn.GRU's values."""
    torch.manual_seed(3)
    old = nn.Module()
    old.rnn = nn.GRU(4, 10, num_layers=2)
    torso = GruTorso(4, 10, num_layers=2)
    torso.load_state_dict(old.state_dict())
    x = torch.randn(6, 2, 4)
    out, _ = torso(x, torso.initial_state(2))
    torch.testing.assert_close(out, old.rnn(x)[0], rtol=1e-5, atol=1e-6)


def test_torso_dropout_between_layers_only_in_training():
    torch.manual_seed(0)
    torso = GruTorso(3, 16, num_layers=2, dropout=0.5).double()
    x = torch.randn(5, 4, 3, dtype=F64)
    state = torso.initial_state(4, dtype=F64)
    torso.eval()
    out_eval, _ = torso(x, state)
    torch.testing.assert_close(out_eval, torso.rnn(x)[0], rtol=1e-10, atol=1e-12)
    torso.train()
    out_train, _ = torso(x, state)
    assert not torch.allclose(out_train, out_eval)


def test_without_compiler_the_torch_kernel_runs():
    """DREAM_RL_NO_EXTENSION=1: no build is tried, no warning, auto uses the pure-PyTorch kernel."""
    code = textwrap.dedent(
        """
        import warnings
        warnings.simplefilter("error")
        import torch
        from torch import nn
        from dream_rl.torsos import gru_kernel
        assert gru_kernel.native_kernel() is None
        assert "DREAM_RL_NO_EXTENSION" in gru_kernel.native_unavailable_reason()
        x = torch.randn(3, 2, 4, dtype=torch.float64)
        assert gru_kernel.select_kernel(x, "auto") is gru_kernel.TORCH_KERNEL
        rnn = nn.GRU(4, 6).double()
        h0 = torch.zeros(1, 2, 6, dtype=torch.float64)
        torch.testing.assert_close(gru_kernel.gru_forward(rnn, x, h0)[0], rnn(x, h0)[0])
        try:
            gru_kernel.gru_forward(rnn, x, h0, "native")
        except ValueError as exc:
            assert "not available" in str(exc)
        else:
            raise AssertionError("backend='native' did not raise")
        print("ok")
        """
    )
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, DREAM_RL_NO_EXTENSION="1", PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


@pytest.mark.skipif(not NATIVE, reason="no C++ kernel here")
@pytest.mark.parametrize(
    "flags",
    [
        pytest.param(("-mavx2", "-mfma"), marks=pytest.mark.skipif(platform.machine() != "x86_64", reason="x86 only")),
        (),
    ],
    ids=["avx2", "generic"],
)
def test_builds_without_avx512_are_correct_too(flags, tmp_path, monkeypatch):
    """The narrower SIMD paths (32-byte vectors, 4-row tiles; what -march=native gives on most
    machines, and the portable fallback build) against nn.GRU, not only the self-test."""
    monkeypatch.setenv("DREAM_RL_CACHE_DIR", str(tmp_path))
    lib, _ = build.compile_and_load(gru_kernel.SOURCE, flag_sets=[flags])
    kernel = gru_kernel._NativeKernel(lib)
    assert lib.gru_seq_float_lanes() == 8
    gru_kernel._self_test(kernel)
    for case in CASES:
        rnn, x, h0 = gru_and_inputs(*case)
        expected = values_and_grads(lambda: rnn(x, h0), rnn, x, h0)
        got = values_and_grads(lambda: run_layers(rnn, x, h0, kernel), rnn, x, h0)
        assert_all_close(got, expected, rtol=1e-10, atol=1e-12)


def run_layers(rnn: nn.GRU, x: torch.Tensor, h0: torch.Tensor, kernel) -> tuple[torch.Tensor, torch.Tensor]:
    """gru_forward with a given kernel object."""
    finals = []
    for layer in range(rnn.num_layers):
        params = [getattr(rnn, f"{kind}_l{layer}") for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        x = gru_kernel.gru_layer(x, h0[layer], *params, kernel)
        finals.append(x[-1])
    return x, torch.stack(finals)
