"""A fused whole-sequence GRU: ``nn.GRU``'s values and gradients, computed much faster on CPU.

``nn.GRU``'s CPU path runs a handful of small ops per step and lets autograd record each, so its
forward+backward costs several times ``nn.LSTM``'s (oneDNN-fused) at RL sizes. Here one layer over
a whole sequence is:

1. the input projection of all T steps, ``gi = x W_ih^T + b_ih``: one matrix product;
2. the h-recurrence (``W_hh h`` and the gates, step by step) as one autograd node with a
   hand-written backward: a C++ kernel (``dream_rl/_native/gru_seq.cpp``, built on first use by
   :mod:`dream_rl._native.build`) or the pure-PyTorch kernel below (same loops, torch ops);
3. the gradients of the input and of all four parameter tensors: one matrix product (or sum) over
   the whole sequence each.

Steps 1-3 form one autograd node per layer. With the C++ kernel the matrix products are the C++
file's own too (blocked, register-tiled, compiled with ``-march=native``): on the AMD EPYC used for
``scripts/bench_gru.py`` torch's MKL products ran at about half their rate (43 against 79 GMAC/s
for the weight gradient at B=8, H=256, one thread) and would have cost more than the recurrence.
With the pure-PyTorch kernel they are ``torch.mm``.

The parameters are an ``nn.GRU``'s own (``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
``bias_hh_l{k}``, gates in the order r, z, n), so :func:`gru_forward` is a drop-in for
``rnn(x, h0)`` and checkpoints are unchanged.

Backends (:mod:`dream_rl._native.backends`, the vocabulary DREAM's kernels use too): ``"native"`` (the
C++ kernel: CPU, float32/float64), ``"torch"`` (the pure-PyTorch kernel, any device), ``"reference"``
(``nn.GRU`` itself: cuDNN on CUDA; ``"module"`` is accepted as an alias) and ``"auto"``:
native where it applies, else ``nn.GRU`` on CUDA (cuDNN is already fused there), else the torch
kernel. ``DREAM_RL_NO_EXTENSION=1`` disables the C++ kernel. Under ``torch.compile`` or a
``torch.func`` transform ``auto`` uses ``nn.GRU``.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from dream_rl._native import SOURCE_DIR, build
from dream_rl._native.backends import BACKENDS, check_backend, get_backend
from dream_rl.errors import KernelError

__all__ = [
    "BACKENDS",
    "TORCH_KERNEL",
    "Kernel",
    "gru_forward",
    "gru_layer",
    "native_kernel",
    "native_unavailable_reason",
    "select_kernel",
]

ABI_VERSION = 3
SOURCE = SOURCE_DIR / "gru_seq.cpp"


class Kernel(Protocol):
    """The h-recurrence of one layer and the matrix products around it.

    Shapes: gi (T,B,3H) input pre-activations [r|z|n] with b_ih added, w_hh (3H,H), b_hh (3H),
    h0 (B,H), out (T,B,H), hn (T,B,H) = W_hn h + b_hn per step, g_out (T,B,H), g_h0 (B,H). Buffers
    are reused in place (less memory traffic): with ``save`` the forward overwrites ``gi`` with the
    gates r, z, n; the backward overwrites those gates with d_gi (the gradient of gi) and ``hn``
    with dn * r, the n part of d_gh (the gradient of W_hh h + b_hh, whose r and z parts are d_gi's).
    """

    name: str

    def forward(self, gi: Tensor, w_hh: Tensor, b_hh: Tensor, h0: Tensor, save: bool) -> tuple[Tensor, Tensor | None]:
        """→ out, hn (None without ``save``)."""
        ...

    def backward(self, w_hh: Tensor, h0: Tensor, out: Tensor, gates: Tensor, hn: Tensor, g_out: Tensor) -> Tensor:
        """Turns ``gates`` into d_gi and ``hn`` into d_gh's n part; → g_h0."""
        ...

    def mm(self, a: Tensor, b: Tensor, bias: Tensor | None = None, out: Tensor | None = None) -> Tensor:
        """``a (M,K) @ b (K,N) [+ bias (N)]`` into ``out`` (contiguous (M, N)) or a new tensor; a and
        b may be strided views."""
        ...


# ---------------------------------------------------------------------------------------------
# the pure-PyTorch kernel (any device): the readable version of the C++ loops


class _TorchKernel:
    """The recurrence in torch ops. Small per-step ops cost their dispatch overhead, so each step
    does only what depends on the previous one: the forward writes straight into its buffers
    (``out=`` and in-place ops), the backward precomputes every factor that does not depend on
    dL/dh for all steps at once and keeps one product and two element-wise ops in the loop."""

    name = "torch"

    @staticmethod
    def forward(gi: Tensor, w_hh: Tensor, b_hh: Tensor, h0: Tensor, save: bool) -> tuple[Tensor, Tensor | None]:
        T, B, H3 = gi.shape
        H = H3 // 3
        w_rz, w_n = w_hh[: 2 * H].t(), w_hh[2 * H :].t()
        b_rz, b_n = b_hh[: 2 * H], b_hh[2 * H :]
        out = gi.new_empty(T, B, H)
        hn_all = gi.new_empty(T, B, H) if save else None
        gates = gi if save else gi.clone()  # overwritten in place by the gates r, z, n
        gh_rz, hn_tmp = gi.new_empty(B, 2 * H), gi.new_empty(B, H)
        h = h0
        with torch.no_grad():
            for t in range(T):
                hn = hn_tmp if hn_all is None else hn_all[t]
                torch.addmm(b_rz, h, w_rz, out=gh_rz)
                torch.addmm(b_n, h, w_n, out=hn)
                rz = gates[t, :, : 2 * H].add_(gh_rz).sigmoid_()
                n = gates[t, :, 2 * H :].addcmul_(rz[:, :H], hn).tanh_()
                h = torch.lerp(n, h, rz[:, H:], out=out[t])  # n + z (h - n) = (1 - z) n + z h
        return out, hn_all

    @staticmethod
    def backward(w_hh: Tensor, h0: Tensor, out: Tensor, gates: Tensor, hn: Tensor, g_out: Tensor) -> Tensor:
        T, B, H = out.shape
        with torch.no_grad():
            r, z, n = gates.split(H, dim=2)
            h_prev = torch.cat([h0.unsqueeze(0), out[:-1]])
            # d_gh[t] = dh_t * factors[t] for the r, z and n parts; dn = dh * dn_factor
            dn_factor = (1 - z) * (1 - n * n)
            factors = torch.cat([dn_factor * hn * r * (1 - r), (h_prev - n) * z * (1 - z), dn_factor * r], dim=2)
            factors = factors.view(T, B, 3, H)
            d_gh = torch.empty_like(factors)
            dh_all = torch.empty_like(out)
            carry = torch.zeros_like(h0)  # dL/dh_t through step t+1
            for t in range(T - 1, -1, -1):
                dh = torch.add(g_out[t], carry, out=dh_all[t])
                torch.mul(factors[t], dh.unsqueeze(1), out=d_gh[t])
                carry = torch.addmm(dh * z[t], d_gh[t].view(B, 3 * H), w_hh)
            d_gh = d_gh.view(T, B, 3 * H)
            hn.copy_(d_gh[:, :, 2 * H :])
            gates[:, :, 2 * H :] = dh_all * dn_factor
            gates[:, :, : 2 * H] = d_gh[:, :, : 2 * H]
        return carry

    @staticmethod
    def mm(a: Tensor, b: Tensor, bias: Tensor | None = None, out: Tensor | None = None) -> Tensor:
        if out is None:
            return a @ b if bias is None else torch.addmm(bias, a, b)
        return torch.mm(a, b, out=out) if bias is None else torch.addmm(bias, a, b, out=out)


TORCH_KERNEL = _TorchKernel()


# ---------------------------------------------------------------------------------------------
# the C++ kernel


class _NativeKernel:
    """ctypes front-end of ``gru_seq.cpp``. Every tensor is checked (device, dtype, contiguity,
    exact shape) before its pointer is handed over: the C++ code trusts the shapes it is given."""

    name = "native"

    def __init__(self, lib: ctypes.CDLL) -> None:
        lib.gru_seq_abi_version.restype = ctypes.c_int64
        if lib.gru_seq_abi_version() != ABI_VERSION:
            raise build.Unavailable("stale library (ABI version mismatch)")
        p = ctypes.c_void_p
        self._fns: dict[tuple[str, torch.dtype], Any] = {}
        for dtype, suffix in ((torch.float32, "f32"), (torch.float64, "f64")):
            fwd = getattr(lib, f"gru_seq_forward_{suffix}")
            fwd.argtypes, fwd.restype = [p] * 7, ctypes.c_int
            bwd = getattr(lib, f"gru_seq_backward_{suffix}")
            bwd.argtypes, bwd.restype = [p] * 8, ctypes.c_int
            gemm = getattr(lib, f"gru_seq_gemm_{suffix}")
            gemm.argtypes, gemm.restype = [p] * 5, ctypes.c_int
            self._fns["forward", dtype] = fwd
            self._fns["backward", dtype] = bwd
            self._fns["gemm", dtype] = gemm

    @staticmethod
    def supports(t: Tensor) -> bool:
        return t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64)

    def forward(self, gi: Tensor, w_hh: Tensor, b_hh: Tensor, h0: Tensor, save: bool) -> tuple[Tensor, Tensor | None]:
        T, B, H3 = gi.shape
        H = H3 // 3
        _check_buffers(gi.dtype, gi=(gi, (T, B, 3 * H)), w_hh=(w_hh, (3 * H, H)), b_hh=(b_hh, (3 * H,)),
                       h0=(h0, (B, H)))
        out = gi.new_empty(T, B, H)
        hn = gi.new_empty(T, B, H) if save else None
        dims = (ctypes.c_int64 * 3)(T, B, H)
        status = self._fns["forward", gi.dtype](
            ctypes.addressof(dims), gi.data_ptr(), w_hh.data_ptr(), b_hh.data_ptr(), h0.data_ptr(), out.data_ptr(),
            None if hn is None else hn.data_ptr(),
        )
        if status != 0:
            raise KernelError(f"GRU kernel rejected the sizes T={T}, B={B}, H={H}")
        return out, hn

    def backward(self, w_hh: Tensor, h0: Tensor, out: Tensor, gates: Tensor, hn: Tensor, g_out: Tensor) -> Tensor:
        T, B, H = out.shape
        _check_buffers(out.dtype, w_hh=(w_hh, (3 * H, H)), h0=(h0, (B, H)), out=(out, (T, B, H)),
                       gates=(gates, (T, B, 3 * H)), hn=(hn, (T, B, H)), g_out=(g_out, (T, B, H)))
        g_h0 = out.new_empty(B, H)
        dims = (ctypes.c_int64 * 3)(T, B, H)
        status = self._fns["backward", out.dtype](
            ctypes.addressof(dims), w_hh.data_ptr(), h0.data_ptr(), out.data_ptr(), g_out.data_ptr(),
            gates.data_ptr(), hn.data_ptr(), g_h0.data_ptr(),
        )
        if status != 0:
            raise KernelError(f"GRU kernel rejected the sizes T={T}, B={B}, H={H}")
        return g_h0

    def mm(self, a: Tensor, b: Tensor, bias: Tensor | None = None, out: Tensor | None = None) -> Tensor:
        if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
            raise KernelError(f"GRU kernel mm: cannot multiply {tuple(a.shape)} by {tuple(b.shape)}")
        (M, K), N = a.shape, b.shape[1]
        # a and b are read through their own strides: a valid torch view lies inside its storage
        _check_buffers(a.dtype, a=(a, (M, K)), b=(b, (K, N)), strided=True)
        if bias is not None:
            _check_buffers(a.dtype, bias=(bias, (N,)))
        c = a.new_empty(M, N) if out is None else out
        _check_buffers(a.dtype, out=(c, (M, N)))
        if c.data_ptr() in (a.data_ptr(), b.data_ptr()):
            raise KernelError("GRU kernel mm: out must not be an input")
        dims = (ctypes.c_int64 * 7)(M, N, K, a.stride(0), a.stride(1), b.stride(0), b.stride(1))
        status = self._fns["gemm", a.dtype](
            ctypes.addressof(dims), a.data_ptr(), b.data_ptr(), None if bias is None else bias.data_ptr(), c.data_ptr()
        )
        if status != 0:
            raise KernelError(f"GRU kernel rejected the product {tuple(a.shape)} @ {tuple(b.shape)}")
        return c


def _check_buffers(dtype: torch.dtype, strided: bool = False, **tensors: tuple[Tensor, tuple[int, ...]]) -> None:
    """Every tensor a CPU buffer of ``dtype`` with exactly the given shape, all sizes > 0, contiguous
    (or, with ``strided``, any non-negative strides)."""
    if dtype not in (torch.float32, torch.float64):
        raise KernelError(f"the C++ GRU kernel takes float32 or float64, got {dtype}; use backend='torch'")
    for name, (t, shape) in tensors.items():
        if t.device.type != "cpu":
            raise KernelError(f"the C++ GRU kernel runs on CPU; {name} is on {t.device}: use backend='torch'")
        if t.dtype != dtype:
            raise KernelError(f"GRU kernel: {name} is {t.dtype}, expected {dtype} like the input")
        if tuple(t.shape) != shape or min(shape) <= 0:
            raise KernelError(f"GRU kernel: {name} has shape {tuple(t.shape)}, expected {shape} (all sizes > 0)")
        if strided:
            if any(st < 0 for st in t.stride()):
                raise KernelError(f"GRU kernel: {name} has a negative stride")
        elif not t.is_contiguous():
            raise KernelError(f"GRU kernel: {name} must be contiguous")


def _self_test(kernel: _NativeKernel) -> None:
    """The C++ kernel against the pure-PyTorch one on small problems (float64 and float32, a hidden
    size that is not a multiple of the vector width, odd batch sizes, saturated gates)."""
    gen = torch.Generator().manual_seed(0)
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        for T, B, H in ((3, 3, 5), (2, 9, 17), (1, 1, 1)):
            gi = 3 * torch.randn(T, B, 3 * H, generator=gen, dtype=dtype)
            w_hh = torch.randn(3 * H, H, generator=gen, dtype=dtype) / H**0.5
            b_hh = torch.randn(3 * H, generator=gen, dtype=dtype)
            h0 = torch.randn(B, H, generator=gen, dtype=dtype).tanh()
            gi[0, 0, 0], gi[-1, -1, -1] = 200.0, -200.0  # saturated gates stay finite
            g_out = torch.randn(T, B, H, generator=gen, dtype=dtype)
            results = []
            for k in (TORCH_KERNEL, kernel):
                gates = gi.clone()  # overwritten in place: gates, then their gradients
                out, hn = k.forward(gates, w_hh, b_hh, h0, True)
                assert hn is not None
                saved = (gates.clone(), hn.clone())
                g_h0 = k.backward(w_hh, h0, out, gates, hn, g_out)
                results.append((out, *saved, gates, hn, g_h0, k.forward(gi.clone(), w_hh, b_hh, h0, False)[0]))
            ref, got = results
            a_mat = torch.randn(3 * H + 2, T * B + 140, generator=gen, dtype=dtype)  # k spans two chunks
            b_mat = torch.randn(3 * H + 2, 2 * H + 1, generator=gen, dtype=dtype)
            products = ((a_mat.t(), b_mat, b_hh[: 2 * H + 1]), (a_mat.t(), b_mat, None), (b_mat.t(), a_mat, None))
            ref_mm = [TORCH_KERNEL.mm(*args) for args in products]
            got_mm = [kernel.mm(*args) for args in products]
            got_mm.append(kernel.mm(*products[0], out=torch.empty_like(ref_mm[0])))
            ref_mm.append(ref_mm[0])
            for a, b in zip((*ref, *ref_mm), (*got, *got_mm)):
                if not torch.allclose(a, b, rtol=tol, atol=tol):
                    raise build.Unavailable(
                        f"self-test failed ({dtype}, T={T}, B={B}, H={H}): max error {(a - b).abs().max().item():.3g}"
                    )


def _load_native() -> tuple[_NativeKernel, Path]:
    lib, path = build.compile_and_load(SOURCE)
    kernel = _NativeKernel(lib)
    _self_test(kernel)
    return kernel, path


_NATIVE = build.OptionalExtension("C++ GRU kernel", _load_native)


def native_kernel() -> _NativeKernel | None:
    """The C++ kernel, built on first use; None (after one warning) where it cannot be built."""
    return _NATIVE.load()


def native_unavailable_reason() -> str:
    """Why :func:`native_kernel` returned None, or ``"loaded"``."""
    return _NATIVE.unavailable_reason()


# ---------------------------------------------------------------------------------------------
# autograd


class _Layer(torch.autograd.Function):
    """One GRU layer over a whole sequence as one autograd node:
    (x (T,B,I), h0 (B,H), w_ih, w_hh, b_ih, b_hh) → out (T, B, H)."""

    @staticmethod
    def forward(ctx: Any, kernel: Kernel, x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor,
                b_hh: Tensor) -> Tensor:
        T, B, I = x.shape
        H = w_hh.shape[1]
        gi = kernel.mm(x.reshape(T * B, I), w_ih.t(), b_ih).view(T, B, 3 * H)  # all steps' input projection
        out, hn = kernel.forward(gi, w_hh, b_hh, h0, True)  # gi now holds the gates r, z, n
        ctx.kernel = kernel
        ctx.used = False
        ctx.save_for_backward(x, h0, w_ih, w_hh, out, gi, hn)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_out: Tensor) -> tuple[Tensor | None, ...]:
        if ctx.used:  # the saved gates were turned into gradients in place by the first backward
            raise KernelError("the fused GRU supports one backward pass per forward (no retain_graph=True); "
                             "use backend='reference' (nn.GRU) to differentiate twice")
        ctx.used = True
        x, h0, w_ih, w_hh, out, gates, hn = ctx.saved_tensors
        kernel: Kernel = ctx.kernel
        g_h0 = kernel.backward(w_hh, h0, out, gates, hn, g_out.contiguous())
        T, B, H = out.shape
        I = x.shape[2]
        d_gi, d_ghn = gates.view(T * B, 3 * H), hn.view(T * B, H)  # now gradients (see Kernel)
        need = ctx.needs_input_grad
        # every gradient but h0's is one product (or sum) over all T*B rows
        g_x = kernel.mm(d_gi, w_ih).view(T, B, I) if need[1] else None
        g_w_ih = kernel.mm(d_gi.t(), x.reshape(T * B, I)) if need[3] else None
        g_w_hh = None
        if need[4]:  # d_gh = [d_gi's r and z parts, d_ghn]
            h_prev = torch.cat([h0.unsqueeze(0), out[:-1]]).view(T * B, H)
            g_w_hh = w_hh.new_empty(3 * H, H)
            kernel.mm(d_gi[:, : 2 * H].t(), h_prev, out=g_w_hh[: 2 * H])
            kernel.mm(d_ghn.t(), h_prev, out=g_w_hh[2 * H :])
        g_b_ih = d_gi.sum(0) if need[5] or need[6] else None
        g_b_hh = torch.cat([g_b_ih[: 2 * H], d_ghn.sum(0)]) if need[6] else None  # type: ignore[index]
        return None, g_x, g_h0 if need[2] else None, g_w_ih, g_w_hh, g_b_ih if need[5] else None, g_b_hh


def gru_layer(
    x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None, kernel: Kernel
) -> Tensor:
    """One GRU layer over a sequence: x (T, B, I), h0 (B, H), nn.GRU's weights → out (T, B, H).

    The final state is ``out[-1]``. Missing biases (``bias=False``) count as zeros.
    """
    H = w_hh.shape[1]
    b_ih = b_ih if b_ih is not None else w_hh.new_zeros(3 * H)
    b_hh = b_hh if b_hh is not None else w_hh.new_zeros(3 * H)
    args = (x.contiguous(), h0.contiguous(), w_ih.contiguous(), w_hh.contiguous(), b_ih.contiguous(), b_hh.contiguous())
    if torch.is_grad_enabled() and any(t.requires_grad for t in args):
        return _Layer.apply(kernel, *args)
    x, h0, w_ih, w_hh, b_ih, b_hh = args  # inference: nothing saved for a backward
    T, B, I = x.shape
    gi = kernel.mm(x.view(T * B, I), w_ih.t(), b_ih).view(T, B, 3 * H)
    return kernel.forward(gi, w_hh, b_hh, h0, False)[0]


def select_kernel(x: Tensor, backend: str | None = None) -> Kernel | None:
    """The kernel ``backend`` (None: the process-wide default) means for input ``x``; None means
    ``nn.GRU`` itself (the ``"reference"`` backend). ``"module"`` is kept as an alias of ``"reference"``."""
    if backend == "module":
        backend = "reference"
    backend = check_backend(get_backend() if backend is None else backend, "GRU")
    if backend == "reference":
        return None
    if backend == "torch":
        return TORCH_KERNEL
    if backend == "native":
        kernel = native_kernel() if _NativeKernel.supports(x) else None
        if kernel is None:
            raise KernelError(
                "the C++ GRU kernel is not available here (CPU float32/float64 only, needs a C++ compiler; "
                f"{native_unavailable_reason()}); use backend 'auto' or 'torch'"
            )
        return kernel
    # auto
    if torch.compiler.is_compiling() or torch._C._functorch.is_functorch_wrapped_tensor(x):
        return None  # traceable ops only
    if _NativeKernel.supports(x):
        kernel = native_kernel()
        if kernel is not None:
            return kernel
    return None if x.is_cuda else TORCH_KERNEL


def gru_forward(rnn: nn.GRU, x: Tensor, h0: Tensor, backend: str | None = None) -> tuple[Tensor, Tensor]:
    """``rnn(x, h0)`` for a time-major, unidirectional ``nn.GRU``, computed by ``backend``.

    Args:
        rnn: the module whose parameters are used (``batch_first=False``, not bidirectional).
        x: (T, B, input_size).
        h0: (num_layers, B, hidden_size).
    Returns:
        out (T, B, hidden_size) and h_n (num_layers, B, hidden_size), as ``nn.GRU`` returns them.
    """
    if rnn.batch_first or rnn.bidirectional:
        raise KernelError("gru_forward supports time-major, unidirectional nn.GRU only")
    kernel = select_kernel(x, backend)
    if kernel is None:
        return rnn(x, h0)
    if x.dim() != 3 or x.shape[2] != rnn.input_size or x.shape[0] == 0:
        raise KernelError(f"GRU input must be (time > 0, batch, {rnn.input_size}), got {tuple(x.shape)}")
    if tuple(h0.shape) != (rnn.num_layers, x.shape[1], rnn.hidden_size):
        expected = (rnn.num_layers, x.shape[1], rnn.hidden_size)
        raise KernelError(f"GRU state must be (layers, batch, hidden) = {expected}, got {tuple(h0.shape)}")
    dtype = x.dtype
    for p in rnn.parameters():
        if p.dtype != dtype or p.device != x.device:
            raise KernelError(f"GRU parameters are {p.dtype} on {p.device} but the input is {dtype} on {x.device}")
    if h0.dtype != dtype or h0.device != x.device:
        raise KernelError(f"GRU state is {h0.dtype} on {h0.device} but the input is {dtype} on {x.device}")
    finals = []
    layer_input = x
    for layer in range(rnn.num_layers):
        w_ih, w_hh = getattr(rnn, f"weight_ih_l{layer}"), getattr(rnn, f"weight_hh_l{layer}")
        b_ih = getattr(rnn, f"bias_ih_l{layer}") if rnn.bias else None
        b_hh = getattr(rnn, f"bias_hh_l{layer}") if rnn.bias else None
        out = gru_layer(layer_input, h0[layer], w_ih, w_hh, b_ih, b_hh, kernel)
        finals.append(out[-1])
        layer_input = out
        if rnn.dropout > 0 and rnn.training and layer < rnn.num_layers - 1:  # as nn.GRU: not after the last layer
            layer_input = F.dropout(out, rnn.dropout, training=True)
    return layer_input, torch.stack(finals)
