"""IndRNN, the independently recurrent neural network (Li, Li, Cook, Zhu & Gao, CVPR 2018,
"Independently Recurrent Neural Network (IndRNN): Building a Longer and Deeper RNN"), as a torso.

Model (per layer): every unit has one recurrent weight of its own, so units do not see each other
through time; they meet only in the next layer's input projection::

    h_t = σ(W x_t + b + u ⊙ h_{t-1})         u ∈ R^H (a vector, not a matrix), σ = ReLU
    |u_n| <= 2^(1 / max_len)                  the paper's constraint on the recurrent weights

The constraint is the paper's bound for a ReLU IndRNN (with ``|u| <= γ^(1/T)`` the
gradient through ``T`` steps grows by at most ``γ``), with ``γ = 2`` as in POPGym's IndRNN. It is
applied in the forward pass (``u`` is clamped where it is used) instead of by clamping the stored
parameter in place as POPGym does, so a forward pass never changes the parameters and a saved model
is the one that ran.

Source: the paper's equations and POPGym's IndRNN baseline (Morad et al., ICLR 2023), whose model is
two such layers: ``num_layers=2`` here is POPGym's model (each layer's input map with one bias, where
POPGym adds a second, redundant one). The initialisation is POPGym's: ``u ~ U(0, 1)`` (a spread of
memory timescales from none to the full bound), ``W`` and ``b`` by ``nn.Linear``'s default (POPGym's
extra ``U(0, 1)`` bias is left out: with ReLU and ``u`` near 1, a positive bias alone drives the state
towards ``b / (1 - u)``, hundreds of times the input's scale).

Sequential over time (the ReLU sits inside the recurrence, so there is no linear scan): the input
projection of all steps is one matmul, the loop does the elementwise recurrence.

Defaults: ``activation="relu"`` (the paper's; ``"tanh"`` is POPGym's configured alternative),
``max_len=1024`` (POPGym's), ``dropout=0`` between layers.
State size: ``L·H`` (h of every layer); 64 at width 64.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dream_rl.errors import TorsoError
from dream_rl.torsos.base import StackedTorso

__all__ = ["IndRnnLayer", "IndRnnTorso"]

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh}


class IndRnnLayer(nn.Module):
    """One IndRNN layer: ``forward(x (T, B, I), h (B, H))`` → ``(h (T, B, H), h_last (B, H))``."""

    def __init__(self, input_size: int, hidden_size: int, activation: str = "relu", max_len: int = 1024) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise TorsoError(f"indrnn: activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if int(max_len) < 1:
            raise TorsoError(
                f"indrnn: max_len must be >= 1 (the sequence length the weight bound is set for), got {max_len}"
            )
        self.activation = ACTIVATIONS[activation]
        self.bound = 2.0 ** (1.0 / int(max_len))
        self.input = nn.Linear(input_size, hidden_size)
        self.recurrent = nn.Parameter(torch.empty(hidden_size).uniform_(0.0, 1.0))
        self.state_size = hidden_size

    def recurrent_weight(self) -> Tensor:
        """``u`` (H,) within the paper's bound ``|u| <= 2^(1 / max_len)``."""
        return self.recurrent.clamp(-self.bound, self.bound)

    def forward(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        projected = self.input(x)  # (T, B, H): every step's input in one matmul
        u = self.recurrent_weight()
        outputs = []
        # unbind: one backward node for all steps, where indexing [t] would fill a zero (T, B, ·) gradient per step
        for step_input in projected.unbind(0):
            h = self.activation(torch.addcmul(step_input, u, h))
            outputs.append(h)
        return torch.stack(outputs), h


class IndRnnTorso(StackedTorso):
    """``num_layers`` IndRNN layers of width ``hidden_size``; flat state: ``h`` of every layer.

    Args:
        activation: ``"relu"`` (default, the paper's) or ``"tanh"``.
        max_len: the sequence length the recurrent-weight bound ``2^(1/max_len)`` is set for.
        dropout: dropout between layers, like ``nn.LSTM``'s.
    """

    # The activation (the paper's relu, POPGym's configured tanh) and the sequence length the recurrent
    # weight's bound is set for (2^(1/max_len): shorter lets a unit forget faster).
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "activation": {"type": "categorical", "choices": ["relu", "tanh"]},
        "max_len": {"type": "categorical", "choices": [32, 256, 1024, 8192]},
    }

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        activation: str = "relu",
        max_len: int = 1024,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(
            input_size, hidden_size, num_layers, dropout,
            lambda width: IndRnnLayer(width, int(hidden_size), activation, int(max_len)),
        )  # fmt: skip
