"""The torso interface: a recurrent memory over a flat state, with exact episode resets.

A torso maps a feature sequence to an output sequence while carrying a *flat* state: one float
vector per sequence, all zeros exactly at the initial state. Plain tensors, time-major like
``nn.LSTM``::

    out, state = torso(features, state, episode_starts)
    # features (T, B, input_size), state (B, state_size), episode_starts (T, B) of 0/1
    # out (T, B, output_size), state (B, state_size)

Because zeros are the initial state, resetting sequence ``b`` before step ``t`` sets ``state[b]``
to zeros. It is done by selection (``torch.where``), not by multiplying with ``1 - start``: a
non-finite value in a finished episode's state must not survive the reset (0 * NaN = NaN).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor, nn

from dream_rl.errors import DREAMError

__all__ = ["RecurrentTorso", "StackedTorso", "reset_where"]


def reset_where(state: Tensor, starts: Tensor) -> Tensor:
    """``state`` (B, P) with the rows where ``starts`` (B,) is nonzero replaced by zeros."""
    return torch.where(starts.reshape(-1, 1) != 0, torch.zeros((), dtype=state.dtype, device=state.device), state)


class RecurrentTorso(nn.Module, ABC):
    """Base class of the recurrent feature extractors.

    Subclasses set ``input_size``, ``output_size`` and ``state_size`` in ``__init__`` and
    implement :meth:`run`, the reset-free sequence computation. :meth:`forward` adds episode
    resets by cutting the sequence where an episode starts; a subclass that can fold resets into
    its own computation (the scan torsos: a reset zeroes the decay) overrides
    :meth:`run_with_resets` instead.

    Every torso takes ``(input_size, hidden_size, num_layers=1, **model_kwargs)``.
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
            episode_starts: (T, B), nonzero where step t starts a new episode (the state is reset
                before step t); None: no resets.
        Returns:
            out (T, B, output_size) and the state after the last step (B, state_size).
        """
        self._check(features, state, episode_starts)
        if episode_starts is None:
            return self.run(features, state)
        return self.run_with_resets(features, state, episode_starts != 0)

    @abstractmethod
    def run(self, features: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """The sequence computation with no resets: (T, B, input_size), (B, state_size) →
        (T, B, output_size), (B, state_size)."""

    def run_with_resets(self, features: Tensor, state: Tensor, starts: Tensor) -> tuple[Tensor, Tensor]:
        """The sequence computation with resets; ``starts`` (T, B) bool.

        RecurrentPPO starts episodes only at position 0 of a training sequence, so the common case
        is one :meth:`run` call; otherwise the sequence is cut at every step where any episode starts.
        """
        state = reset_where(state, starts[0])
        later = starts[1:].any(dim=1)  # (T-1,)
        if not bool(later.any()):
            return self.run(features, state)
        cuts = [0, *(torch.nonzero(later).flatten() + 1).tolist(), features.shape[0]]
        outputs = []
        for start, stop in zip(cuts[:-1], cuts[1:]):
            if start > 0:
                state = reset_where(state, starts[start])
            out, state = self.run(features[start:stop], state)
            outputs.append(out)
        return torch.cat(outputs), state

    def _check(self, features: Tensor, state: Tensor, episode_starts: Tensor | None) -> None:
        name = type(self).__name__
        if features.dim() != 3 or features.shape[2] != self.input_size:
            raise DREAMError(
                f"{name} expects features of shape (time, batch, {self.input_size}), got {tuple(features.shape)}"
            )
        if features.shape[0] == 0:
            raise DREAMError(f"{name} got an empty sequence (time = 0): pass at least one step")
        if state.shape != (features.shape[1], self.state_size):
            raise DREAMError(
                f"{name} expects a state of shape (batch={features.shape[1]}, {self.state_size}), "
                f"got {tuple(state.shape)}; start from initial_state(batch)"
            )
        if episode_starts is not None and episode_starts.shape != features.shape[:2]:
            raise DREAMError(
                f"{name} expects episode_starts of shape (time, batch) = {tuple(features.shape[:2])}, "
                f"got {tuple(episode_starts.shape)}"
            )


class StackedTorso(RecurrentTorso):
    """``num_layers`` layers of width ``hidden_size``, each feeding the next, with dropout between
    them as in ``nn.LSTM`` (RecurrentPPO passes it through ``lstm_kwargs``). Each layer has a
    ``state_size`` and is called ``layer(x (T, B, in), layer_state (B, state_size), *extra)`` →
    ``(y (T, B, hidden_size), new layer_state)``; the flat state concatenates the layers' states.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        make_layer: Callable[[int], nn.Module],
    ) -> None:
        """``make_layer(width)`` builds one layer over ``width`` input features."""
        super().__init__()
        if not 0.0 <= float(dropout) < 1.0:
            raise DREAMError(f"{type(self).__name__}: dropout must be in [0, 1), got {dropout}")
        self.input_size, self.output_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        widths = [self.input_size] + [self.output_size] * (self.num_layers - 1)
        self.layers = nn.ModuleList(make_layer(width) for width in widths)
        self.dropout = float(dropout)
        self.layer_sizes = [layer.state_size for layer in self.layers]
        self.state_size = sum(self.layer_sizes)

    def run(self, features: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        return self.run_layers(features, state)

    def run_layers(self, x: Tensor, state: Tensor, *extra: object) -> tuple[Tensor, Tensor]:
        """Every layer in turn, each from its slice of ``state``; ``extra`` goes to every layer."""
        last_states = []
        for index, (layer, layer_state) in enumerate(zip(self.layers, torch.split(state, self.layer_sizes, dim=1))):
            if index and self.dropout:
                x = nn.functional.dropout(x, self.dropout, self.training)
            x, layer_state = layer(x, layer_state, *extra)
            last_states.append(layer_state)
        return x, torch.cat(last_states, dim=1)
