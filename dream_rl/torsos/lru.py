"""LRU, the Linear Recurrent Unit (Orvieto et al., ICML 2023, "Resurrecting Recurrent Neural
Networks for Long Sequences"), as a scan torso.

A complex diagonal linear recurrence with an exponential parameterisation and a normalised input::

    λ   = exp(-exp(ν) + i·exp(θ))             N complex eigenvalues, |λ| < 1 for any ν, θ
    γ   = sqrt(1 - |λ|²)                       input normalisation (stored as log γ, learned)
    h_t = λ ⊙ h_{t-1} + γ ⊙ (B x_t)            h ∈ C^N,  B ∈ C^{N×I}
    y_t = Re(C h_t) + D x_t                    C ∈ C^{H×N}, D ∈ R^{H×I}
    out = GELU(y_t)

Initialisation (the paper's Section 3 and appendix): ``|λ|`` uniform on the ring
``[r_min, r_max]`` of the complex plane (``ν = log(-½ log U(r_min², r_max²))``), phase
``θ = log(U(0, max_phase))``, ``γ = sqrt(1 - |λ|²)`` at init; ``B`` complex Gaussian with variance
``1/(2·I)`` per part (Glorot-style, the paper's ``1/sqrt(2·I)`` scaling), ``C`` complex Gaussian with
variance ``1/N`` per part. ``D`` is a matrix rather than the paper's diagonal because the first
layer's input width differs from its output width; it gets ``nn.Linear``'s default init. Of the
paper's block (norm, LRU, GELU, GLU/MLP, residual) the GELU is kept; the channel-mixing GLU is left
to the policy's MLP, which follows the torso (it would cost as many multiply-adds as the LRU's own
read-out), and the pre-norm and residual need equal input and output widths.

Defaults: ``state_dim = hidden_size`` (N), ``r_min = 0``, ``r_max = 0.999``, ``max_phase = π/10``.
``r_max`` and ``max_phase`` are the paper's setting for long-range memory (its Table of
hyperparameters for the long-range tasks): RL memories must hold a cue for tens to hundreds of
steps. ``r_min`` was the same table's 0.9 at first; with no eigenvalue below 0.9 every mode is a slow
average, and the torso reached a return of 121-373 on CartPoleNoVel (sb3-contrib's LSTM setting, 50k
steps, seeds 1-4; the task needs the difference of two consecutive positions). The full disc
``r_min = 0`` (the ring of the paper's other tasks and of the RTU) keeps about a fifth of the modes
above 0.9 and reached 453-496 (seeds 1-4).

State size: ``2·L·N`` reals (the real and imaginary parts of h, interleaved); 128 at width 64.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dream_rl.errors import TorsoError
from dream_rl.torsos.scan import ScanLayer, ScanTorso, complex_from_flat, flat_from_complex, linear_scan

__all__ = ["LruTorso", "LruLayer"]


class LruLayer(ScanLayer):
    """One LRU block: (T, B, input_size) → (T, B, hidden_size); state h (B, N) complex, stored flat (B, 2N)."""

    def __init__(
        self, input_size: int, hidden_size: int, state_dim: int | None = None,
        r_min: float = 0.0, r_max: float = 0.999, max_phase: float = math.pi / 10,
    ) -> None:
        super().__init__()
        n = int(state_dim or hidden_size)
        if n < 1 or not 0.0 <= r_min < r_max <= 1.0 or max_phase <= 0:
            raise TorsoError(
                f"lru needs state_dim >= 1, 0 <= r_min < r_max <= 1 and max_phase > 0; got state_dim={state_dim}, "
                f"r_min={r_min}, r_max={r_max}, max_phase={max_phase}"
            )
        self.state_dim, self.state_size = n, 2 * n
        u1, u2 = torch.rand(n, dtype=torch.float64), torch.rand(n, dtype=torch.float64)
        nu_log = torch.log(-0.5 * torch.log(u1 * (r_max**2 - r_min**2) + r_min**2))
        theta_log = torch.log(max_phase * u2.clamp_min(1e-12))
        modulus = torch.exp(-torch.exp(nu_log))
        self.nu_log = nn.Parameter(nu_log.float())
        self.theta_log = nn.Parameter(theta_log.float())
        self.gamma_log = nn.Parameter(torch.log(torch.sqrt(1 - modulus**2)).float())
        # B and C as real tensors with a trailing (real, imaginary) axis: the module stays real-valued,
        # so .double() / .to() convert it like any other.
        self.B = nn.Parameter(torch.randn(n, 2, input_size) / math.sqrt(2 * input_size))
        self.C = nn.Parameter(torch.randn(hidden_size, n, 2) / math.sqrt(n))
        self.D = nn.Linear(input_size, hidden_size, bias=False)

    def eigenvalues(self) -> Tensor:
        """λ (N,) complex."""
        return torch.exp(torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log)))

    def forward(self, x: Tensor, h0: Tensor, starts: Tensor | None) -> tuple[Tensor, Tensor]:
        steps, batch, _ = x.shape
        n = self.state_dim
        # γ ⊙ (B x) as one real matmul producing interleaved (real, imaginary) parts
        weight = (self.B * torch.exp(self.gamma_log).reshape(n, 1, 1)).reshape(2 * n, -1)
        b = torch.view_as_complex(F.linear(x, weight).reshape(steps, batch, n, 2))
        a = self.eigenvalues().reshape(1, 1, n)
        h = linear_scan(a, b, complex_from_flat(h0, n), starts)  # (T, B, N) complex
        # Re(C h) = C_re h_re - C_im h_im: one real matmul over the interleaved parts
        read = torch.stack([self.C[..., 0], -self.C[..., 1]], dim=-1).reshape(self.C.shape[0], 2 * n)
        y = F.linear(torch.view_as_real(h).reshape(steps, batch, 2 * n), read) + self.D(x)
        return F.gelu(y), flat_from_complex(h[-1])


class LruTorso(ScanTorso):
    """``num_layers`` LRU blocks of width ``hidden_size``; options: ``state_dim``, ``r_min``, ``r_max``,
    ``max_phase`` (see the module docstring). Flat state: h of every layer, real/imaginary interleaved."""

    # The eigenvalue ring and phases set the memory's time scales (the paper's own tuned settings; r_min was
    # measured to matter on CartPoleNoVel, see the module docstring).
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "r_min": {"type": "float", "low": 0.0, "high": 0.9},
        "r_max": {"type": "categorical", "choices": [0.99, 0.999, 0.9999]},
        "max_phase": {"type": "float", "low": 0.03, "high": 3.14, "log": True},
    }

    layer_options = ("state_dim", "r_min", "r_max", "max_phase")

    def make_layer(self, input_size: int, hidden_size: int, **layer_kwargs: object) -> ScanLayer:
        return LruLayer(input_size, hidden_size, **layer_kwargs)  # type: ignore[arg-type]
