"""The C++ sequence kernel: built on first use, cached, loaded with ctypes, optional.

``dream_rl/csrc/dream_seq.cpp`` is compiled with the system C++ compiler (``$CXX``, else ``c++``,
``g++`` or ``clang++``) into a shared library under ``$DREAM_RL_CACHE_DIR`` (default
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
import hashlib
import math
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from dream_rl.errors import DREAMError

__all__ = ["load", "unavailable_reason", "library_path"]

ABI_VERSION = 5
SOURCE = Path(__file__).resolve().parent / "csrc" / "dream_seq.cpp"
# no -ffast-math: NaN/inf semantics and the exact clamp comparisons of the reference are kept
_BASE_FLAGS = ["-O3", "-std=c++17", "-shared", "-fPIC", "-pthread", "-ffp-contract=fast", "-fno-math-errno", "-fno-trapping-math"]
# tried in order: the first that compiles is used
_FLAG_SETS = [["-march=native", "-fopenmp-simd"], ["-fopenmp-simd"], []]

_lock = threading.Lock()
_state: dict[str, Any] = {"tried": False, "kernel": None, "reason": "not loaded yet", "path": None}


def load() -> _NativeKernel | None:
    """The kernel, building it on the first call; None (after one warning) when unavailable."""
    if _state["tried"]:
        return _state["kernel"]
    with _lock:
        if not _state["tried"]:
            try:
                _state["kernel"] = _load()
                _state["reason"] = "loaded"
            except _Unavailable as exc:  # expected, quiet when disabled on purpose
                _state["reason"] = str(exc)
                if not exc.quiet:
                    warnings.warn(f"dream_rl: C++ sequence kernel unavailable ({exc}); using the pure-PyTorch "
                                  "kernel", RuntimeWarning, stacklevel=3)
            except Exception as exc:  # noqa: BLE001 - never break the caller over an optional speed-up
                _state["reason"] = f"{type(exc).__name__}: {exc}"
                warnings.warn(f"dream_rl: C++ sequence kernel unavailable ({_state['reason']}); using the "
                              "pure-PyTorch kernel", RuntimeWarning, stacklevel=3)
            _state["tried"] = True
    return _state["kernel"]


def unavailable_reason() -> str:
    """Why :func:`load` returned None (or ``"loaded"``)."""
    return _state["reason"]


def library_path() -> Path | None:
    """The shared library in use, if any."""
    return _state["path"]


class _Unavailable(Exception):
    def __init__(self, message: str, quiet: bool = False) -> None:
        super().__init__(message)
        self.quiet = quiet


def _cache_dir() -> Path:
    if os.environ.get("DREAM_RL_CACHE_DIR"):
        return Path(os.environ["DREAM_RL_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dream_rl"


def _cpu_signature() -> str:
    """What -march=native depends on: the machine and its CPU model and feature flags."""
    parts = [platform.system(), platform.machine()]
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            seen = set()
            for line in f:
                key = line.split(":", 1)[0].strip()
                if key in ("model name", "flags", "Features", "CPU part") and key not in seen:
                    seen.add(key)
                    parts.append(line.strip())
    except OSError:
        parts.append(platform.processor())
    return "\n".join(parts)


def _compiler() -> str | None:
    if os.environ.get("CXX"):
        return os.environ["CXX"]
    for name in ("c++", "g++", "clang++"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _load() -> _NativeKernel:
    if os.environ.get("DREAM_RL_NO_EXTENSION", "").strip() not in ("", "0"):
        raise _Unavailable("disabled by DREAM_RL_NO_EXTENSION", quiet=True)
    if os.name == "nt":
        raise _Unavailable("not supported on Windows", quiet=True)
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + repr(_BASE_FLAGS + _FLAG_SETS).encode() + _cpu_signature().encode()).hexdigest()[:16]
    name = f"dream_seq_{key}.so"
    path = _cache_dir() / name
    if not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            probe = tempfile.TemporaryFile(dir=path.parent)
            probe.close()
        except OSError:  # an unwritable cache: build under the temp dir instead
            path = Path(tempfile.gettempdir()) / f"dream_rl-{os.getuid() if hasattr(os, 'getuid') else 'user'}" / name
            path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            with _build_lock(path):
                if not path.exists():  # another process may have built it while we waited
                    _build(path)
    try:
        lib = ctypes.CDLL(str(path))
    except OSError:  # a broken cache entry (e.g. a truncated file): rebuild once
        path.unlink(missing_ok=True)
        with _build_lock(path):
            _build(path)
        lib = ctypes.CDLL(str(path))
    kernel = _NativeKernel(lib)
    _self_test(kernel)
    _state["path"] = path
    return kernel


class _build_lock:
    """An exclusive lock on ``<path>.lock`` (POSIX): concurrent first uses (pytest-xdist, vector
    envs in subprocesses) compile once. Without fcntl the atomic rename in _build still keeps
    concurrent builds correct."""

    def __init__(self, path: Path) -> None:
        self.path = path.with_suffix(".lock")
        self.file: Any = None

    def __enter__(self) -> None:
        try:
            import fcntl

            self.file = open(self.path, "a")  # noqa: SIM115
            fcntl.flock(self.file.fileno(), fcntl.LOCK_EX)
        except (ImportError, OSError):
            if self.file is not None:
                self.file.close()
            self.file = None

    def __exit__(self, *exc: Any) -> None:
        if self.file is not None:
            self.file.close()  # releases the lock


def _build(path: Path) -> None:
    compiler = _compiler()
    if compiler is None:
        raise _Unavailable("no C++ compiler found (set CXX)")
    errors = []
    for extra in _FLAG_SETS:
        # compile to a private name, then rename: concurrent first uses never see a partial file
        fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp.so", dir=path.parent)
        os.close(fd)
        cmd = [compiler, *_BASE_FLAGS, *extra, str(SOURCE), "-o", tmp]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if proc.returncode == 0:
                os.replace(tmp, path)
                return
            errors.append(f"{' '.join(cmd)}: {proc.stderr.strip()[-500:]}")
        except (OSError, subprocess.SubprocessError) as exc:
            errors.append(f"{' '.join(cmd)}: {exc}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise _Unavailable("compilation failed: " + " | ".join(errors[-1:]))


def _self_test(kernel: _NativeKernel) -> None:
    """Compare with the pure-PyTorch kernel on a small float64 problem (forward and backward), on one
    thread and on two (the batch split in slices)."""
    from dream_rl.fast_sequence import TORCH_KERNEL, Consts

    gen = torch.Generator().manual_seed(0)
    T, B, I, H, r = 5, 3, 3, 5, 2
    dt = torch.float64

    def rnd(*shape: int, s: float = 1.0) -> Tensor:
        return s * torch.randn(*shape, generator=gen, dtype=dt)

    for ltc, threads in ((True, 1), (False, 1), (True, 2)):
        k = Consts(0.1, 0.01, 0.2, 0.1, 0.05, 0.05, 0.3, 0.7, 0.1, 0.9, ltc)
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
                raise _Unavailable(f"self-test failed: max error {(a - b).abs().max().item():.3g}")


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
    """ctypes front-end with the interface of ``fast_sequence._TorchKernel``.

    The C++ code trusts the sizes it is handed, so this is the last line of defence: before every
    call each tensor is checked against the shapes implied by ``x`` (T, B, I), ``weight_in`` (H, I)
    and ``V`` (I, r) -- shape, dtype, CPU, strided layout -- and made contiguous, and a mismatch
    raises :class:`DREAMError` naming the tensor. Whatever it is handed, the kernel then reads and
    writes only inside the buffers it is given.
    """

    name = "native"

    def __init__(self, lib: ctypes.CDLL) -> None:
        if lib.dream_seq_abi_version() != ABI_VERSION:
            raise _Unavailable("stale library (ABI version mismatch)")
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
            from dream_rl.fast_sequence import _LOG_2PI_E

            values = (k.dt, k.lam, k.alpha, k.gamma, k.beta, k.beta_s, k.target_norm, k.kappa, k.zeta, k.min_sleep,
                      _LOG_2PI_E)
            cfg = (ctypes.c_double * 11)(*(float(v) for v in values))
            self._cfg_cache[k] = cfg
        return cfg

    @staticmethod
    def _threads(T: int, B: int, I: int, H: int, r: int, threads: int | None) -> int:
        if threads is None:
            threads = torch.get_num_threads() if T * B * H * (H + I + 4 * r) >= MIN_WORK_FOR_THREADS else 1
        return max(1, min(int(threads), B))

    def forward(self, k: Any, V: Tensor, x: Tensor, params: tuple, states: tuple, save: bool,
                threads: int | None = None, interval: int | None = None):
        """``x`` (T, B, I) → out (T, B, H), the final state (U, U_target, adaptive_tau, error_mean,
        error_var, avg_surprise) and, when ``save``, a :class:`NativeSaved` for :meth:`backward`.
        ``threads``: None picks torch.get_num_threads() when the work is large enough;
        ``interval``: steps between fast-weight checkpoints (default :func:`checkpoint_interval`)."""
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
        shapes = _forward_shapes.get(key)
        if shapes is None:
            shapes = _forward_shapes[key] = ((T, B, I), (H, I), (H,), (H, H), (I, H), (H, I), (I, r), (H,), (H,),
                                             (1,), (B, H), (B, H, r), (B, H, r), (B,), (B, I), (B, I), (B,))
            if len(_forward_shapes) > 256:  # many distinct sizes (varying sequence lengths): start over
                _forward_shapes.clear()
        inputs = _checked(_FORWARD_NAMES, (x, *params[:5], V, *params[5:], *states), shapes, dtype, key)
        empty = x.new_empty
        out = empty(T, B, H)
        final = (empty(B, H, r), empty(B, H, r), empty(B), empty(B, I), empty(B, I), empty(B))
        if save:
            saved = NativeSaved(empty(NC, B, r, H), empty(NC, B, r, H), empty(T, B, I), empty(T, B, H),
                                empty(T, B, I), empty(T, B, I), empty(T, B, _NUM_SCALARS))
            tail = [t.data_ptr() for t in saved]
        else:
            saved, tail = None, _NO_SAVE
        ptrs = _Ptrs31(*[t.data_ptr() for t in inputs], out.data_ptr(), *[t.data_ptr() for t in final], *tail)
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
        inputs = _checked(_BACKWARD_NAMES, (x, R, C, Werr, V, eta, lts, lss, h0, out, *saved, g_out, *g_final),
                          shapes, dtype, (T, B, I, H, r))
        empty = x.new_empty
        g_state = (empty(B, H), empty(B, H, r), empty(B, H, r), empty(B), empty(B, I), empty(B, I), empty(B))
        G_D, G_E, G_XF = empty(T, B, H), empty(T, B, I), empty(T, B, r)
        g_eta, g_lts, g_lss, g_b, A = empty(H), empty(H), empty(1), empty(H), empty(T, B, H + 2 * I)
        outs = [*g_state, G_D, G_E, G_XF, g_eta, g_lts, g_lss, g_b, A]
        ptrs = _Ptrs39(*[t.data_ptr() for t in inputs], *[t.data_ptr() for t in outs])
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


def _checked(names: tuple, tensors: tuple, shapes: tuple, dtype: torch.dtype, dims: tuple) -> list[Tensor]:
    """Each tensor, checked (exact shape, the dtype of x, CPU, strided) and made contiguous; raises
    DREAMError naming the first that does not fit. ``dims`` (T, B, I, H, r) must all be >= 1."""
    if dtype is not torch.float32 and dtype is not torch.float64:
        raise DREAMError(f"native DREAM kernel: x must be float32 or float64, got {dtype}")
    if min(dims) < 1:
        raise DREAMError("native DREAM kernel: T, B, input_dim, hidden_dim and rank must all be >= 1, got "
                         + ", ".join(f"{n}={v}" for n, v in zip(("T", "B", "I", "H", "r"), dims)))
    result = []
    strided = torch.strided
    for name, t, shape in zip(names, tensors, shapes):
        # this runs on every rollout step: a few attribute reads per tensor, nothing more
        if not isinstance(t, Tensor):
            raise DREAMError(f"native DREAM kernel: {name} must be a tensor, got {type(t).__name__}")
        if t.shape != shape or t.dtype is not dtype or not t.is_cpu or t.layout is not strided:
            raise DREAMError(
                f"native DREAM kernel: {name} must be a {dtype} CPU tensor of shape {shape}, got "
                f"{t.dtype} {t.device.type} {t.layout} of shape {tuple(t.shape)}"
            )
        if not t.is_contiguous():
            t = t.contiguous()
        if t.is_neg():  # a lazily negated view: the buffer holds the un-negated values
            t = t.resolve_neg()
        result.append(t)
    return result


_forward_shapes: dict[tuple, tuple] = {}


_Ptrs31 = ctypes.c_void_p * 31
_Ptrs39 = ctypes.c_void_p * 39
_Dims = ctypes.c_int64 * 9
_NO_SAVE = [None] * 7
_NUM_SCALARS = 7
