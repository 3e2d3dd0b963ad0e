"""Native code: the C++ sequence kernels, the one helper that builds and loads them, and the one
vocabulary of kernel backends every sequence kernel (DREAM's, the GRU's) is selected with.

- ``dream_seq.cpp`` (DREAM, front-end :mod:`dream_rl.dream.kernels.native`) and ``gru_seq.cpp`` (GRU,
  front-end :mod:`dream_rl.torsos.gru_kernel`) are compiled on first use by :mod:`dream_rl._native.build`.
- :mod:`dream_rl._native.backends`: ``"auto"``, ``"native"``, ``"torch"``, ``"reference"`` and the
  process-wide default (:func:`~dream_rl._native.backends.set_backend`).

This package imports nothing from the rest of dream_rl but :mod:`dream_rl.errors`.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["SOURCE_DIR"]

#: The folder holding the C++ sources (shipped as package data).
SOURCE_DIR = Path(__file__).resolve().parent
