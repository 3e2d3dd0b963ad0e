"""dream-rl: DREAM memory for reinforcement-learning agents.

- The DREAM library (:mod:`dream_rl.dream`): :class:`DREAMConfig`, :class:`DREAMCell`, :class:`DREAM`,
  :class:`DREAMStack`, :class:`DREAMState`; plain PyTorch.
- Recurrent torsos (:mod:`dream_rl.torsos`): every memory behind one interface, ``TORSOS`` by name.
- Stable-Baselines3 policies and callbacks (:mod:`dream_rl.sb3`): imported on first use, so
  ``import dream_rl`` does not load SB3; ``RecurrentPPO("MlpDreamPolicy", env)`` works after
  ``import dream_rl`` all the same.
- A suite of POMDP environments (:mod:`dream_rl.envs`), registered with gymnasium under ``dream_rl/`` ids.
- Experiments from YAML configs (:mod:`dream_rl.experiments`) and the ``dream-rl`` command (:mod:`dream_rl.cli`).

The names exported here are resolved on first access: ``import dream_rl`` loads neither torch nor SB3
(``from dream_rl import DREAM`` loads torch, and the DREAM library only).
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from dream_rl import _policy_aliases
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

try:
    __version__ = version("dream-rl")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

# Names resolved on first access (PEP 562), by the module that defines them: the DREAM library and the
# torsos load torch, dream_rl.sb3 loads SB3; `import dream_rl` (and so `dream-rl --help`) loads neither.
_DREAM_NAMES = frozenset({"DREAM", "DREAMCell", "DREAMConfig", "DREAMOutput", "DREAMStack", "DREAMState", "StepInternals"})
_TORSO_NAMES = frozenset({"TORSOS", "DreamTorso", "GruTorso", "LstmTorso", "RecurrentTorso"})
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
_LAZY_NAMES = {
    **dict.fromkeys(_DREAM_NAMES, "dream_rl.dream"),
    **dict.fromkeys(_TORSO_NAMES, "dream_rl.torsos"),
    **dict.fromkeys(_SB3_NAMES, "dream_rl.sb3"),
}
# subpackages reachable as attributes after a bare `import dream_rl`, as when it imported them eagerly
_SUBPACKAGES = frozenset({"cli", "dream", "experiments", "sb3", "torsos"})


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        value = getattr(import_module(_LAZY_NAMES[name]), name)
        globals()[name] = value  # resolved once
        return value
    if name in _SUBPACKAGES:
        return import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'dream_rl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_NAMES})


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
