"""Layout helpers shared by the torsos that wrap ``torch.nn`` recurrent layers (LSTM, GRU, Elman)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from dream_rl.errors import TorsoError, first_line

__all__ = ["to_layers", "from_layers", "build_rnn", "RNN_OPTIONS"]

# The nn.RNNBase arguments a torso passes through: the layout ones (batch_first, bidirectional, proj_size)
# are fixed by the torso interface (unidirectional, time-major).
RNN_OPTIONS = ("bias", "dropout", "device", "dtype")


def to_layers(flat: Tensor, num_layers: int) -> Tensor:
    """(B, L·H) → (L, B, H), the layout nn.LSTM / nn.GRU take."""
    return flat.reshape(flat.shape[0], num_layers, -1).transpose(0, 1).contiguous()


def from_layers(layers: Tensor) -> Tensor:
    """(L, B, H) → (B, L·H)."""
    return layers.transpose(0, 1).reshape(layers.shape[1], -1)


def build_rnn(
    make: Callable[..., nn.RNNBase], name: str, input_size: int, hidden_size: int, num_layers: int,
    options: dict[str, Any], extra: tuple[str, ...] = (),
) -> nn.RNNBase:
    """``make(input_size, hidden_size, num_layers=..., **options)`` (``nn.LSTM``, ``nn.GRU``, ``nn.RNN``),
    with every problem in ``options`` as one :class:`TorsoError` line: the layout options, unknown
    options (naming the valid ones: :data:`RNN_OPTIONS` and the torso's ``extra``), and values torch refuses."""
    layout = sorted({"batch_first", "bidirectional", "proj_size"} & set(options))
    if layout:
        raise TorsoError(f"{name} torso does not support {layout}: torsos are unidirectional and time-major")
    valid = [*extra, *RNN_OPTIONS]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TorsoError(f"{name} torso got unknown options {unknown}; its options are {valid}")
    try:
        return make(input_size, hidden_size, num_layers=num_layers, **options)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TorsoError(f"{name} torso: {first_line(error)}") from None
