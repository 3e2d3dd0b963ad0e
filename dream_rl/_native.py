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
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["load", "unavailable_reason", "library_path"]

ABI_VERSION = 3
SOURCE = Path(__file__).resolve().parent / "csrc" / "dream_seq.cpp"
# no -ffast-math: NaN/inf semantics and the exact clamp comparisons of the reference are kept
_BASE_FLAGS = ["-O3", "-std=c++17", "-shared", "-fPIC", "-ffp-contract=fast", "-fno-math-errno", "-fno-trapping-math"]
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
    """Compare with the pure-PyTorch kernel on a small float64 problem (forward and backward)."""
    from dream_rl.fast_sequence import TORCH_KERNEL, Consts

    gen = torch.Generator().manual_seed(0)
    T, B, I, H, r = 3, 3, 3, 5, 2
    dt = torch.float64

    def rnd(*shape: int, s: float = 1.0) -> Tensor:
        return s * torch.randn(*shape, generator=gen, dtype=dt)

    for ltc in (True, False):
        k = Consts(0.1, 0.01, 0.2, 0.1, 0.05, 0.05, 0.3, 0.7, 0.1, 0.9, ltc)
        V = rnd(I, r)
        x = rnd(T, B, I)
        params = (rnd(H, I), rnd(H), rnd(H, H, s=0.5), rnd(I, H), rnd(H, I), rnd(H).abs(), rnd(H), rnd(1))
        states = (rnd(B, H).tanh(), rnd(B, H, r), rnd(B, H, r), rnd(B).abs(), rnd(B, I), rnd(B, I).abs() + 0.5,
                  rnd(B).abs())
        ref = TORCH_KERNEL.forward(k, V, x, params, states, True)
        got = kernel.forward(k, V, x, params, states, True)
        g_out = rnd(T, B, H)
        g_fin = tuple(rnd(*s.shape) for s in states[1:])
        ref_b = TORCH_KERNEL.backward(k, V, x, states[1], params, ref[2], g_out, g_fin)
        got_b = kernel.backward(k, V, x, states[1], params, got[2], g_out, g_fin)
        got_saved = got[2]._replace(U_prime=got[2].U_prime.transpose(2, 3))  # this kernel keeps (T, B, r, H)
        flat_ref = [ref[0], *ref[1], *ref[2], *ref_b[:6], *ref_b[6]]
        flat_got = [got[0], *got[1], *got_saved, *got_b[:6], *got_b[6]]
        for a, b in zip(flat_ref, flat_got):
            if not torch.allclose(a, b, rtol=1e-8, atol=1e-10):
                raise _Unavailable(f"self-test failed: max error {(a - b).abs().max().item():.3g}")


class _NativeKernel:
    """ctypes front-end with the interface of ``fast_sequence._TorchKernel``."""

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

            cfg = (ctypes.c_double * 11)(k.dt, k.lam, k.alpha, k.gamma, k.beta, k.beta_s, k.target_norm,
                                         k.kappa, k.zeta, k.min_sleep, _LOG_2PI_E)
            self._cfg_cache[k] = cfg
        return cfg

    def forward(self, k: Any, V: Tensor, x: Tensor, params: tuple, states: tuple, save: bool):
        T, B, I = x.shape
        H, r = params[0].shape[0], V.shape[1]
        empty = x.new_empty
        inputs = [t if t.is_contiguous() else t.contiguous() for t in (x, *params[:5], V, *params[5:], *states)]
        out = empty(T, B, H)
        final = (empty(B, H, r), empty(B, H, r), empty(B), empty(B, I), empty(B, I), empty(B))
        if save:
            saved = _saved_type()(empty(T, B, H), empty(T, B, r, H), empty(T, B, I), empty(T, B, H),
                                  empty(T, B, I), empty(T, B, I), empty(T, B, _NUM_SCALARS))
            tail = [t.data_ptr() for t in saved]
        else:
            saved, tail = None, _NO_SAVE
        ptrs = _Ptrs31(*[t.data_ptr() for t in inputs], out.data_ptr(), *[t.data_ptr() for t in final], *tail)
        self._fns["forward", x.dtype](_Dims(T, B, I, H, r, int(save), int(k.ltc)), self._cfg(k), ptrs)
        return out, final, saved

    def backward(self, k: Any, V: Tensor, x: Tensor, U0: Tensor, params: tuple, saved: Any, g_out: Tensor, g_final: tuple):
        Win, b, R, C, Werr, eta, lts, lss = params
        T, B, r, H = saved.U_prime.shape  # kept (T, B, r, H) by this kernel
        I = saved.e.shape[2]
        empty = x.new_empty
        inputs = [t.contiguous() for t in (x, R, C, Werr, V, eta, lts, lss, U0, *saved, g_out, *g_final)]
        g_state = (empty(B, H), empty(B, H, r), empty(B, H, r), empty(B), empty(B, I), empty(B, I), empty(B))
        G_D, G_E, G_XF = empty(T, B, H), empty(T, B, I), empty(T, B, r)
        g_eta, g_lts, g_lss = empty(H), empty(H), empty(1)
        outs = [*g_state, G_D, G_E, G_XF, g_eta, g_lts, g_lss]
        ptrs = (ctypes.c_void_p * 36)(*[t.data_ptr() for t in inputs], *[t.data_ptr() for t in outs])
        self._fns["backward", x.dtype](_Dims(T, B, I, H, r, 1, int(k.ltc)), self._cfg(k), ptrs)
        return G_D, G_E, G_XF, g_eta, g_lts, g_lss, g_state


_Ptrs31 = ctypes.c_void_p * 31
_Dims = ctypes.c_int64 * 7
_NO_SAVE = [None] * 7
_NUM_SCALARS = 7


def _saved_type() -> Any:
    from dream_rl.fast_sequence import Saved

    return Saved
