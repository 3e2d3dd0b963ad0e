"""DREAM's fast whole-sequence kernels: :mod:`.dispatch` picks one (see :mod:`dream_rl._native.backends`),
:mod:`.native` fronts the C++ kernel, :mod:`.torch_kernel` is the same algorithm in PyTorch ops."""

from dream_rl.dream.kernels.dispatch import BACKENDS, get_backend, native_available, run_sequence, set_backend

__all__ = ["BACKENDS", "get_backend", "native_available", "run_sequence", "set_backend"]
