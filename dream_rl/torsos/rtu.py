"""RTU, Recurrent Trace Units (Elelimy, White, Bowling & White, NeurIPS 2024, "Real-Time Recurrent
Learning using Trace Units in Reinforcement Learning"), the linear variant, as a scan torso.

A complex diagonal linear recurrence written in its real "rotation" form: each unit ``j`` keeps two
real traces ``c¹, c²`` (the real and imaginary parts of one complex number) rotated and decayed by
``λ_j = r_j e^{iθ_j}``, and the nonlinearity acts on the output only (a *linear* RTU; the nonlinear
RTU applies it inside the recurrence, which no scan can train)::

    r = exp(-exp(ν)),  θ = exp(θ_log),  g = r cos θ,  φ = r sin θ,  γ = sqrt(1 - r²)
    c¹_t = g ⊙ c¹_{t-1} - φ ⊙ c²_{t-1} + γ ⊙ (W¹ x_t)
    c²_t = g ⊙ c²_{t-1} + φ ⊙ c¹_{t-1} + γ ⊙ (W² x_t)
    y_t  = (f(c¹_t), f(c²_t))                      f = ReLU by default; width 2·units = H, the two interleaved

The pair ``(c¹, c²)`` is the complex number ``c = c¹ + i c²`` with ``c_t = λ ⊙ c_{t-1} + γ ⊙ (W x_t)``,
so training runs :func:`~dream_rl.torsos.scan.linear_scan` over complex states; a rollout step
applies the recurrence once. The input normalisation ``γ`` is the LRU's (Orvieto et al. 2023),
which the RTU builds on. ``|λ| = r < 1`` for every ``ν``, so the recurrence is stable whatever the
parameters.

Initialisation: ``r`` uniform on the ring ``[r_min, r_max]`` of the complex plane
(``ν = log(-½ log U(r_min², r_max²))``), ``θ = U(0, max_phase)`` (stored as ``log θ``), ``W¹, W²``
Gaussian with standard deviation ``1/sqrt(2·I)``; defaults ``r_min = 0``, ``r_max = 1``,
``max_phase = 2π`` (Memorax's RTU, the implementation the design note's seed lists). No bias (the
paper's traces have none).

Defaults: ``units = hidden_size / 2`` complex units, so the output ``[f(c¹), f(c²)]`` has the torso's
width (``hidden_size`` must be even); ``activation = "relu"`` (or ``"tanh"``, ``"identity"``).

State size: ``L·2·units = L·H`` reals (``c¹_j, c²_j`` of each unit, interleaved); 64 at width 64.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dream_rl.errors import TorsoError
from dream_rl.torsos.scan import ScanLayer, ScanTorso, complex_from_flat, flat_from_complex, linear_scan

__all__ = ["RtuTorso", "RtuLayer"]

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "identity": lambda c: c}


class RtuLayer(ScanLayer):
    """One linear RTU layer: (T, B, input_size) → (T, B, hidden_size); state ``(c¹, c²)`` per unit (B, hidden_size)."""

    def __init__(
        self, input_size: int, hidden_size: int, r_min: float = 0.0, r_max: float = 1.0,
        max_phase: float = 2 * math.pi, activation: str = "relu",
    ) -> None:
        super().__init__()
        if hidden_size % 2 or hidden_size < 2:
            raise TorsoError(
                f"rtu needs an even hidden_size (each complex unit gives two outputs, c¹ and c²), got {hidden_size}"
            )
        if not 0.0 <= r_min < r_max <= 1.0 or max_phase <= 0:
            raise TorsoError(f"rtu needs 0 <= r_min < r_max <= 1 and max_phase > 0; got {r_min=}, {r_max=}, {max_phase=}")
        if activation not in ACTIVATIONS:
            raise TorsoError(f"rtu activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        units = hidden_size // 2
        self.units, self.state_size, self.activation = units, hidden_size, ACTIVATIONS[activation]
        radius_sq = torch.rand(units, dtype=torch.float64) * (r_max**2 - r_min**2) + r_min**2
        radius_sq = radius_sq.clamp(1e-12, 1.0 - 1e-7)  # keep ν finite and γ > 0
        self.nu_log = nn.Parameter(torch.log(-0.5 * torch.log(radius_sq)).float())
        phase = (torch.rand(units, dtype=torch.float64) * max_phase).clamp_min(1e-6)
        self.theta_log = nn.Parameter(torch.log(phase).float())
        std = 1.0 / math.sqrt(2 * input_size)
        self.w_real = nn.Parameter(torch.randn(units, input_size) * std)
        self.w_imag = nn.Parameter(torch.randn(units, input_size) * std)

    def forward(self, x: Tensor, h0: Tensor, starts: Tensor | None) -> tuple[Tensor, Tensor]:
        steps, n = x.shape[0], self.units
        radius = torch.exp(-torch.exp(self.nu_log))
        decay = torch.polar(radius, torch.exp(self.theta_log))  # λ (units,) complex
        gamma = torch.sqrt(1.0 - radius.square())
        # one matmul for both parts, rows interleaved (W¹_j, W²_j): the result views as complex, no copy
        weight = torch.stack([self.w_real, self.w_imag], dim=1).reshape(2 * n, -1)
        drive = complex_from_flat((x @ weight.T).reshape(-1, 2 * n), n).reshape(steps, -1, n) * gamma  # (T, B, units)
        c = linear_scan(decay.expand(steps, 1, n), drive, complex_from_flat(h0, n), starts)  # (T, B, units)
        out = self.activation(torch.view_as_real(c).reshape(steps, -1, 2 * n))
        return out, flat_from_complex(c[-1])


class RtuTorso(ScanTorso):
    """``num_layers`` linear RTU layers of width ``hidden_size`` (even); options ``r_min``, ``r_max``,
    ``max_phase``, ``activation`` (see the module docstring). Flat state: ``(c¹, c²)`` of every unit and layer."""

    # The eigenvalue ring's inner radius and the phases (time scales), and the trace's read-out activation.
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "r_min": {"type": "float", "low": 0.0, "high": 0.9},
        "max_phase": {"type": "float", "low": 0.1, "high": 6.28, "log": True},
        "activation": {"type": "categorical", "choices": ["relu", "tanh"]},
    }

    layer_options = ("r_min", "r_max", "max_phase", "activation")

    def make_layer(self, input_size: int, hidden_size: int, **layer_kwargs: Any) -> ScanLayer:
        return RtuLayer(input_size, hidden_size, **layer_kwargs)
