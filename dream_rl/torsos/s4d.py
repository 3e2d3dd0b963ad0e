"""S4D, the diagonal structured state space model (Gu, Gupta, Goel & Ré, NeurIPS 2022, "On the
Parameterization and Initialization of Diagonal State Space Models"), in the setup of POPGym's S4D
baseline (Morad et al., ICLR 2023), as a scan torso.

Model (per layer): ``H`` independent single-input single-output state space models, one per channel,
each with ``N/2`` complex modes (conjugate-symmetric: ``N`` real states), discretised by zero-order hold
with a learned timescale ``Δ_h`` per channel::

    u_t = W_u x_t + b_u                                  the input mapped to H channels
    Ā_hn = exp(Δ_h A_hn),  B̄_hn = B_hn (Ā_hn − 1) / A_hn    ZOH; A_hn = −exp(a_hn) + i·ω_hn (Re A < 0)
    s_{t,hn} = Ā_hn s_{t-1,hn} + B̄_hn u_{t,h}            channel h's own modes see only channel h
    y_{t,h} = 2·Re(Σ_n C_hn s_{t,hn}) + D_h u_{t,h}
    out_t = GLU(W_o GELU(y_t) + b_o)                      S4's block: GELU, then a linear map with a GLU

This is what separates S4D from the zoo's other diagonal SSMs (see ``tests/torsos/test_s4d.py``): in
``s5`` one state of ``P`` modes is shared by all channels (``B̃ ∈ C^{P×I}`` mixes every input channel into
every mode, ``C̃ ∈ C^{H×P}`` reads every mode into every output; ``Δ`` is per mode) and its modes start
at HiPPO-N's eigenvalues; ``lru`` has no continuous-time system, no ``Δ`` and no discretisation (it
parameterises the discrete eigenvalues directly) and is multi-input multi-output as well. S4D with
``H`` channels of ``N/2`` modes is the special case of S5 with ``P = H·N/2`` and block-diagonal ``B̃``,
``C̃`` and a ``Δ`` shared inside each block, which neither ``s5`` nor ``lru`` is, at any setting.

Initialisation (S4D-Lin, POPGym's ``measure="diag-lin"``, ``real_type="exp"``, ``disc="zoh"``):
``A_hn = −½ + iπn`` (n = 0 .. N/2 − 1), ``B = 1``, ``C`` complex standard normal, ``D`` standard
normal, ``log Δ ~ U(log dt_min, log dt_max)``; ``W_u``, ``W_o`` by ``nn.Linear``'s default.

Changes from POPGym's S4D, and why: the recurrence is run as a resettable scan
(:func:`~dream_rl.torsos.scan.linear_scan`) instead of S4's convolution kernel, so a training sequence
starts from the carried state (POPGym's training pass computes its kernel from a zero state and
carries no state across sequences) and episode starts inside a sequence reset it exactly; the scan
computes the same outputs as the convolution. POPGym's linear maps before and after the S4 block are
replaced by the one input map ``W_u`` to the ``H`` channels (SB3's policy MLP follows the torso). No
dropout inside the block.

Defaults: ``state_dim`` ``N = 2·round(√H / 2)`` (POPGym's rule: 8 at width 64, i.e. 4 complex modes per
channel; at least 2), ``dt_min = 0.001``, ``dt_max = 0.1`` (S4's).

State size: ``L·H·N`` reals (the real and imaginary parts of the ``N/2`` modes of every channel,
interleaved); 512 at width 64.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dream_rl.errors import TorsoError
from dream_rl.torsos.scan import ScanLayer, ScanTorso, complex_from_flat, flat_from_complex, linear_scan

__all__ = ["S4dLayer", "S4dTorso", "default_state_dim"]


def default_state_dim(hidden_size: int) -> int:
    """POPGym's S4D state size for a width: ``2·round(√H / 2)``, at least 2."""
    return max(2, 2 * round(math.sqrt(hidden_size) / 2))


class S4dLayer(ScanLayer):
    """One S4D block: (T, B, input_size) → (T, B, hidden_size); state s (B, H, N/2) complex, stored flat (B, H·N)."""

    def __init__(
        self, input_size: int, hidden_size: int, state_dim: int | None = None, dt_min: float = 0.001,
        dt_max: float = 0.1,
    ) -> None:
        super().__init__()
        n = int(default_state_dim(hidden_size) if state_dim is None else state_dim)
        if n < 2 or n % 2 or not 0 < dt_min <= dt_max:
            raise TorsoError(
                f"s4d needs an even state_dim >= 2 (N real states, N/2 complex modes) and 0 < dt_min <= dt_max; got "
                f"state_dim={state_dim}, dt_min={dt_min}, dt_max={dt_max}"
            )
        h, modes = hidden_size, n // 2
        self.hidden_size, self.modes, self.state_size = h, modes, h * n
        self.encoder = nn.Linear(input_size, h)
        self.log_dt = nn.Parameter(torch.empty(h).uniform_(math.log(dt_min), math.log(dt_max)))
        self.a_real_log = nn.Parameter(torch.full((h, modes), math.log(0.5)))  # Re A = −exp(a) = −½
        self.a_imag = nn.Parameter(math.pi * torch.arange(modes, dtype=torch.float32).repeat(h, 1))  # Im A = πn
        # B and C as real tensors with a trailing (real, imaginary) axis, so .double() / .to() convert them
        self.B = nn.Parameter(torch.stack([torch.ones(h, modes), torch.zeros(h, modes)], dim=-1))
        self.C = nn.Parameter(torch.view_as_real(torch.randn(h, modes, dtype=torch.complex64)).clone())
        self.D = nn.Parameter(torch.randn(h))
        self.output = nn.Linear(h, 2 * h)  # GLU halves it back to H

    def discretised(self) -> tuple[Tensor, Tensor]:
        """Ā and B̄, (H, N/2) complex each, by zero-order hold."""
        a = torch.complex(-torch.exp(self.a_real_log), self.a_imag)
        a_bar = torch.exp(a * torch.exp(self.log_dt).unsqueeze(-1))
        return a_bar, torch.view_as_complex(self.B) * (a_bar - 1) / a

    def ssm(self, u: Tensor, s0: Tensor, starts: Tensor | None) -> tuple[Tensor, Tensor]:
        """The H SISO systems: ``u`` (T, B, H), ``s0`` (B, H, N/2) complex → ``y`` (T, B, H) and every
        step's state (T, B, H, N/2) complex."""
        h, modes = self.hidden_size, self.modes
        a_bar, b_bar = self.discretised()
        s = linear_scan(a_bar.reshape(1, 1, h, modes), b_bar * u.unsqueeze(-1), s0, starts)
        # 2·Re(Σ_n C s) = 2 Σ_n (C_re s_re − C_im s_im), per channel
        s_parts = torch.view_as_real(s)  # (T, B, H, N/2, 2)
        y = 2 * (s_parts[..., 0] * self.C[..., 0] - s_parts[..., 1] * self.C[..., 1]).sum(-1) + self.D * u
        return y, s

    def forward(self, x: Tensor, h0: Tensor, starts: Tensor | None) -> tuple[Tensor, Tensor]:
        y, s = self.ssm(self.encoder(x), complex_from_flat(h0, self.hidden_size, self.modes), starts)
        return F.glu(self.output(F.gelu(y)), dim=-1), flat_from_complex(s[-1])


class S4dTorso(ScanTorso):
    """``num_layers`` S4D blocks of width ``hidden_size``; options ``state_dim``, ``dt_min``, ``dt_max`` (see the
    module docstring). Flat state: the modes of every channel and layer, real/imaginary interleaved."""

    # Modes per channel (state_dim even) and the step size range (S4's 0.001-0.1, up to one unit a step).
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "state_dim": {"type": "categorical", "choices": [4, 8, 16]},
        "dt_min": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
        "dt_max": {"type": "float", "low": 0.1, "high": 1.0, "log": True},
    }

    layer_options = ("state_dim", "dt_min", "dt_max")

    def make_layer(self, input_size: int, hidden_size: int, **layer_kwargs: object) -> ScanLayer:
        return S4dLayer(input_size, hidden_size, **layer_kwargs)  # type: ignore[arg-type]
