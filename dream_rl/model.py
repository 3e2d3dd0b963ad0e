"""Deprecated alias of :mod:`dream_rl.dream.layers` (the module moved there); kept so existing imports keep working."""

import sys
import warnings

from dream_rl.dream import layers as _moved

warnings.warn("dream_rl.model moved to dream_rl.dream.layers; import from there (or from dream_rl)", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
