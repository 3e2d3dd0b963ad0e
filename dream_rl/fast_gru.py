"""Deprecated alias of :mod:`dream_rl.torsos.gru_kernel` (the module moved there); kept so existing imports keep working."""

import sys
import warnings

from dream_rl.torsos import gru_kernel as _moved

warnings.warn(
    "dream_rl.fast_gru moved to dream_rl.torsos.gru_kernel; import from there (or from dream_rl)",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = _moved
