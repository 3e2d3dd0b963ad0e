"""Deprecated alias of :mod:`dream_rl.dream.kernels.dispatch` (the module moved there); kept so existing imports keep working."""

import sys
import warnings

from dream_rl.dream.kernels import dispatch as _moved

warnings.warn(
    "dream_rl.fast_sequence moved to dream_rl.dream.kernels.dispatch; import from there (or from dream_rl)",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = _moved
