"""Build, cache and load small C/C++ extensions with a plain C ABI (no torch or Python headers).

The machinery shared by dream_rl's optional native kernels (the DREAM sequence kernel in
:mod:`dream_rl.dream.kernels.native`, the GRU kernel in :mod:`dream_rl.torsos.gru_kernel`):

- :func:`compile_and_load` compiles one source file with the system C++ compiler (``$CXX``, else
  ``c++``, ``g++`` or ``clang++``) into a shared library under :func:`cache_dir`
  (``$DREAM_RL_CACHE_DIR``, else ``$XDG_CACHE_HOME/dream_rl`` or ``~/.cache/dream_rl``; an unwritable
  one falls back to the temp directory). The file name carries a hash of the source, the flags and
  the CPU (builds use ``-march=native`` when it compiles), so a cached build is reused only where
  it was built for. Concurrent first uses build once (a file lock) and never load a partial file
  (compiled to a private name, then renamed atomically). A cached file that fails to load is
  rebuilt once.
- :class:`OptionalExtension` wraps a loader (build, wrap, self-test) so that it runs once per
  process, thread-safely; if it fails, one ``RuntimeWarning`` says why and :meth:`~OptionalExtension.load`
  returns None, so callers fall back to pure PyTorch. ``DREAM_RL_NO_EXTENSION=1`` disables every
  extension quietly.

Nothing is built at install time and nothing is downloaded.
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from dream_rl._filelock import FileLock

__all__ = [
    "BASE_FLAGS",
    "FLAG_SETS",
    "Unavailable",
    "OptionalExtension",
    "cache_dir",
    "cached_library_path",
    "compile_and_load",
    "compiler",
    "cpu_signature",
    "extensions_disabled",
]

# no -ffast-math: NaN/inf semantics and exact comparisons are kept
BASE_FLAGS: tuple[str, ...] = (
    "-O3", "-std=c++17", "-shared", "-fPIC", "-ffp-contract=fast", "-fno-math-errno", "-fno-trapping-math",
)
# tried in order: the first that compiles is used
FLAG_SETS: tuple[tuple[str, ...], ...] = (("-march=native", "-fopenmp-simd"), ("-fopenmp-simd",), ())

K = TypeVar("K")


class Unavailable(Exception):
    """An extension cannot be used here; ``quiet`` when that was asked for (no warning)."""

    def __init__(self, message: str, quiet: bool = False) -> None:
        super().__init__(message)
        self.quiet = quiet


def extensions_disabled() -> bool:
    """True when ``DREAM_RL_NO_EXTENSION`` is set to anything but empty or ``0``."""
    return os.environ.get("DREAM_RL_NO_EXTENSION", "").strip() not in ("", "0")


def cache_dir() -> Path:
    """Where built libraries are cached (see the module docstring)."""
    if os.environ.get("DREAM_RL_CACHE_DIR"):
        return Path(os.environ["DREAM_RL_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dream_rl"


def cpu_signature() -> str:
    """What ``-march=native`` depends on: the OS, the machine and the CPU model and feature flags."""
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


def compiler() -> str | None:
    """``$CXX``, else the first of ``c++``, ``g++``, ``clang++`` on the PATH, else None."""
    if os.environ.get("CXX"):
        return os.environ["CXX"]
    for name in ("c++", "g++", "clang++"):
        path = shutil.which(name)
        if path:
            return path
    return None


def compile_and_load(
    source: Path,
    base_flags: Sequence[str] = BASE_FLAGS,
    flag_sets: Sequence[Sequence[str]] = FLAG_SETS,
) -> tuple[ctypes.CDLL, Path]:
    """Compile ``source`` (or reuse the cached build) and load it; returns the library and its path.

    Raises :class:`Unavailable` when extensions are disabled, on Windows, without a compiler or
    when no flag set compiles.
    """
    if extensions_disabled():
        raise Unavailable("disabled by DREAM_RL_NO_EXTENSION", quiet=True)
    if os.name == "nt":
        raise Unavailable("not supported on Windows", quiet=True)
    path = cached_library_path(source, base_flags, flag_sets)
    if not path.exists():
        path = _writable(path)
        if not path.exists():
            with _BuildLock(path):
                if not path.exists():  # another process may have built it while we waited
                    _build(Path(source), path, base_flags, flag_sets)
    try:
        return ctypes.CDLL(str(path)), path
    except OSError:  # a broken cache entry (e.g. a truncated file): rebuild once
        path.unlink(missing_ok=True)
        with _BuildLock(path):
            _build(Path(source), path, base_flags, flag_sets)
        return ctypes.CDLL(str(path)), path


def cached_library_path(
    source: Path, base_flags: Sequence[str] = BASE_FLAGS, flag_sets: Sequence[Sequence[str]] = FLAG_SETS
) -> Path:
    """Where the build of ``source`` for this CPU and these flags is cached: ``<stem>_<hash>.so``
    under :func:`cache_dir` (a per-user temp directory is used instead when that is unwritable)."""
    flags_key = repr([list(base_flags), [list(f) for f in flag_sets]]).encode()
    key = hashlib.sha256(Path(source).read_bytes() + flags_key + cpu_signature().encode()).hexdigest()[:16]
    return cache_dir() / f"{Path(source).stem}_{key}.so"


class OptionalExtension(Generic[K]):
    """A native kernel loaded once per process, or None (after one warning) when unavailable.

    ``loader`` builds and wraps the kernel (typically :func:`compile_and_load`, an ABI check and a
    self-test against the pure-PyTorch version) and returns ``(kernel, library_path)``; it raises
    :class:`Unavailable` (or anything else) to say the kernel cannot be used.
    """

    def __init__(self, description: str, loader: Callable[[], tuple[K, Path]]) -> None:
        self.description = description
        self._loader = loader
        self._lock = threading.Lock()
        self._tried = False
        self._kernel: K | None = None
        self._reason = "not loaded yet"
        self._path: Path | None = None

    def load(self) -> K | None:
        """The kernel, building it on the first call; None when unavailable."""
        if self._tried:
            return self._kernel
        with self._lock:
            if not self._tried:
                try:
                    self._kernel, self._path = self._loader()
                    self._reason = "loaded"
                except Unavailable as exc:
                    self._reason = str(exc)
                    if not exc.quiet:
                        self._warn()
                except Exception as exc:  # noqa: BLE001 - never break the caller over an optional speed-up
                    self._reason = f"{type(exc).__name__}: {exc}"
                    self._warn()
                self._tried = True
        return self._kernel

    def unavailable_reason(self) -> str:
        """Why :meth:`load` returned None, or ``"loaded"``."""
        return self._reason

    def library_path(self) -> Path | None:
        """The shared library in use, if any."""
        return self._path

    def _warn(self) -> None:
        warnings.warn(f"dream_rl: {self.description} unavailable ({self._reason}); using pure PyTorch",
                      RuntimeWarning, stacklevel=4)


def _writable(path: Path) -> Path:
    """``path``, or the same name under a per-user temp directory when its directory is unwritable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.TemporaryFile(dir=path.parent)
        probe.close()
        return path
    except OSError:
        user = os.getuid() if hasattr(os, "getuid") else "user"
        fallback = Path(tempfile.gettempdir()) / f"dream_rl-{user}" / path.name
        fallback.parent.mkdir(parents=True, exist_ok=True)
        return fallback


class _BuildLock:
    """Concurrent first uses (pytest-xdist, vector envs in subprocesses) compile once: an exclusive
    :class:`~dream_rl._filelock.FileLock` on ``<path>.lock``. Where locks are unavailable (no fcntl,
    a file system that refuses them) the build goes on unlocked: the atomic rename in :func:`_build`
    still keeps concurrent builds correct."""

    def __init__(self, path: Path) -> None:
        self.lock = FileLock(path.with_suffix(".lock"))

    def __enter__(self) -> None:
        try:
            self.lock.acquire()
        except (ImportError, OSError):
            pass

    def __exit__(self, *exc: Any) -> None:
        self.lock.release()


def _build(source: Path, path: Path, base_flags: Sequence[str], flag_sets: Sequence[Sequence[str]]) -> None:
    cxx = compiler()
    if cxx is None:
        raise Unavailable("no C++ compiler found (set CXX)")
    errors = []
    for extra in flag_sets:
        # compile to a private name, then rename: concurrent first uses never see a partial file
        fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp.so", dir=path.parent)
        os.close(fd)
        cmd = [cxx, *base_flags, *extra, str(source), "-o", tmp]
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
    raise Unavailable("compilation failed: " + " | ".join(errors[-1:]))
