"""DREAM as a torso: stacked :class:`~dream_rl.dream.cell.DREAMCell` s over a flat state.

State size per layer: ``DREAMState.flat_size(config)`` = ``H (h) + 2·H·r (U, U_target) + 2·I (error mean and
variance) + 2 (adaptive tau, average surprise) + 1 (layout tag)``; 1107 floats at width 64, rank 8 and 8 input features.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dream_rl.dream.cell import DREAMCell, StepInternals
from dream_rl.dream.config import DREAMConfig
from dream_rl.dream.state import DREAMState
from dream_rl.errors import DREAMError
from dream_rl.torsos.base import StackedTorso

__all__ = ["DreamLayer", "DreamTorso"]


class DreamLayer(nn.Module):
    """One DREAM cell over a flat state: the layer :class:`DreamTorso` stacks.

    ``layer(x (T, B, in), flat (B, state_size))`` → ``(out (T, B, H), flat (B, state_size))``, with
    ``state_size = DREAMState.flat_size(config)``. When ``monitor`` is set, single-step calls also
    accumulate the per-sample internals (surprise, τ_eff, ‖U‖) for :meth:`DreamTorso.pop_internals`.
    """

    def __init__(self, config: DREAMConfig) -> None:
        super().__init__()
        self.cell = DREAMCell(config)
        self.state_size = DREAMState.flat_size(config)
        self.monitor = False
        self._internals_sum: Tensor | None = None  # (3,) sums of the per-step means
        self._internals_count = 0

    def forward(self, x: Tensor, flat: Tensor) -> tuple[Tensor, Tensor]:
        config = self.cell.config
        state = DREAMState.from_flat(flat, config)
        if self.monitor and x.shape[0] == 1:
            h, state, internals = self.cell.step(x[0], state)
            self._record(internals)
            out = h.unsqueeze(0)
        else:
            out, state = self.cell.run_time_major(x, state)
        return out, state.to_flat(config)

    def _record(self, internals: StepInternals) -> None:
        means = torch.stack([value.detach().mean() for value in internals])  # (3,)
        self._internals_sum = means if self._internals_sum is None else self._internals_sum + means
        self._internals_count += 1

    def pop_internals(self) -> dict[str, float]:
        if self._internals_sum is None:
            return {}
        means = (self._internals_sum / self._internals_count).tolist()
        self._internals_sum, self._internals_count = None, 0
        return dict(zip(StepInternals._fields, means))


class DreamTorso(StackedTorso):
    """``num_layers`` DREAM cells of ``hidden_size`` units, each feeding the next (:class:`DreamLayer` s
    stacked by :class:`~dream_rl.torsos.base.StackedTorso`).

    The flat state concatenates the layers' :meth:`DREAMState.to_flat` vectors.

    Args:
        input_size: feature width ``I`` of the first layer.
        hidden_size: hidden units per layer.
        num_layers: number of stacked cells.
        dropout: dropout between layers (like ``nn.LSTM``'s).
        **dream_kwargs: any :class:`DREAMConfig` field except ``input_dim`` and ``hidden_dim``.
            ``rank`` defaults to ``min(16, hidden_size)``.
    """

    # The time constants and the plasticity: ltc_tau_spread = 8 lifted DREAM from 10th to 3rd on the full
    # board (README); tau_sys sets how much of a new input a step writes (RL default 2 steps); base_plasticity
    # is the initial Hebbian rate eta (learned afterwards), which the fast-adaptation preset doubles.
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "ltc_tau_spread": {"type": "float", "low": 1.0, "high": 16.0, "log": True},
        "ltc_tau_sys": {"type": "float", "low": 0.25, "high": 8.0, "log": True},
        "base_plasticity": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
    }

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0, **dream_kwargs: Any
    ) -> None:
        _check_dream_kwargs(dream_kwargs)
        dream_kwargs.setdefault("rank", min(16, int(hidden_size)))
        super().__init__(
            input_size, hidden_size, num_layers, dropout,
            lambda width: DreamLayer(DREAMConfig(input_dim=width, hidden_dim=int(hidden_size), **dream_kwargs)),
        )
        # checkpoints of release 0.1 name the cells "cells.<i>.<param>": read them as "layers.<i>.cell.<param>"
        self._register_load_state_dict_pre_hook(_rename_0_1_keys)

    @property
    def cells(self) -> list[DREAMCell]:
        """The layers' cells, first to last."""
        return [layer.cell for layer in self.layers]

    @property
    def config(self) -> DREAMConfig:
        """The first layer's configuration (all layers share it but for ``input_dim``)."""
        return self.layers[0].cell.config

    @property
    def monitor(self) -> bool:
        """Whether single-step calls record the first layer's internals (see :meth:`pop_internals`)."""
        return self.layers[0].monitor

    @monitor.setter
    def monitor(self, value: bool) -> None:
        self.layers[0].monitor = bool(value)

    def pop_internals(self) -> dict[str, float]:
        """Means of the first layer's internals recorded since the last call (empty if none), then forget them."""
        return self.layers[0].pop_internals()


def _rename_0_1_keys(state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    for key in [key for key in state_dict if key.startswith(prefix + "cells.")]:
        index, rest = key[len(prefix) + len("cells."):].split(".", 1)
        state_dict[f"{prefix}layers.{index}.cell.{rest}"] = state_dict.pop(key)


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
