"""Layout helpers shared by the torsos that wrap ``torch.nn`` recurrent layers (LSTM, GRU, Elman)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from dream_rl.errors import DREAMError

__all__ = ["to_layers", "from_layers", "reject_layout_kwargs"]


def to_layers(flat: Tensor, num_layers: int) -> Tensor:
    """(B, L·H) → (L, B, H), the layout nn.LSTM / nn.GRU take."""
    return flat.reshape(flat.shape[0], num_layers, -1).transpose(0, 1).contiguous()


def from_layers(layers: Tensor) -> Tensor:
    """(L, B, H) → (B, L·H)."""
    return layers.transpose(0, 1).reshape(layers.shape[1], -1)


def reject_layout_kwargs(kwargs: dict[str, Any], name: str) -> None:
    bad = sorted({"batch_first", "bidirectional", "proj_size"} & set(kwargs))
    if bad:
        raise DREAMError(f"{name} torso does not support {bad}: torsos are unidirectional and time-major")
