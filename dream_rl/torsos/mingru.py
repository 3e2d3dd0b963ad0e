"""MinGRU (Feng et al. 2024, "Were RNNs All We Needed?") as a scan torso.

The GRU with its gates computed from the input only, so the recurrence is linear in the state::

    z_t = σ(W_z x_t + b_z)                  update gate
    h̃_t = g(W_h x_t + b_h)                  candidate, g(v) = v + 0.5 (v >= 0), σ(v) (v < 0)
    h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t   = a_t ⊙ h_{t-1} + b_t

``g`` is the paper's activation for its log-space scan (it keeps h̃ positive); the scan here needs
no logarithms, but the activation is kept so the model is the paper's. The output is ``h_t`` itself
(width ``hidden_size``), as in the paper. Initialisation: torch's default ``nn.Linear``, as the
paper's reference model uses plain linear layers.

State size: ``L·H`` (one real vector per layer); 64 at width 64. No model options.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dream_rl.torsos.scan import ScanLayer, ScanTorso, linear_scan

__all__ = ["MinGruTorso", "MinGruLayer"]


def positive_activation(v: Tensor) -> Tensor:
    """The paper's ``g``: ``v + 0.5`` for ``v >= 0``, ``σ(v)`` below; continuous and positive.

    Written as ``relu(v) + σ(-relu(-v))`` (equal everywhere, as σ(0) = 0.5): ``torch.where`` or
    ``clamp`` (whose backward selects) over a (T, B, H) tensor measured about 20x slower on CPU."""
    return torch.relu(v) + torch.sigmoid(-torch.relu(-v))


class MinGruLayer(ScanLayer):
    """One MinGRU layer: (T, B, input_size) → (T, B, hidden_size); state ``h`` (B, hidden_size)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.state_size = hidden_size
        self.proj = nn.Linear(input_size, 2 * hidden_size)  # [gate | candidate] in one matmul

    def forward(self, x: Tensor, h0: Tensor, starts: Tensor | None) -> tuple[Tensor, Tensor]:
        gate, candidate = self.proj(x).chunk(2, dim=-1)
        z = torch.sigmoid(gate)
        h = linear_scan(1 - z, z * positive_activation(candidate), h0, starts)
        return h, h[-1]


class MinGruTorso(ScanTorso):
    """``num_layers`` MinGRU layers of width ``hidden_size``. Flat state: ``h`` of every layer."""

    layer_options = ()

    def make_layer(self, input_size: int, hidden_size: int, **layer_kwargs: Any) -> ScanLayer:
        return MinGruLayer(input_size, hidden_size)
