"""The Stable-Baselines3 adapter: torso policies for sb3-contrib's RecurrentPPO and callbacks."""

from dream_rl.sb3.callbacks import TorsoInternalsCallback
from dream_rl.sb3.policies import (
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
    PackedStateTorso,
    RecurrentTorsoPolicy,
    MlpTorsoPolicy,
    CnnTorsoPolicy,
    MultiInputTorsoPolicy,
)

__all__ = [
    "POLICIES",
    "CnnDreamPolicy",
    "CnnGruPolicy",
    "CnnLstmTorsoPolicy",
    "MlpDreamPolicy",
    "MlpGruPolicy",
    "MlpLstmTorsoPolicy",
    "MultiInputDreamPolicy",
    "MultiInputGruPolicy",
    "MultiInputLstmTorsoPolicy",
    "PackedStateTorso",
    "MlpTorsoPolicy",
    "CnnTorsoPolicy",
    "MultiInputTorsoPolicy",
    "RecurrentTorsoPolicy",
    "TorsoInternalsCallback",
]
