"""The GRU torso: ``nn.GRU``'s parameters, computed by the fused sequence path of :mod:`dream_rl.torsos.gru_kernel`.

The torso holds an ``nn.GRU`` as ``self.rnn`` (so checkpoints keep their parameter names) but runs
it through :func:`dream_rl.torsos.gru_kernel.gru_forward`: on CPU the input projection of all steps is one
GEMM, the h-recurrence one C++ kernel with a hand-written backward, the weight gradients GEMMs over
the whole sequence. Same values and gradients as ``nn.GRU``; ``backend="module"`` runs ``nn.GRU``
itself (the default on CUDA, where cuDNN is fused already).

State size: ``L·H``; 64 at width 64.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from dream_rl._native.backends import check_backend
from dream_rl.torsos._torch_rnn import build_rnn, from_layers, to_layers
from dream_rl.torsos.base import RecurrentTorso
from dream_rl.torsos.gru_kernel import gru_forward

__all__ = ["GruTorso"]


class GruTorso(RecurrentTorso):
    """A GRU behind the torso interface. Flat state: ``h (L·H)``, layer-major.

    Args:
        input_size, hidden_size, num_layers: as ``nn.GRU``.
        backend: None (default: the process-wide default of :func:`dream_rl._native.backends.set_backend`,
            ``"auto"`` unless changed), ``"auto"`` (the C++ kernel on CPU where it builds, else the
            pure-PyTorch kernel; ``nn.GRU`` on CUDA), ``"native"``, ``"torch"`` or ``"reference"`` (``nn.GRU``).
        **gru_kwargs: passed to ``nn.GRU`` (``bias``, ``dropout``, ``device``, ``dtype``).
    """

    # As for the LSTM: no option of nn.GRU changes what one layer computes; the learning-rate multiple is its
    # whole search space.
    search_space: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, backend: str | None = None, **gru_kwargs: Any
    ) -> None:
        super().__init__()
        if backend is not None:
            check_backend("reference" if backend == "module" else backend, "GRU")
        self.input_size, self.output_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.backend = backend
        self.rnn = build_rnn(
            nn.GRU, "GRU", self.input_size, self.output_size, self.num_layers, gru_kwargs, extra=("backend",)
        )
        self.state_size = self.num_layers * self.output_size

    def run(self, features: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        out, h = gru_forward(self.rnn, features, to_layers(state, self.num_layers), self.backend)
        return out, from_layers(h)
