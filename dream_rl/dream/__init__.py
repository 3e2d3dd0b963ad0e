"""The DREAM library: plain PyTorch, no reinforcement-learning dependency.

- :class:`DREAMConfig` (:mod:`.config`): every hyperparameter of the cell, validated, with presets.
- :class:`DREAMState` (:mod:`.state`): the recurrent state (hidden state, fast weights, error statistics).
- :class:`DREAMCell` (:mod:`.cell`): one step of the equations (the reference every kernel is tested against).
- :class:`DREAM`, :class:`DREAMStack` (:mod:`.layers`): a layer over sequences and a stack of layers.
- :mod:`.kernels`: the fast whole-sequence kernels (C++ and pure PyTorch) behind ``DREAMCell.run_time_major``.

Imports flow one way: layers → cell → kernels → state → config → :mod:`dream_rl.errors`.
"""

from dream_rl.dream.cell import DREAMCell, StepInternals
from dream_rl.dream.config import DREAMConfig
from dream_rl.dream.layers import DREAM, DREAMOutput, DREAMStack
from dream_rl.dream.state import DREAMState
from dream_rl.errors import DREAMError

__all__ = ["DREAM", "DREAMCell", "DREAMConfig", "DREAMError", "DREAMOutput", "DREAMStack", "DREAMState", "StepInternals"]
