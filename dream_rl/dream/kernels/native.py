"""The C++ sequence kernel: built on first use, cached, loaded with ctypes, optional.

``dream_rl/_native/dream_seq.cpp`` is built and loaded by :mod:`dream_rl._native.build` (shared with the
GRU kernel): compiled with the system C++ compiler (``$CXX``, else ``c++``, ``g++`` or
``clang++``) into a shared library under ``$DREAM_RL_CACHE_DIR`` (default
``$XDG_CACHE_HOME/dream_rl`` or ``~/.cache/dream_rl``), named by a hash of the source, the flags
and the CPU (it is built with ``-march=native``), so a cached build is only reused where it was
built for; an unwritable cache directory falls back to the temp directory. The library has a
plain C ABI and includes no torch or Python headers: the build takes a few seconds (about 6 s of
one core here), needs no ninja, and is independent of the torch version. Concurrent first uses
build once (file lock) and never see a partial file (atomic rename). Nothing is built at install
time.

After loading, a self-test compares it with the pure-PyTorch kernel on a small problem. If
anything fails (no compiler, compile error, failed self-test) a single ``RuntimeWarning`` says
why and :func:`load` returns None: the pure-PyTorch kernel is used. ``DREAM_RL_NO_EXTENSION=1``
skips all of this.
"""

from __future__ import annotations

import ctypes
import math
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from dream_rl._native import SOURCE_DIR, build
from dream_rl.dream.kernels.torch_kernel import _LOG_2PI_E, TORCH_KERNEL, Consts
from dream_rl.errors import DREAMError

__all__ = ["load", "unavailable_reason", "library_path"]

ABI_VERSION = 6
SOURCE = SOURCE_DIR / "dream_seq.cpp"
# the shared flags (no -ffast-math: the exact clamp comparisons of the reference are kept) plus
# -pthread for the kernel's std::thread batch split
_BASE_FLAGS = (*build.BASE_FLAGS, "-pthread")


def _flag_sets() -> tuple[tuple[str, ...], ...]:
    """The shared flag sets, each tried first with ``-fopenmp`` where torch's CPU ops run on OpenMP:
    the kernel then splits the batch over torch's own worker threads (csrc: "Threads"), which
    otherwise spin beside threads of its own."""
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return build.FLAG_SETS
    return tuple(flags for base in build.FLAG_SETS for flags in ((*base, "-fopenmp"), base))


def _load() -> tuple[_NativeKernel, Path]:
    """Build (or reuse the cached build), check the ABI, self-test; raises to say it cannot be used."""
    lib, path = build.compile_and_load(SOURCE, base_flags=_BASE_FLAGS, flag_sets=_flag_sets())
    kernel = _NativeKernel(lib)
    _self_test(kernel)
    return kernel, path


#: Loaded once per process; one RuntimeWarning (naming the "C++ sequence kernel") when unavailable.
_EXTENSION: build.OptionalExtension[_NativeKernel] = build.OptionalExtension("C++ sequence kernel", _load)


def load() -> _NativeKernel | None:
    """The kernel, building it on the first call; None (after one warning) when unavailable."""
    return _EXTENSION.load()


def unavailable_reason() -> str:
    """Why :func:`load` returned None (or ``"loaded"``)."""
    return _EXTENSION.unavailable_reason()


def library_path() -> Path | None:
    """The shared library in use, if any."""
    return _EXTENSION.library_path()


def _self_test(kernel: _NativeKernel) -> None:
    """Compare with the pure-PyTorch kernel on a small float64 problem (forward and backward), on one
    thread and on two (the batch split in slices)."""
    gen = torch.Generator().manual_seed(0)
    T, B, I, H, r = 5, 3, 3, 5, 2
    dt = torch.float64

    def rnd(*shape: int, s: float = 1.0) -> Tensor:
        return s * torch.randn(*shape, generator=gen, dtype=dt)

    for ltc, gating, threads in ((True, True, 1), (False, True, 1), (True, False, 1), (True, True, 2)):
        k = Consts(0.1, 0.01, 0.2, 0.1, 0.05, 0.05, 0.3, 0.7, 0.1, 0.9, ltc, gating)
        V = rnd(I, r)
        x = rnd(T, B, I)
        params = (rnd(H, I), rnd(H), rnd(H, H, s=0.5), rnd(I, H), rnd(H, I), rnd(H).abs(), rnd(H), rnd(1))
        states = (rnd(B, H).tanh(), rnd(B, H, r), rnd(B, H, r), rnd(B).abs(), rnd(B, I), rnd(B, I).abs() + 0.5,
                  rnd(B).abs())
        ref = TORCH_KERNEL.forward(k, V, x, params, states, True)
        got = kernel.forward(k, V, x, params, states, True, threads=threads, interval=2)
        g_out = rnd(T, B, H)
        g_fin = tuple(rnd(*s.shape) for s in states[1:])
        ref_b = TORCH_KERNEL.backward(k, V, x, states[0], states[1], ref[0], params, ref[2], g_out, g_fin)
        got_b = kernel.backward(k, V, x, states[0], states[1], got[0], params, got[2], g_out, g_fin, threads=threads)
        flat_ref = [ref[0], *ref[1], *ref_b[:6], *ref_b[6], ref_b[0].sum((0, 1))]
        flat_got = [got[0], *got[1], *got_b[:6], *got_b[6], got_b[7][0]]
        for a, b in zip(flat_ref, flat_got):
            if not torch.allclose(a, b, rtol=1e-8, atol=1e-10):
                raise build.Unavailable(f"self-test failed: max error {(a - b).abs().max().item():.3g}")


class NativeSaved(NamedTuple):
    """What the C++ forward saves for its backward, time-major (its own layout, opaque to callers)."""

    U_ckpt: Tensor  # (NC, B, r, H) U before steps 0, K, 2K, ... (transposed)
    Ut_ckpt: Tensor  # (NC, B, r, H) U_target at the same steps
    e: Tensor  # (T, B, I) prediction error
    h_target: Tensor  # (T, B, H) tanh(drive)
    em_prev: Tensor  # (T, B, I) error_mean before each step
    ev_prev: Tensor  # (T, B, I) error_var before each step
    scalars: Tensor  # (T, B, 7) S, z, entropy (unclamped), ‖U'‖², c, sleep mask, adaptive_tau


#: Below this much work (T·B·H·(H + I + 4r) multiply-adds, about 1 ms) the kernel runs on one
#: thread: starting threads costs more than it saves.
MIN_WORK_FOR_THREADS = 4_000_000


def checkpoint_interval(T: int) -> int:
    """Steps between fast-weight checkpoints: about sqrt(T/2) (8 at T = 128). Memory is 2T/K
    checkpoints (U and U_target) plus a K-step segment of U' that the backward recomputes, per chunk
    of samples: a short segment keeps that chunk's buffers in cache."""
    return max(1, min(T, math.ceil(math.sqrt(T / 2))))


class _NativeKernel:
    """ctypes front-end with the interface of ``_torch_kernel._TorchKernel``.

    The C++ code trusts the sizes it is handed, so this is the last line of defence: before every
    call each tensor is checked against the shapes implied by ``x`` (T, B, I), ``weight_in`` (H, I)
    and ``V`` (I, r) -- shape, dtype, CPU, strided layout -- and made contiguous, and a mismatch
    raises :class:`DREAMError` naming the tensor. Whatever it is handed, the kernel then reads and
    writes only inside the buffers it is given.
    """

    name = "native"

    def __init__(self, lib: ctypes.CDLL) -> None:
        if lib.dream_seq_abi_version() != ABI_VERSION:
            raise build.Unavailable("stale library (ABI version mismatch)")
        sig = [ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_void_p)]
        self._fns = {}
        for direction in ("forward", "backward"):
            for dtype, suffix in ((torch.float32, "f32"), (torch.float64, "f64")):
                fn = getattr(lib, f"dream_seq_{direction}_{suffix}")
                fn.argtypes, fn.restype = sig, None
                self._fns[direction, dtype] = fn
        self._cfg_cache: dict[Any, Any] = {}

    def _cfg(self, k: Any) -> Any:
        cfg = self._cfg_cache.get(k)
        if cfg is None:
            values = (k.dt, k.lam, k.alpha, k.gamma, k.beta, k.beta_s, k.target_norm, k.kappa, k.zeta, k.min_sleep,
                      _LOG_2PI_E, 1.0 if k.gating else 0.0)
            cfg = (ctypes.c_double * 12)(*(float(v) for v in values))
            self._cfg_cache[k] = cfg
        return cfg

    @staticmethod
    def _threads(T: int, B: int, I: int, H: int, r: int, threads: int | None) -> int:
        if threads is None:
            threads = torch.get_num_threads() if T * B * H * (H + I + 4 * r) >= MIN_WORK_FOR_THREADS else 1
        return max(1, min(int(threads), B))

    def forward(self, k: Any, V: Tensor, x: Tensor, params: tuple, states: tuple, save: bool,
                threads: int | None = None, interval: int | None = None,
                states_validated_for: tuple[int, int] | None = None):
        """``x`` (T, B, I) → out (T, B, H), the final state (U, U_target, adaptive_tau, error_mean,
        error_var, avg_surprise) and, when ``save``, a :class:`NativeSaved` for :meth:`backward`.
        ``threads``: None picks torch.get_num_threads() when the work is large enough;
        ``interval``: steps between fast-weight checkpoints (default :func:`checkpoint_interval`).

        ``states_validated_for`` = (hidden_dim, rank) of the config the 7 state tensors were *just*
        validated against by ``DREAMCell._check_structure`` (exact shapes for the batch of ``x``,
        ``x``'s dtype and device), with nothing run in between: their shape, dtype and device are
        then not checked again. That covers the shapes the kernel reads only if the config agrees
        with the weights it sizes its loops by, so that is checked here; ``x`` and every weight are
        checked in full, and the states' layout, contiguity and negation bit as always. None (the
        default, for every other caller) checks everything."""
        if not isinstance(x, Tensor) or x.dim() != 3 or len(params) != 8 or len(states) != 7:
            raise DREAMError("native DREAM kernel: expected x (T, B, I), 8 parameters and 7 state tensors")
        T, B, I = x.shape
        if not isinstance(params[0], Tensor) or params[0].dim() != 2 or not isinstance(V, Tensor) or V.dim() != 2:
            raise DREAMError("native DREAM kernel: weight_in must be (H, I) and the sensory filter (I, r)")
        H, r = params[0].shape[0], V.shape[1]
        K = checkpoint_interval(T) if interval is None else max(1, min(int(interval), T))
        NC = -(-T // K)
        K = -(-T // NC)  # the interval the backward infers from T and the number of checkpoints
        dtype = x.dtype
        key = (T, B, I, H, r)
        cached = _forward_shapes.get(key)
        if cached is None:
            full = ((T, B, I), (H, I), (H,), (H, H), (I, H), (H, I), (I, r), (H,), (H,), (1,),
                    (B, H), (B, H, r), (B, H, r), (B,), (B, I), (B, I), (B,))
            cached = _forward_shapes[key] = (full, full[:10] + (None,) * 7)  # the states last
            if len(_forward_shapes) > 256:  # many distinct sizes (varying sequence lengths): start over
                _forward_shapes.clear()
        keep: list[Tensor] = []  # copies made by _checked, alive until the kernel returns
        if states_validated_for is None:
            shapes = cached[0]
        else:
            shapes = cached[1]
            if states_validated_for[0] != H or states_validated_for[1] != r:
                raise DREAMError(
                    f"native DREAM kernel: the state was validated for the config's hidden_dim="
                    f"{states_validated_for[0]}, rank={states_validated_for[1]} but weight_in and the sensory "
                    f"filter give hidden_dim={H}, rank={r}; a weight replaced by one of another size does not "
                    "resize the cell: build a new DREAMCell")
        in_ptrs = _checked(_FORWARD_NAMES, (x, *params[:5], V, *params[5:], *states), shapes, dtype, key, keep)
        empty = x.new_empty
        out = empty(T, B, H)
        final = (empty(B, H, r), empty(B, H, r), empty(B), empty(B, I), empty(B, I), empty(B))
        if save:
            saved = NativeSaved(empty(NC, B, r, H), empty(NC, B, r, H), empty(T, B, I), empty(T, B, H),
                                empty(T, B, I), empty(T, B, I), empty(T, B, _NUM_SCALARS))
            tail = [t.data_ptr() for t in saved]
        else:
            saved, tail = None, _NO_SAVE
        ptrs = _Ptrs31(*in_ptrs, out.data_ptr(), *[t.data_ptr() for t in final], *tail)
        dims = _Dims(T, B, I, H, r, int(save), int(bool(k.ltc)), K, self._threads(T, B, I, H, r, threads))
        self._fns["forward", dtype](dims, self._cfg(k), ptrs)
        return out, final, saved

    def backward(self, k: Any, V: Tensor, x: Tensor, h0: Tensor, U0: Tensor, out: Tensor, params: tuple,
                 saved: Any, g_out: Tensor, g_final: tuple, threads: int | None = None):
        """Gradients from the output gradient ``g_out`` (T, B, H) and those of the final state:
        (G_D (T, B, H), G_E (T, B, I), G_XF (T, B, r), g_eta, g_log_tau_sys, g_log_surprise_scale,
        gradients of the 7 initial-state tensors, and extras: ``g_bias`` (H,) and ``A`` (T, B, H + 2I)
        = [h_prev | x | S e], with dL/d[weight_rec | weight_in | weight_err] = G_Dᵀ A). ``U0`` is
        unused (the checkpoints hold it)."""
        if not isinstance(saved, NativeSaved) or not isinstance(x, Tensor) or x.dim() != 3 or len(params) != 8 \
                or len(g_final) != 6:
            raise DREAMError("native DREAM kernel: backward needs the NativeSaved of its own forward")
        Win, b, R, C, Werr, eta, lts, lss = params
        T, B, I = x.shape
        if not isinstance(Win, Tensor) or Win.dim() != 2 or not isinstance(V, Tensor) or V.dim() != 2:
            raise DREAMError("native DREAM kernel: weight_in must be (H, I) and the sensory filter (I, r)")
        H, r = Win.shape[0], V.shape[1]
        NC = saved.U_ckpt.shape[0] if saved.U_ckpt.dim() == 4 else 0
        K = -(-T // NC) if NC > 0 else 0
        if NC < 1 or -(-T // K) != NC:
            raise DREAMError(f"native DREAM kernel: {NC} fast-weight checkpoints do not fit a sequence of {T} steps")
        dtype = x.dtype
        shapes = ((T, B, I), (H, H), (I, H), (H, I), (I, r), (H,), (H,), (1,), (B, H), (T, B, H),
                  (NC, B, r, H), (NC, B, r, H), (T, B, I), (T, B, H), (T, B, I), (T, B, I), (T, B, _NUM_SCALARS),
                  (T, B, H), (B, H, r), (B, H, r), (B,), (B, I), (B, I), (B,))
        keep: list[Tensor] = []  # copies made by _checked, alive until the kernel returns
        in_ptrs = _checked(_BACKWARD_NAMES, (x, R, C, Werr, V, eta, lts, lss, h0, out, *saved, g_out, *g_final),
                          shapes, dtype, (T, B, I, H, r), keep)
        empty = x.new_empty
        g_state = (empty(B, H), empty(B, H, r), empty(B, H, r), empty(B), empty(B, I), empty(B, I), empty(B))
        G_D, G_E, G_XF = empty(T, B, H), empty(T, B, I), empty(T, B, r)
        g_eta, g_lts, g_lss, g_b, A = empty(H), empty(H), empty(1), empty(H), empty(T, B, H + 2 * I)
        outs = [*g_state, G_D, G_E, G_XF, g_eta, g_lts, g_lss, g_b, A]
        ptrs = _Ptrs39(*in_ptrs, *[t.data_ptr() for t in outs])
        dims = _Dims(T, B, I, H, r, 1, int(bool(k.ltc)), K, self._threads(T, B, I, H, r, threads))
        self._fns["backward", dtype](dims, self._cfg(k), ptrs)
        return G_D, G_E, G_XF, g_eta, g_lts, g_lss, g_state, (g_b, A)


_FORWARD_NAMES = ("x", "weight_in", "bias", "weight_rec", "weight_pred", "weight_err", "sensory_filter",
                  "plasticity", "log_tau_sys", "log_surprise_scale", "state.h", "state.U", "state.U_target",
                  "state.adaptive_tau", "state.error_mean", "state.error_var", "state.avg_surprise")
_BACKWARD_NAMES = ("x", "weight_rec", "weight_pred", "weight_err", "sensory_filter", "plasticity", "log_tau_sys",
                   "log_surprise_scale", "state.h", "outputs", *(f"saved.{f}" for f in NativeSaved._fields),
                   "grad of outputs", "grad of final U", "grad of final U_target", "grad of final adaptive_tau",
                   "grad of final error_mean", "grad of final error_var", "grad of final avg_surprise")


def _checked(names: tuple, tensors: tuple, shapes: tuple, dtype: torch.dtype, dims: tuple,
             keep: list[Tensor]) -> list[int]:
    """The data pointer of each tensor, checked (exact shape, the dtype of x, CPU, strided) and made
    contiguous; raises DREAMError naming the first that does not fit. A shape of None marks a tensor
    whose shape, dtype and device the caller validated just before: only its layout is checked. A tensor that had to be copied
    (made contiguous, lazy negation resolved) is appended to ``keep``: the caller holds that list
    until the kernel returns, so no pointer outlives its buffer. ``dims`` (T, B, I, H, r) must all
    be >= 1."""
    if dtype is not torch.float32 and dtype is not torch.float64:
        raise DREAMError(f"native DREAM kernel: x must be float32 or float64, got {dtype}")
    if min(dims) < 1:
        raise DREAMError("native DREAM kernel: T, B, input_dim, hidden_dim and rank must all be >= 1, got "
                         + ", ".join(f"{n}={v}" for n, v in zip(("T", "B", "I", "H", "r"), dims)))
    pointers = []
    strided = torch.strided
    for name, t, shape in zip(names, tensors, shapes):
        # this runs on every rollout step: a few attribute reads per tensor, nothing more
        if shape is None:  # shape, dtype and device validated just before (see states_validated_for)
            if t.layout is not strided:
                raise DREAMError(f"native DREAM kernel: {name} must be a strided (dense) tensor, got {t.layout}")
        elif not isinstance(t, Tensor):
            raise DREAMError(f"native DREAM kernel: {name} must be a tensor, got {type(t).__name__}")
        elif t.shape != shape or t.dtype is not dtype or not t.is_cpu or t.layout is not strided:
            raise DREAMError(
                f"native DREAM kernel: {name} must be a {dtype} CPU tensor of shape {shape}, got "
                f"{t.dtype} {t.device.type} {t.layout} of shape {tuple(t.shape)}"
            )
        if not t.is_contiguous():
            t = t.contiguous()
            keep.append(t)
        if t.is_neg():  # a lazily negated view: the buffer holds the un-negated values
            t = t.resolve_neg()
            keep.append(t)
        pointers.append(t.data_ptr())
    return pointers


# (T, B, I, H, r) -> (every forward shape, the same with the states' shapes None: validated before)
_forward_shapes: dict[tuple, tuple] = {}


_Ptrs31 = ctypes.c_void_p * 31
_Ptrs39 = ctypes.c_void_p * 39
_Dims = ctypes.c_int64 * 9
_NO_SAVE = [None] * 7
_NUM_SCALARS = 7
