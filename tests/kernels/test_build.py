"""The build/cache/load machinery of the optional C++ kernels (dream_rl._native.build)."""

from __future__ import annotations

import ctypes
import os
import tempfile
import warnings
from pathlib import Path

import pytest

from dream_rl._native import build

HAVE_COMPILER = build.compiler() is not None and os.name != "nt"
needs_compiler = pytest.mark.skipif(not HAVE_COMPILER, reason="no C++ compiler here")

SOURCE = 'extern "C" int answer() { return %d; }\n'


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DREAM_RL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DREAM_RL_NO_EXTENSION", raising=False)
    return tmp_path / "cache"


def write_source(directory: Path, value: int, name: str = "answer.cpp") -> Path:
    path = directory / name
    path.write_text(SOURCE % value)
    return path


@needs_compiler
def test_builds_once_then_reuses_the_cache(cache, tmp_path, monkeypatch):
    source = write_source(tmp_path, 42)
    lib, path = build.compile_and_load(source)
    assert lib.answer() == 42 and path.parent == cache and path.name.startswith("answer_")
    # a second load needs no compiler: the cached library is used as it is
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    lib2, path2 = build.compile_and_load(source)
    assert path2 == path and lib2.answer() == 42
    # a changed source is a different library
    monkeypatch.delenv("CXX")
    _, path3 = build.compile_and_load(write_source(tmp_path, 7))
    assert path3 != path and ctypes.CDLL(str(path3)).answer() == 7


@needs_compiler
def test_a_broken_cache_entry_is_rebuilt(cache, tmp_path):
    source = write_source(tmp_path, 5, "broken.cpp")
    path = build.cached_library_path(source)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x7fELF truncated")  # e.g. a copy cut short
    lib, loaded = build.compile_and_load(source)
    assert loaded == path and lib.answer() == 5


@needs_compiler
def test_an_unwritable_cache_falls_back_to_the_temp_dir(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("DREAM_RL_CACHE_DIR", str(blocker / "cache"))  # cannot be created
    lib, path = build.compile_and_load(write_source(tmp_path, 11, "fallback.cpp"))
    assert lib.answer() == 11 and Path(tempfile.gettempdir()) in path.parents


def test_failures_raise_unavailable(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    with pytest.raises(build.Unavailable, match="compilation failed") as info:
        build.compile_and_load(write_source(tmp_path, 1, "nocompiler.cpp"))
    assert not info.value.quiet
    monkeypatch.setenv("DREAM_RL_NO_EXTENSION", "1")
    with pytest.raises(build.Unavailable, match="DREAM_RL_NO_EXTENSION") as info:
        build.compile_and_load(write_source(tmp_path, 1, "disabled.cpp"))
    assert info.value.quiet


@needs_compiler
def test_a_compile_error_is_reported(cache, tmp_path):
    bad = tmp_path / "bad.cpp"
    bad.write_text("this is not C++\n")
    with pytest.raises(build.Unavailable, match="compilation failed.*bad.cpp"):
        build.compile_and_load(bad, flag_sets=[()])
    assert not list(cache.glob("*.so")) and not list(cache.glob("*.tmp.so"))  # no partial file left


def test_optional_extension_warns_once_and_remembers():
    calls = []

    def failing():
        calls.append(1)
        raise build.Unavailable("no luck")

    ext = build.OptionalExtension("test kernel", failing)
    with pytest.warns(RuntimeWarning, match="test kernel unavailable \\(no luck\\)"):
        assert ext.load() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ext.load() is None  # no second warning, no second attempt
    assert calls == [1] and ext.unavailable_reason() == "no luck" and ext.library_path() is None

    def quiet():
        raise build.Unavailable("disabled", quiet=True)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert build.OptionalExtension("quiet kernel", quiet).load() is None

    def crashing():
        raise RuntimeError("boom")

    with pytest.warns(RuntimeWarning, match="RuntimeError: boom"):
        assert build.OptionalExtension("crashing kernel", crashing).load() is None

    ok = build.OptionalExtension("good kernel", lambda: ("kernel", Path("/x.so")))
    assert ok.load() == "kernel" and ok.unavailable_reason() == "loaded" and ok.library_path() == Path("/x.so")
