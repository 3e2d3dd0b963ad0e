"""dream-rl: DREAM memory for reinforcement-learning agents.

- The DREAM library (:mod:`dream_rl.dream`): :class:`DREAMConfig`, :class:`DREAMCell`, :class:`DREAM`,
  :class:`DREAMStack`, :class:`DREAMState`; plain PyTorch.
- Recurrent torsos (:mod:`dream_rl.torsos`): every memory behind one interface, ``TORSOS`` by name.
- Stable-Baselines3 policies and callbacks (:mod:`dream_rl.sb3`): imported on first use, so
  ``import dream_rl`` does not load SB3; ``RecurrentPPO("MlpDreamPolicy", env)`` works after
  ``import dream_rl`` all the same.
- A suite of POMDP environments (:mod:`dream_rl.envs`), registered with gymnasium under ``dream_rl/`` ids.
- Experiments from YAML configs (:mod:`dream_rl.experiments`) and the ``dream-rl`` command.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from dream_rl import _policy_aliases
from dream_rl.dream import DREAM, DREAMCell, DREAMConfig, DREAMOutput, DREAMStack, DREAMState, StepInternals
from dream_rl.envs import register_envs
from dream_rl.errors import (
    ConfigError,
    DREAMError,
    DreamRLError,
    EnvError,
    KernelError,
    PolicyError,
    TorsoError,
)
from dream_rl.torsos import TORSOS, DreamTorso, GruTorso, LstmTorso, RecurrentTorso

try:
    __version__ = version("dream-rl")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

# names of dream_rl.sb3, resolved on first access (PEP 562) so that SB3 loads only when used
_SB3_NAMES = frozenset({
    "POLICIES",
    "CnnDreamPolicy",
    "CnnGruPolicy",
    "CnnLstmTorsoPolicy",
    "CnnTorsoPolicy",
    "MlpDreamPolicy",
    "MlpGruPolicy",
    "MlpLstmTorsoPolicy",
    "MlpTorsoPolicy",
    "MultiInputDreamPolicy",
    "MultiInputGruPolicy",
    "MultiInputLstmTorsoPolicy",
    "MultiInputTorsoPolicy",
    "TorsoInternalsCallback",
})


def __getattr__(name: str) -> Any:
    if name in _SB3_NAMES:
        return getattr(import_module("dream_rl.sb3"), name)
    raise AttributeError(f"module 'dream_rl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_SB3_NAMES})


register_envs()
_policy_aliases.install()

__all__ = [
    "ConfigError",
    "DREAM",
    "DREAMCell",
    "DREAMConfig",
    "DREAMError",
    "DREAMOutput",
    "DREAMStack",
    "DREAMState",
    "DreamRLError",
    "DreamTorso",
    "EnvError",
    "GruTorso",
    "KernelError",
    "LstmTorso",
    "PolicyError",
    "RecurrentTorso",
    "StepInternals",
    "TORSOS",
    "TorsoError",
    "__version__",
    "register_envs",
    *sorted(_SB3_NAMES),
]
