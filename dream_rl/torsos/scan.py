"""The shared machinery of the linear-recurrence torsos: a resettable prefix scan and a layer stack.

Every model of this family has a state that evolves as ``h_t = a_t * h_{t-1} + b_t``, with ``a_t``
and ``b_t`` computed from the input alone (real or complex; scalars, vectors or matrices per sample,
multiplied elementwise with broadcasting). Pairs compose associatively,
``(a1, b1) then (a2, b2) = (a1 * a2, a2 * b1 + b2)``, so a whole training sequence is a prefix scan
of depth ``ceil(log2 T)`` instead of ``T`` dependent steps. An episode start before step ``t`` sets
``a_t = 0``: with zeros as the initial state that is an exact reset, folded into the scan.

The scan multiplies decays but never divides by running products, so it neither overflows nor loses
precision over long sequences (every ``|a| <= 1`` keeps every product bounded).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
from torch import Tensor, nn

from dream_rl.torsos.base import RecurrentTorso

__all__ = ["linear_scan", "linear_scan_sequential", "ScanLayer", "ScanTorso"]


def _fold_resets(a: Tensor, b: Tensor, h0: Tensor, starts: Tensor | None) -> tuple[Tensor, Tensor]:
    """Zero the decays where an episode starts and fold ``h0`` into step 0: the scan then starts from zeros."""
    if starts is not None:
        mask = starts.reshape(*starts.shape, *([1] * (b.dim() - 2)))  # (T, B, 1, ...)
        a = torch.where(mask, torch.zeros((), dtype=a.dtype, device=a.device), a)
        h0 = torch.where(mask[0], torch.zeros((), dtype=h0.dtype, device=h0.device), h0)  # NaN-safe reset
    b = torch.cat([(a[:1] * h0.unsqueeze(0) + b[:1]), b[1:]])
    return a, b


def linear_scan(a: Tensor, b: Tensor, h0: Tensor, starts: Tensor | None = None) -> Tensor:
    """All states of ``h_t = a_t * h_{t-1} + b_t`` (``h_{-1} = h0``) by a log-depth prefix scan.

    Args:
        a: (T, B, ...) decays, broadcastable to ``b`` (e.g. (T, B, heads, 1, 1) against (T, B, heads, d, d)).
        b: (T, B, ...) inputs.
        h0: (B, ...) the state before step 0, shaped like ``b[0]``.
        starts: (T, B) bool, True where an episode starts before step t (the state is reset); None: no resets.
    Returns:
        h: (T, B, ...), the state after every step.
    """
    a, h = _fold_resets(a, b, h0, starts)
    steps = h.shape[0]
    span = 1
    # Hillis-Steele: after the pass with span s, h_t holds the recurrence over (t - 2s, t].
    while span < steps:
        h = torch.cat([h[:span], a[span:] * h[:-span] + h[span:]])
        if span * 2 < steps:  # the decays are not needed after the last pass
            a = torch.cat([a[:span], a[span:] * a[:-span]])
        span *= 2
    return h


def linear_scan_sequential(a: Tensor, b: Tensor, h0: Tensor, starts: Tensor | None = None) -> Tensor:
    """The same recurrence one step at a time: the reference the scan is tested against, and the
    cheaper choice for a single rollout step."""
    a, b = _fold_resets(a, b, h0, starts)
    h = torch.zeros_like(b[0])
    states = []
    for t in range(b.shape[0]):
        h = a[t] * h + b[t]
        states.append(h)
    return torch.stack(states)


class ScanLayer(nn.Module):
    """One layer of a scan torso: ``(x (T, B, in), h0 (B, state_size), starts (T, B) bool | None)``
    → ``(y (T, B, out), h_last (B, state_size))``, with the flat state all zeros at the initial state."""

    state_size: int

    @abstractmethod
    def forward(self, x: Tensor, h0: Tensor, starts: Tensor | None) -> tuple[Tensor, Tensor]: ...


class ScanTorso(RecurrentTorso):
    """``num_layers`` :class:`ScanLayer` s of width ``hidden_size``, each feeding the next.

    Resets are folded into every layer's scan, so a training sequence is one call per layer even
    when episodes start inside it. The flat state concatenates the layers' states.
    Subclasses implement :meth:`make_layer`.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, **layer_kwargs: Any) -> None:
        super().__init__()
        self.input_size, self.output_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        widths = [self.input_size] + [self.output_size] * (self.num_layers - 1)
        self.layers = nn.ModuleList(self.make_layer(width, self.output_size, **layer_kwargs) for width in widths)
        self.layer_sizes = [layer.state_size for layer in self.layers]
        self.state_size = sum(self.layer_sizes)

    @abstractmethod
    def make_layer(self, input_size: int, hidden_size: int, **layer_kwargs: Any) -> ScanLayer:
        """One layer mapping ``input_size`` features to ``hidden_size`` outputs."""

    def run(self, features: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        return self._run_layers(features, state, None)

    def run_with_resets(self, features: Tensor, state: Tensor, starts: Tensor) -> tuple[Tensor, Tensor]:
        return self._run_layers(features, state, starts)

    def _run_layers(self, x: Tensor, state: Tensor, starts: Tensor | None) -> tuple[Tensor, Tensor]:
        last_states = []
        for layer, h0 in zip(self.layers, torch.split(state, self.layer_sizes, dim=1)):
            x, h_last = layer(x, h0, starts)
            last_states.append(h_last)
        return x, torch.cat(last_states, dim=1)
