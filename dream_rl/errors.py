"""Exceptions raised by dream-rl.

Every error dream-rl raises on purpose is a :class:`DreamRLError`; each layer has its own subclass so
callers can catch exactly what they mean. All of them subclass ``ValueError``, so code that already
guards against bad values catches them too. The message is one line that names what is wrong and how
to fix it; the ``dream-rl`` command prints it and exits with code 2.

.. code-block:: text

    DreamRLError (ValueError)
    ├── DREAMError        the DREAM library: DREAMConfig, DREAMState, DREAMCell, DREAM, DREAMStack
    ├── KernelError       a sequence kernel (C++ or pure PyTorch) or its build
    ├── TorsoError        a recurrent torso: bad options, shapes, dtypes or states
    ├── PolicyError       the Stable-Baselines3 policies: options, states given to predict, checkpoints
    ├── EnvError          an environment of the suite: options or actions
    └── ConfigError       an experiment config, an override, a results folder or a command-line value
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DREAMError",
    "DreamRLError",
    "EnvError",
    "KernelError",
    "PolicyError",
    "TorsoError",
    "first_line",
]


class DreamRLError(ValueError):
    """Base class of every error dream-rl raises on purpose (a ``ValueError``)."""


class DREAMError(DreamRLError):
    """The DREAM library: an invalid :class:`~dream_rl.DREAMConfig`, a bad tensor shape or a corrupt state."""


class KernelError(DreamRLError):
    """A sequence kernel: an unknown backend, a kernel that cannot be built, or inputs it cannot take."""


class TorsoError(DreamRLError):
    """A recurrent torso: an invalid option, or features and states of the wrong shape or dtype."""


class PolicyError(DreamRLError):
    """A Stable-Baselines3 policy: an invalid option, a bad state given to ``predict``, a mismatched checkpoint."""


class EnvError(DreamRLError):
    """An environment of the suite: an invalid option or an action outside the action space."""


class ConfigError(DreamRLError):
    """An invalid experiment config, override, results folder or command-line value.

    Attributes:
        key: the dotted key path at fault ("" when the problem is not about one key).
        suggestion: the nearest valid key or name, when there is one.
    """

    def __init__(self, message: str, key: str = "", suggestion: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.suggestion = suggestion


def first_line(error: BaseException) -> str:
    """The first non-empty line of ``str(error)``, or the exception's class name when it has no message.

    Errors from libraries (torch, pydantic, yaml) can span many lines; a one-line report keeps the first.
    """
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    return type(error).__name__
