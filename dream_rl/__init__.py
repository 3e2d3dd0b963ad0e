"""dream-rl: DREAM memory for reinforcement-learning agents.

The pure-PyTorch DREAM library (:class:`DREAMConfig`, :class:`DREAMCell`, :class:`DREAM`,
:class:`DREAMStack`, :class:`DREAMState`, :class:`DREAMError`), recurrent torsos and
Stable-Baselines3 policies built on it, and a suite of POMDP environments registered under
``dream_rl/`` ids on import.
"""

from dream_rl.cell import DREAMCell, StepInternals
from dream_rl.config import DREAMConfig
from dream_rl.envs import register_envs
from dream_rl.errors import DREAMError
from dream_rl.model import DREAM, DREAMOutput, DREAMStack
from dream_rl.sb3 import (
    POLICIES,
    CnnDreamPolicy,
    CnnGruPolicy,
    CnnLstmTorsoPolicy,
    MlpDreamPolicy,
    MlpGruPolicy,
    MlpLstmTorsoPolicy,
    MultiInputDreamPolicy,
    MultiInputGruPolicy,
    MultiInputLstmTorsoPolicy,
    MlpTorsoPolicy,
    CnnTorsoPolicy,
    MultiInputTorsoPolicy,
    TorsoInternalsCallback,
)
from dream_rl.state import DREAMState
from dream_rl.torsos import TORSOS, DreamTorso, GruTorso, LstmTorso, RecurrentTorso

__version__ = "0.1.0"

register_envs()

__all__ = [
    "POLICIES",
    "TORSOS",
    "MlpTorsoPolicy",
    "CnnTorsoPolicy",
    "MultiInputTorsoPolicy",
    "CnnDreamPolicy",
    "CnnGruPolicy",
    "CnnLstmTorsoPolicy",
    "DreamTorso",
    "GruTorso",
    "LstmTorso",
    "MlpDreamPolicy",
    "MlpGruPolicy",
    "MlpLstmTorsoPolicy",
    "MultiInputDreamPolicy",
    "MultiInputGruPolicy",
    "MultiInputLstmTorsoPolicy",
    "RecurrentTorso",
    "TorsoInternalsCallback",
    "DREAM",
    "DREAMCell",
    "DREAMConfig",
    "DREAMError",
    "DREAMOutput",
    "DREAMStack",
    "DREAMState",
    "StepInternals",
    "register_envs",
]
