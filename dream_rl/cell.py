"""Deprecated alias of :mod:`dream_rl.dream.cell` (the module moved there); kept so existing imports keep working."""

import sys
import warnings

from dream_rl.dream import cell as _moved

warnings.warn("dream_rl.cell moved to dream_rl.dream.cell; import from there (or from dream_rl)", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
