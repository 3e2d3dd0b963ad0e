"""Deprecated alias of :mod:`dream_rl.experiments.machine` (the module moved there); kept so existing imports keep working."""

import sys
import warnings

from dream_rl.experiments import machine as _moved

warnings.warn(
    "dream_rl.machine moved to dream_rl.experiments.machine; import from there (or from dream_rl)",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = _moved
