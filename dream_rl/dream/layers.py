"""Sequence models over the DREAM cell: :class:`DREAM` (nn.LSTM-like) and :class:`DREAMStack`."""

from __future__ import annotations

import numbers
from typing import Any

import torch
from torch import Tensor, nn

from dream_rl.dream.cell import DREAMCell, check_finite
from dream_rl.dream.config import DREAMConfig
from dream_rl.dream.state import DREAMState
from dream_rl.errors import DREAMError

__all__ = ["DREAM", "DREAMStack", "DREAMOutput"]

DREAMOutput = tuple[Tensor, DREAMState]


class DREAM(nn.Module):
    """High-level DREAM sequence model, batch-first.

    Args:
        input_dim: input feature dimension.
        hidden_dim: hidden state size.
        rank: fast-weight rank.
        **kwargs: any other :class:`DREAMConfig` field.
    """

    def __init__(self, input_dim: int = 39, hidden_dim: int = 256, rank: int = 16, **kwargs: Any) -> None:
        super().__init__()
        config = DREAMConfig(input_dim=input_dim, hidden_dim=hidden_dim, rank=rank, **kwargs)
        self.cell = DREAMCell(config)

    def get_config(self) -> DREAMConfig:
        return self.cell.config

    def init_state(
        self, batch_size: int, device: str | torch.device | None = None, dtype: torch.dtype | None = None
    ) -> DREAMState:
        return self.cell.init_state(batch_size, device, dtype)

    def reset_parameters(self) -> None:
        self.cell.reset_parameters()

    def forward(
        self, x: Tensor, state: DREAMState | None = None, return_sequences: bool = True
    ) -> DREAMOutput:
        """``x``: (B, T, I) → (B, T, H) (or (B, H) when ``return_sequences`` is False), final state.
        A missing ``state`` starts from :meth:`init_state`.

        Raises :class:`DREAMError` for a state that does not fit (field, shape, dtype, device), an
        input of another dtype or device than the model, and NaN/inf input (first bad batch index
        named); see :mod:`dream_rl.dream.cell`."""
        _check_batch_first(x, self.cell.config.input_dim)
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        return self.cell.forward_sequence(x, state, return_all=return_sequences)

    def forward_with_mask(
        self, x: Tensor, lengths: Tensor, state: DREAMState | None = None
    ) -> DREAMOutput:
        """Padded sequences. ``x``: (B, T_max, I), ``lengths``: (B,) with 1 <= length <= T_max.

        Returns outputs (B, T_max, H) with zeros at padded steps, and for each sequence the state
        after its own last step (padded steps leave the state untouched). Padded steps may hold
        anything, NaN included; NaN or inf within a sequence's length raises :class:`DREAMError`.
        """
        _check_batch_first(x, self.cell.config.input_dim)
        B, T = x.shape[0], x.shape[1]
        if state is None:
            state = self.init_state(B, x.device, x.dtype)
        self.cell._check_structure(x, state, "x", 3, batch_axis=0)  # a batch-1 state would otherwise broadcast
        lengths = torch.as_tensor(lengths, device=x.device).reshape(-1)
        if lengths.shape[0] != B:
            raise DREAMError(f"lengths must have one entry per sequence ({B}), got {lengths.shape[0]}")
        if lengths.dtype.is_floating_point or bool((lengths < 1).any()) or bool((lengths > T).any()):
            raise DREAMError(f"lengths must be integers in [1, {T}] (the padded length), got {lengths.tolist()}")
        valid = torch.arange(T, device=x.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
        check_finite(x, "x", batch_axis=0, valid=valid)  # padded steps may hold anything
        outputs = []
        for t, x_t in enumerate(x.unbind(1)):
            active = lengths > t  # (B,)
            h, stepped, _ = self.cell.step(x_t, state)
            state = DREAMState.where(active, stepped, state)
            outputs.append(torch.where(active.unsqueeze(1), h, torch.zeros_like(h)))
        return torch.stack(outputs, dim=1), state


class DREAMStack(nn.Module):
    """Several DREAM layers, each feeding the next, with dropout between layers (not after the last).

    Args:
        input_dim: input dimension of the first layer.
        hidden_dims: hidden size of each layer, e.g. ``[128, 128, 64]`` for three layers.
        rank: fast-weight rank of every layer (must be <= every hidden size).
        dropout: dropout probability between layers.
        **kwargs: any other :class:`DREAMConfig` field, shared by all layers.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dims: list[int],
        rank: int = 16,
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if not isinstance(hidden_dims, (list, tuple)) or len(hidden_dims) == 0:
            raise DREAMError(f"hidden_dims must be a non-empty list of layer sizes, got {hidden_dims!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= float(dropout) < 1.0:
            raise DREAMError(f"dropout must be a number in [0, 1), got {dropout!r}")
        in_dims = [input_dim, *hidden_dims[:-1]]
        self.layers = nn.ModuleList(
            DREAM(i, h, rank, **kwargs) for i, h in zip(in_dims, hidden_dims)
        )
        self.dropout = nn.Dropout(dropout)

    @property
    def hidden_dims(self) -> list[int]:
        return [layer.get_config().hidden_dim for layer in self.layers]

    def get_config(self) -> list[DREAMConfig]:
        """One configuration per layer."""
        return [layer.get_config() for layer in self.layers]

    def init_state(
        self, batch_size: int, device: str | torch.device | None = None, dtype: torch.dtype | None = None
    ) -> list[DREAMState]:
        return [layer.init_state(batch_size, device, dtype) for layer in self.layers]

    def reset_parameters(self) -> None:
        for layer in self.layers:
            layer.reset_parameters()

    def forward(
        self, x: Tensor, state: list[DREAMState] | None = None
    ) -> tuple[Tensor, list[DREAMState]]:
        """``x``: (B, T, input_dim) → (B, T, hidden_dims[-1]) and the list of final layer states."""
        if state is None:
            state = [None] * len(self.layers)  # type: ignore[list-item]
        elif not isinstance(state, (list, tuple)) or len(state) != len(self.layers):
            got = len(state) if isinstance(state, (list, tuple)) else type(state).__name__
            raise DREAMError(f"state must be a list of {len(self.layers)} DREAMState (one per layer), got {got}")
        final_states = []
        for index, (layer, layer_state) in enumerate(zip(self.layers, state)):
            if index > 0:
                x = self.dropout(x)
            try:
                x, layer_state = layer(x, layer_state)
            except DREAMError as error:  # say which layer's state (or input) was refused
                raise DREAMError(f"DREAMStack layer {index}: {error}") from error
            final_states.append(layer_state)
        return x, final_states


def _check_batch_first(x: Tensor, input_dim: int) -> None:
    if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[2] != input_dim:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise DREAMError(f"x must have shape (batch, time, input_dim={input_dim}), got {got}")

