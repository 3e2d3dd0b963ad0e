"""The Stable-Baselines3 adapter: torso policies for sb3-contrib's RecurrentPPO, SequencePPO (RecurrentPPO
trained on whole env rollouts) and callbacks."""

from dream_rl.sb3.buffers import SequenceRolloutBuffer
from dream_rl.sb3.callbacks import TorsoInternalsCallback
from dream_rl.sb3.policies import (
    POLICIES,
    CnnDreamPolicy,
    CnnGruPolicy,
    CnnLstmTorsoPolicy,
    CnnTorsoPolicy,
    MlpDreamPolicy,
    MlpGruPolicy,
    MlpLstmTorsoPolicy,
    MlpTorsoPolicy,
    MultiInputDreamPolicy,
    MultiInputGruPolicy,
    MultiInputLstmTorsoPolicy,
    MultiInputTorsoPolicy,
    PackedStateTorso,
    RecurrentTorsoPolicy,
)
from dream_rl.sb3.ppo import SequencePPO

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
    "SequencePPO",
    "SequenceRolloutBuffer",
    "TorsoInternalsCallback",
]
