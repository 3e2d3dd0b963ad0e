"""DREAM as a torso: stacked :class:`~dream_rl.dream.cell.DREAMCell` s over a flat state.

State size per layer: ``DREAMState.flat_size(config)`` = ``H (h) + 2·H·r (U, U_target) + 2·I (error mean and
variance) + 2 (adaptive tau, average surprise) + 1 (layout tag)``; 1107 floats at width 64, rank 8 and 8 input features.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

import torch
from torch import Tensor, nn

from dream_rl.dream.cell import DREAMCell, StepInternals
from dream_rl.dream.config import DREAMConfig
from dream_rl.errors import DREAMError
from dream_rl.dream.state import DREAMState
from dream_rl.torsos.base import RecurrentTorso

__all__ = ["DreamTorso"]


class DreamTorso(RecurrentTorso):
    """``num_layers`` DREAM cells of ``hidden_size`` units, each feeding the next.

    The flat state concatenates the layers' :meth:`DREAMState.to_flat` vectors.

    Args:
        input_size: feature width ``I`` of the first layer.
        hidden_size: hidden units per layer.
        num_layers: number of stacked cells.
        dropout: dropout between layers (like ``nn.LSTM``'s).
        **dream_kwargs: any :class:`DREAMConfig` field except ``input_dim`` and ``hidden_dim``.
            ``rank`` defaults to ``min(16, hidden_size)``.
    """

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0, **dream_kwargs: Any
    ) -> None:
        super().__init__()
        _check_dream_kwargs(dream_kwargs)
        dream_kwargs.setdefault("rank", min(16, int(hidden_size)))
        self.input_size, self.output_size = int(input_size), int(hidden_size)
        self.cells = nn.ModuleList(
            DREAMCell(DREAMConfig(input_dim=width, hidden_dim=self.output_size, **dream_kwargs))
            for width in [self.input_size] + [self.output_size] * (int(num_layers) - 1)
        )
        self.dropout = nn.Dropout(dropout)
        self.layer_sizes = [DREAMState.flat_size(cell.config) for cell in self.cells]
        self.state_size = sum(self.layer_sizes)
        # Monitoring (not state): when `monitor` is set, single-step calls accumulate the
        # per-sample internals of the first layer; `pop_internals` returns their means.
        self.monitor = False
        self._internals_sum: Tensor | None = None
        self._internals_count = 0

    @property
    def config(self) -> DREAMConfig:
        """The first layer's configuration (all layers share it but for ``input_dim``)."""
        return self.cells[0].config

    def run(self, features: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        x = features
        new_states = []
        for index, (cell, flat) in enumerate(zip(self.cells, torch.split(state, self.layer_sizes, dim=1))):
            if index > 0:
                x = self.dropout(x)
            layer_state = DREAMState.from_flat(flat, cell.config)
            if self.monitor and index == 0 and x.shape[0] == 1:
                h, layer_state, internals = cell.step(x[0], layer_state)
                self._record(internals)
                x = h.unsqueeze(0)
            else:
                x, layer_state = cell.run_time_major(x, layer_state)
            new_states.append(layer_state.to_flat(cell.config))
        return x, torch.cat(new_states, dim=1)

    def _record(self, internals: StepInternals) -> None:
        means = torch.stack([value.detach().mean() for value in internals])  # (3,)
        self._internals_sum = means if self._internals_sum is None else self._internals_sum + means
        self._internals_count += 1

    def pop_internals(self) -> dict[str, float]:
        """Means of the internals recorded since the last call (empty if none), then forget them."""
        if self._internals_sum is None:
            return {}
        means = (self._internals_sum / self._internals_count).tolist()
        self._internals_sum, self._internals_count = None, 0
        return dict(zip(StepInternals._fields, means))


def _check_dream_kwargs(dream_kwargs: dict[str, Any]) -> None:
    for fixed, reason in (("input_dim", "the features extractor's output width"),
                          ("hidden_dim", "lstm_hidden_size / hidden_size")):
        if fixed in dream_kwargs:
            raise DREAMError(f"dream_kwargs may not set {fixed!r}: it is set from {reason}")
    allowed = [f.name for f in dataclasses.fields(DREAMConfig) if f.name not in ("input_dim", "hidden_dim")]
    for key in dream_kwargs:
        if key not in allowed:
            hint = difflib.get_close_matches(key, allowed, n=1)
            raise DREAMError(
                f"unknown dream_kwargs key {key!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                + f" (valid: {', '.join(allowed)})"
            )
