"""Frame stacking (POPGym's "Fstack", SB3's ``VecFrameStack`` inside the policy): the last ``k`` inputs, side by side.

Model: POPGym's ``Framestack`` (Morad et al., "POPGym: Benchmarking Partially Observable Reinforcement
Learning", ICLR 2023; ``popgym/baselines/ray_models/ray_framestack.py``), the frame stacking of DQN
(Mnih et al., "Human-level control through deep reinforcement learning", Nature 2015). Each of the last
``k`` inputs is compressed to ``c = ceil(H / k)`` features by one shared linear map, the ``k`` codes are
concatenated (oldest first) and a two-layer MLP reads them::

    w_t = [x_{t-k+1}, ..., x_t]                    zeros for steps before the episode's first step
    z_t = [W_c x_{t-k+1} + b_c, ..., W_c x_t + b_c]  (k·c features)
    y_t = LeakyReLU(W_2 LeakyReLU(W_1 z_t + b_1) + b_2)

Recurrence: the window shifts by one step, ``w_t = [w_{t-1}[1:], x_t]``. The flat state holds the
inputs of the last ``k - 1`` steps, oldest first: all zeros at an episode start (an empty window, as
POPGym's zero padding), so zeros are the initial state and a reset is exact. The memory reaches
``k - 1`` steps back and no further: a cue seen ``k`` or more steps before it is needed is lost
(``tests/torsos/test_memoryless.py`` checks both sides of that edge on the T-maze).

Defaults: ``k = 4``, POPGym's ``stack_size`` and the usual ``VecFrameStack(n_stack=4)`` of SB3 users
(the Atari convention of Mnih et al.). ``num_layers`` repeats the two-layer block after the stack
(1 = POPGym's model), with ``dropout`` between blocks.

What differs from POPGym: POPGym asserts ``H % k == 0`` and compresses to ``H / k``; here ``c`` rounds
up so any width works (identical when ``k`` divides ``H``). POPGym adds its sinusoidal step encoding
to the inputs by default; frame stacking here sees the frames only, so the window is its whole memory
(the encoding is :mod:`dream_rl.torsos.positional_mlp`). POPGym's shared feature map in front of
every model is not part of the torso, and torch's default initialisation replaces its orthogonal one.
Compared with ``VecFrameStack``, the stack is of the features extractor's output (the observation for
``MlpTorsoPolicy``) and lives in the policy's state, so RecurrentPPO's rollouts, resets and
``predict(state=...)`` handle it as any memory.

State size: ``(k - 1)·input_size``; 9 for the T-maze (3 features) with ``k = 4``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from torch import Tensor, nn

from dream_rl.torsos._popgym import causal_window, popgym_core, reject_unknown_options
from dream_rl.torsos.base import RecurrentTorso, check_dropout, check_size

__all__ = ["FramestackTorso"]


class FramestackTorso(RecurrentTorso):
    """The last ``k`` inputs, compressed, concatenated and read by ``num_layers`` two-layer blocks of width
    ``hidden_size``. Flat state: the last ``k - 1`` inputs (B, (k-1)·input_size). Options: ``k``, ``dropout``."""

    # The window k, the torso's whole memory: 2 to 32 steps (the quick T-maze's corridor is 10).
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "k": {"type": "int", "low": 2, "high": 32, "log": True},
    }

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        k: int = 4,
        dropout: float = 0.0,
        **unknown: Any,
    ) -> None:
        super().__init__()
        reject_unknown_options("framestack", unknown, ["k", "dropout"])
        self.num_layers = int(num_layers)  # a positive int: RecurrentTorso checks the sizes
        self.k = check_size("framestack torso", "k", k)
        dropout = check_dropout("framestack torso", dropout)
        self.input_size, self.output_size, self.dropout = int(input_size), int(hidden_size), float(dropout)
        self.code_size = math.ceil(self.output_size / self.k)
        self.compress = nn.Linear(self.input_size, self.code_size)  # shared by every frame of the window
        widths = [self.k * self.code_size] + [self.output_size] * (self.num_layers - 1)
        self.blocks = nn.ModuleList(popgym_core(width, self.output_size) for width in widths)
        self.state_size = (self.k - 1) * self.input_size

    def run(self, features: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        return self._stack(features, state, None)

    def run_with_resets(self, features: Tensor, state: Tensor, starts: Tensor) -> tuple[Tensor, Tensor]:
        return self._stack(features, state, starts)

    def _stack(self, features: Tensor, state: Tensor, starts: Tensor | None) -> tuple[Tensor, Tensor]:
        window, state = causal_window(features, state, starts, self.k)  # (T, B, k, input_size)
        # The window's empty slots are zero inputs, compressed like any other (as POPGym's zero padding).
        z = self.compress(window).flatten(2)  # (T, B, k·c)
        for index, block in enumerate(self.blocks):
            if index and self.dropout:
                z = nn.functional.dropout(z, self.dropout, self.training)
            z = block(z)
        return z, state
