"""MinGRU (Feng et al. 2024, "Were RNNs All We Needed?") as a scan torso.

The GRU with its gates computed from the input only, so the recurrence is linear in the state::

    z_t = σ(W_z x_t + b_z)                  update gate
    h̃_t = g(W_h x_t + b_h)                  candidate, g(v) = v + 0.5 (v >= 0), σ(v) (v < 0)
    h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t   = a_t ⊙ h_{t-1} + b_t

``g`` is the paper's activation for its log-space scan (it keeps h̃ positive); the scan here needs
no logarithms, but the activation is kept so the model is the paper's. The output is ``h_t`` itself
(width ``hidden_size``), as in the paper. Initialisation: torch's default ``nn.Linear``, as the
paper's reference model uses plain linear layers.

A causal depthwise convolution over the last ``conv_kernel`` steps
(:class:`~dream_rl.torsos.scan.CausalConv`) acts on the gate and candidate pre-activations, the
short convolution that Griffin's recurrent block and Meta's lingua minGRU put before the recurrence.
Without it the torso reached a return of 122-299 on CartPoleNoVel (sb3-contrib's LSTM setting, 50k
steps, seeds 1-4: the gates see only the current input, so the difference of two consecutive
positions the task needs is hard to form), with it 337-500 (seeds 1-4). ``conv_kernel = 0``: the
paper's model exactly.

State size: ``L·(H + 2·H·(conv_kernel - 1))``: the hidden vector, then the convolution's last inputs;
448 at width 64 (64 with ``conv_kernel = 0``). Options: ``conv_kernel`` (default 4).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dream_rl.torsos.scan import CausalConv, ScanLayer, ScanTorso, linear_scan

__all__ = ["MinGruTorso", "MinGruLayer"]


def positive_activation(v: Tensor) -> Tensor:
    """The paper's ``g``: ``v + 0.5`` for ``v >= 0``, ``σ(v)`` below; continuous and positive.

    Written as ``relu(v) + σ(-relu(-v))`` (equal everywhere, as σ(0) = 0.5): ``torch.where`` or
    ``clamp`` (whose backward selects) over a (T, B, H) tensor measured about 20x slower on CPU."""
    return torch.relu(v) + torch.sigmoid(-torch.relu(-v))


class MinGruLayer(ScanLayer):
    """One MinGRU layer: (T, B, input_size) → (T, B, hidden_size); state ``[h (B, hidden_size) | conv history]``."""

    def __init__(self, input_size: int, hidden_size: int, conv_kernel: int = 4) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.proj = nn.Linear(input_size, 2 * hidden_size)  # [gate | candidate] in one matmul
        self.conv = CausalConv(2 * hidden_size, conv_kernel) if conv_kernel else None
        self.state_size = hidden_size + (self.conv.state_size if self.conv is not None else 0)

    def forward(self, x: Tensor, h0: Tensor, starts: Tensor | None) -> tuple[Tensor, Tensor]:
        projected = self.proj(x)
        if self.conv is not None:
            h0, conv_history = h0.split([self.hidden_size, self.conv.state_size], dim=1)
            projected, conv_history = self.conv(projected, conv_history, starts)
        gate, candidate = projected.chunk(2, dim=-1)
        z = torch.sigmoid(gate)
        h = linear_scan(1 - z, z * positive_activation(candidate), h0, starts)
        if self.conv is not None:
            return h, torch.cat([h[-1], conv_history], dim=1)
        return h, h[-1]


class MinGruTorso(ScanTorso):
    """``num_layers`` MinGRU layers of width ``hidden_size``; option ``conv_kernel``. Flat state: ``h`` and the
    convolution's history of every layer."""

    # The short convolution before the scan (0: none): it carries the last few inputs exactly.
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "conv_kernel": {"type": "categorical", "choices": [0, 2, 4, 8]},
    }

    layer_options = ("conv_kernel",)

    def make_layer(self, input_size: int, hidden_size: int, **layer_kwargs: Any) -> ScanLayer:
        return MinGruLayer(input_size, hidden_size, **layer_kwargs)
