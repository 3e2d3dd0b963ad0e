"""``nn.RNN`` (the Elman network, ``h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``) as a torso.

Model: the vanilla tanh recurrent network (Elman 1990), as asked for in sb3-contrib #295 / PR #296.
Source: ``torch.nn.RNN`` (fused on CPU). Options: any ``nn.RNN`` argument but the layout ones
(``nonlinearity="relu"``, ``bias``, ``dropout`` between layers).
State size: ``L·H`` (h of every layer); 64 at width 64.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from dream_rl.torsos._torch_rnn import build_rnn, from_layers, to_layers
from dream_rl.torsos.base import RecurrentTorso

__all__ = ["ElmanTorso"]


class ElmanTorso(RecurrentTorso):
    """``nn.RNN`` behind the torso interface. Flat state: ``h (L·H)``, layer-major."""

    # The recurrence's nonlinearity: tanh (Elman's) or relu (nn.RNN's other choice).
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "nonlinearity": {"type": "categorical", "choices": ["tanh", "relu"]},
    }

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, **rnn_kwargs: Any) -> None:
        super().__init__()
        self.input_size, self.output_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.rnn = build_rnn(
            nn.RNN, "Elman", self.input_size, self.output_size, self.num_layers, rnn_kwargs, extra=("nonlinearity",)
        )
        self.state_size = self.num_layers * self.output_size

    def run(self, features: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        out, h = self.rnn(features, to_layers(state, self.num_layers))
        return out, from_layers(h)
