"""Recurrent torsos: one interface that DREAM, LSTM and GRU memories implement.

A torso maps a feature sequence to an output sequence while carrying a *flat* state: one float
vector per sequence, all zeros at the initial state. Plain tensors, time-major like ``nn.LSTM``::

    out, state = torso(features, state, episode_starts)
    # features (T, B, input_size), state (B, state_size), episode_starts (T, B) of 0/1
    # out (T, B, output_size), state (B, state_size)

Because zeros are the initial state, resetting sequence ``b`` before step ``t`` is
``state[b] *= 1 - episode_starts[t, b]``, exact for every torso. A torso is usable on its own;
:mod:`dream_rl.sb3` adapts it to sb3-contrib's RecurrentPPO.
"""

from __future__ import annotations

import dataclasses
import difflib
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor, nn

from dream_rl.cell import DREAMCell, StepInternals
from dream_rl.config import DREAMConfig
from dream_rl.errors import DREAMError
from dream_rl.state import DREAMState

__all__ = ["RecurrentTorso", "DreamTorso", "LstmTorso", "GruTorso"]


class RecurrentTorso(nn.Module, ABC):
    """Base class of the recurrent feature extractors.

    Subclasses set ``input_size``, ``output_size`` and ``state_size`` and implement
    :meth:`run`, the reset-free sequence computation; :meth:`forward` adds episode resets.
    """

    input_size: int
    output_size: int
    state_size: int

    def initial_state(
        self, batch_size: int, device: str | torch.device | None = None, dtype: torch.dtype | None = None
    ) -> Tensor:
        """The initial flat state: zeros of shape (batch_size, state_size)."""
        return torch.zeros(batch_size, self.state_size, device=device, dtype=dtype)

    def forward(
        self, features: Tensor, state: Tensor, episode_starts: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Run a sequence, resetting each sequence's state where its episode starts.

        Args:
            features: (T, B, input_size).
            state: (B, state_size), the state before the first step.
            episode_starts: (T, B), 1 where step t starts a new episode (reset before it); None: no resets.
        Returns:
            out (T, B, output_size) and the state after the last step (B, state_size).
        """
        self._check(features, state)
        if episode_starts is None:
            return self.run(features, state)
        keep = 1.0 - episode_starts.to(state.dtype)  # (T, B)
        state = state * keep[0].unsqueeze(1)
        # RecurrentPPO only starts episodes at position 0 of a training sequence, so the common
        # case is one call; otherwise split the sequence at every step where any episode starts.
        if features.shape[0] == 1 or not bool((keep[1:] < 1.0).any()):
            return self.run(features, state)
        cuts = [0, *(torch.nonzero((keep[1:] < 1.0).any(dim=1)).flatten() + 1).tolist(), features.shape[0]]
        outputs = []
        for start, stop in zip(cuts[:-1], cuts[1:]):
            if start > 0:
                state = state * keep[start].unsqueeze(1)
            out, state = self.run(features[start:stop], state)
            outputs.append(out)
        return torch.cat(outputs), state

    @abstractmethod
    def run(self, features: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """The sequence computation with no resets: (T, B, input_size), (B, state_size) →
        (T, B, output_size), (B, state_size)."""

    def _check(self, features: Tensor, state: Tensor) -> None:
        if features.dim() != 3 or features.shape[2] != self.input_size:
            raise DREAMError(
                f"{type(self).__name__} expects features of shape (time, batch, {self.input_size}), "
                f"got {tuple(features.shape)}"
            )
        if state.shape != (features.shape[1], self.state_size):
            raise DREAMError(
                f"{type(self).__name__} expects a state of shape (batch={features.shape[1]}, "
                f"{self.state_size}), got {tuple(state.shape)}; start from initial_state(batch)"
            )


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


class LstmTorso(RecurrentTorso):
    """``nn.LSTM`` behind the torso interface. Flat state: ``[h (L·H), c (L·H)]``, layer-major."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, **lstm_kwargs: Any) -> None:
        super().__init__()
        _reject_layout_kwargs(lstm_kwargs, "LSTM")
        self.input_size, self.output_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.rnn = nn.LSTM(self.input_size, self.output_size, num_layers=self.num_layers, **lstm_kwargs)
        self.state_size = 2 * self.num_layers * self.output_size

    def run(self, features: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        h, c = state.chunk(2, dim=1)  # each (B, L·H)
        out, (h, c) = self.rnn(features, (_to_layers(h, self.num_layers), _to_layers(c, self.num_layers)))
        return out, torch.cat([_from_layers(h), _from_layers(c)], dim=1)


class GruTorso(RecurrentTorso):
    """``nn.GRU`` behind the torso interface. Flat state: ``h (L·H)``, layer-major."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, **gru_kwargs: Any) -> None:
        super().__init__()
        _reject_layout_kwargs(gru_kwargs, "GRU")
        self.input_size, self.output_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.rnn = nn.GRU(self.input_size, self.output_size, num_layers=self.num_layers, **gru_kwargs)
        self.state_size = self.num_layers * self.output_size

    def run(self, features: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        out, h = self.rnn(features, _to_layers(state, self.num_layers))
        return out, _from_layers(h)


def _to_layers(flat: Tensor, num_layers: int) -> Tensor:
    """(B, L·H) → (L, B, H), the layout nn.LSTM / nn.GRU take."""
    return flat.reshape(flat.shape[0], num_layers, -1).transpose(0, 1).contiguous()


def _from_layers(layers: Tensor) -> Tensor:
    """(L, B, H) → (B, L·H)."""
    return layers.transpose(0, 1).reshape(layers.shape[1], -1)


def _reject_layout_kwargs(kwargs: dict[str, Any], name: str) -> None:
    bad = sorted({"batch_first", "bidirectional", "proj_size"} & set(kwargs))
    if bad:
        raise DREAMError(f"{name} torso does not support {bad}: torsos are unidirectional and time-major")


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
