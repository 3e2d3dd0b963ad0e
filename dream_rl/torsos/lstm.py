"""``nn.LSTM`` (oneDNN-fused on CPU) as a torso.

State size: ``2·L·H`` (h and c of every layer); 128 at width 64.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dream_rl.torsos._torch_rnn import build_rnn, from_layers, to_layers
from dream_rl.torsos.base import RecurrentTorso

__all__ = ["LstmTorso"]


class LstmTorso(RecurrentTorso):
    """``nn.LSTM`` behind the torso interface. Flat state: ``[h (L·H), c (L·H)]``, layer-major."""

    # No option of nn.LSTM changes what one layer computes (bias, dropout between layers): the learning-rate
    # multiple is its whole search space.
    search_space: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, **lstm_kwargs: Any) -> None:
        super().__init__()
        self.input_size, self.output_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.rnn = build_rnn(nn.LSTM, "LSTM", self.input_size, self.output_size, self.num_layers, lstm_kwargs)
        self.state_size = 2 * self.num_layers * self.output_size

    def run(self, features: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        h, c = state.chunk(2, dim=1)  # each (B, L·H)
        out, (h, c) = self.rnn(features, (to_layers(h, self.num_layers), to_layers(c, self.num_layers)))
        return out, torch.cat([from_layers(h), from_layers(c)], dim=1)
