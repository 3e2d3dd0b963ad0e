"""FFM, Fast and Forgetful Memory (Morad, Kortvelesy, Liwicki & Prorok, NeurIPS 2023), as a scan torso.

A bank of complex decaying traces: ``m`` decay rates times ``c`` oscillation frequencies, written by
a gated input and read through a gated, normalised mix::

    x̃_t = W_in x_t ⊙ σ(W_gi x_t)                       x̃ ∈ R^m, the gated input
    S_t = γ ⊙ S_{t-1} + x̃_t 1_cᵀ                       S ∈ C^{m×c}, γ_jk = exp(-|α_j| + i ω_k)
    z_t = W_mix [Re S_t, Im S_t]                       back to width H
    g_t = σ(W_go x_t)
    y_t = LayerNorm(z_t) ⊙ g_t + W_skip x_t ⊙ (1 - g_t)

Initialisation (FFM's deterministic init): ``α = linspace(1e-6, 0.5, m)`` (memory horizons from
about 2 steps to a million), ``ω = 2π / linspace(min_period, max_period, c)`` with periods 1 to
1024; linear layers with ``nn.Linear``'s default init. FFM's closed form with running powers
``γ^t`` is replaced by the shared scan, which never divides by a running product.

Defaults: ``memory_size = 16`` (m), ``context_size = 4`` (c), ``min_period = 1``,
``max_period = 1024``: 128 reals of state, the LSTM's at width 64 (the mix from the flattened trace
costs ``2mc·H`` multiply-adds a step, so the trace is kept at that size).

State size: ``2·L·m·c`` reals (real and imaginary parts of S, interleaved); 128 at any width.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dream_rl.errors import TorsoError
from dream_rl.torsos.scan import ScanLayer, ScanTorso, complex_from_flat, flat_from_complex, linear_scan

__all__ = ["FfmTorso", "FfmLayer"]


class FfmLayer(ScanLayer):
    """One FFM layer: (T, B, input_size) → (T, B, hidden_size); state S (B, m, c) complex, stored flat (B, 2mc)."""

    def __init__(
        self, input_size: int, hidden_size: int, memory_size: int = 16, context_size: int = 4,
        min_period: float = 1.0, max_period: float = 1024.0,
    ) -> None:
        super().__init__()
        if memory_size < 1 or context_size < 1 or not 0 < min_period <= max_period:
            raise TorsoError(
                f"ffm needs memory_size, context_size >= 1 and 0 < min_period <= max_period; got memory_size="
                f"{memory_size}, context_size={context_size}, min_period={min_period}, max_period={max_period}"
            )
        self.memory_size, self.context_size, self.hidden_size = int(memory_size), int(context_size), hidden_size
        self.state_size = 2 * self.memory_size * self.context_size
        # [input | input gate | output gate | skip] from x in one matmul
        self.proj = nn.Linear(input_size, 2 * self.memory_size + 2 * hidden_size)
        self.alpha = nn.Parameter(torch.linspace(1e-6, 0.5, self.memory_size))
        self.omega = nn.Parameter(2 * math.pi / torch.linspace(min_period, max_period, self.context_size))
        self.mix = nn.Linear(self.state_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size)

    def decay(self) -> Tensor:
        """γ (m, c) complex, |γ| <= 1."""
        return torch.exp(torch.complex(-self.alpha.abs().unsqueeze(1).expand(-1, self.context_size),
                                       self.omega.unsqueeze(0).expand(self.memory_size, -1)))

    def forward(self, x: Tensor, h0: Tensor, starts: Tensor | None) -> tuple[Tensor, Tensor]:
        steps, batch, _ = x.shape
        m, c = self.memory_size, self.context_size
        pre, gate_in, gate_out, skip = self.proj(x).split([m, m, self.hidden_size, self.hidden_size], dim=-1)
        written = pre * torch.sigmoid(gate_in)  # (T, B, m)
        b = torch.complex(written, torch.zeros_like(written)).unsqueeze(-1).expand(steps, batch, m, c)
        s = linear_scan(self.decay().reshape(1, 1, m, c), b, complex_from_flat(h0, m, c), starts)
        z = self.norm(self.mix(torch.view_as_real(s).reshape(steps, batch, self.state_size)))
        g = torch.sigmoid(gate_out)
        return z * g + skip * (1 - g), flat_from_complex(s[-1])


class FfmTorso(ScanTorso):
    """``num_layers`` FFM layers of width ``hidden_size``; options ``memory_size``, ``context_size``,
    ``min_period``, ``max_period`` (see the module docstring). Flat state: S of every layer."""

    # The trace's size (m horizons by c frequencies) and its longest period.
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "memory_size": {"type": "categorical", "choices": [8, 16, 32]},
        "context_size": {"type": "categorical", "choices": [2, 4, 8]},
        "max_period": {"type": "float", "low": 16.0, "high": 4096.0, "log": True},
    }

    layer_options = ("memory_size", "context_size", "min_period", "max_period")

    def make_layer(self, input_size: int, hidden_size: int, **layer_kwargs: object) -> ScanLayer:
        return FfmLayer(input_size, hidden_size, **layer_kwargs)  # type: ignore[arg-type]
