"""``nn.GRU`` as a torso.

State size: ``L·H``; 64 at width 64.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dream_rl.torsos._torch_rnn import from_layers, reject_layout_kwargs, to_layers
from dream_rl.torsos.base import RecurrentTorso

__all__ = ["GruTorso"]


class GruTorso(RecurrentTorso):
    """``nn.GRU`` behind the torso interface. Flat state: ``h (L·H)``, layer-major."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, **gru_kwargs: Any) -> None:
        super().__init__()
        reject_layout_kwargs(gru_kwargs, "GRU")
        self.input_size, self.output_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.rnn = nn.GRU(self.input_size, self.output_size, num_layers=self.num_layers, **gru_kwargs)
        self.state_size = self.num_layers * self.output_size

    def run(self, features: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        out, h = self.rnn(features, to_layers(state, self.num_layers))
        return out, from_layers(h)
