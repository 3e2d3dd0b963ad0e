"""A memoryless MLP (POPGym's "MLP"): the control that tells whether a task needs memory at all.

Model: POPGym's baseline without memory (Morad et al., "POPGym: Benchmarking Partially Observable
Reinforcement Learning", ICLR 2023; ``popgym/baselines/ray_models/ray_mlp.py``, class ``BasicMLP``).
Each step's output depends on that step's features only::

    y_t = LeakyReLU(W_2 LeakyReLU(W_1 x_t + b_1) + b_2)        W_1 (H, input_size), W_2 (H, H)

Recurrence: none; a sequence call is the step calls side by side. On a task that needs memory (the
T-maze's cue) the policy stays at chance; ``tests/torsos/test_memoryless.py`` checks it.

Defaults: POPGym's two layers with LeakyReLU (slope 0.01); torch's default ``nn.Linear``
initialisation. ``num_layers`` repeats the two-layer block (1 = POPGym's model), with ``dropout``
between blocks as in ``nn.LSTM``.

What differs from POPGym: POPGym's class ``MLP`` (the paper's "PosMLP") adds a sinusoidal step
encoding to the features; that model is :mod:`dream_rl.torsos.positional_mlp`, and this one is its
``BasicMLP``, the paper's "MLP". POPGym's shared feature map (a linear layer and a LayerNorm in front
of every model) is not part of this torso: in dream-rl the policy's features extractor comes first, and
a memoryless control is plainest without it. POPGym initialises linear layers orthogonally; torch's
default is kept here, as in the other torsos.

State size: 1, a placeholder that holds zero from the initial state on (it passes through unchanged and
a reset zeroes it). The model needs none; RecurrentPPO would take a state of size 0, but the torso
contract (``tests/torsos/test_contract.py``) writes into a state's first entry, so every torso has one.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from dream_rl.torsos._popgym import popgym_core, reject_unknown_options
from dream_rl.torsos.base import RecurrentTorso, check_dropout, reset_where

__all__ = ["MlpTorso"]


class MlpTorso(RecurrentTorso):
    """``num_layers`` two-layer blocks of width ``hidden_size``; a one-float state that stays zero.
    Option: ``dropout`` between blocks."""

    # No option changes what the block computes: the learning-rate multiple is its whole search space.
    search_space: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0, **unknown: Any
    ) -> None:
        super().__init__()
        reject_unknown_options("mlp", unknown, ["dropout"])
        self.num_layers = int(num_layers)  # a positive int: RecurrentTorso checks the sizes
        dropout = check_dropout("mlp torso", dropout)
        self.input_size, self.output_size, self.dropout = int(input_size), int(hidden_size), float(dropout)
        widths = [self.input_size] + [self.output_size] * (self.num_layers - 1)
        self.blocks = nn.ModuleList(popgym_core(width, self.output_size) for width in widths)
        self.state_size = 1

    def run(self, features: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        x = features
        for index, block in enumerate(self.blocks):
            if index and self.dropout:
                x = nn.functional.dropout(x, self.dropout, self.training)
            x = block(x)
        return x, state  # the placeholder passes through: zero from the initial state on

    def run_with_resets(self, features: Tensor, state: Tensor, starts: Tensor) -> tuple[Tensor, Tensor]:
        # One call over the whole sequence (the outputs ignore the state); a start anywhere zeroes the placeholder.
        out, _ = self.run(features, state)
        return out, reset_where(state, starts.any(dim=0))
