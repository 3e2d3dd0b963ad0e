"""The Legendre Memory Unit (Voelker, Kajić & Eliasmith, NeurIPS 2019, "Legendre Memory Units:
Continuous-Time Representation in Recurrent Neural Networks"), as a torso.

Model (per layer; ``d`` = memory size, ``θ`` = window in steps)::

    u_t = e_x·x_t + e_h·h_{t-1} + e_m·m_{t-1}           a scalar: what enters the memory
    m_t = Ā m_{t-1} + B̄ u_t                              the memory, a fixed linear system
    h_t = tanh(W_x x_t + W_h h_{t-1} + W_m m_t)           the hidden state and output

The memory is the Legendre delay system ``ṁ(t) = A m(t) + B u(t)``::

    A_ij = (2i + 1)/θ · (−1 if i < j, else (−1)^(i−j+1)),    B_i = (2i + 1)(−1)^i / θ

whose state holds the coefficients of the input's last ``θ`` time units in shifted Legendre
polynomials: ``u(t − θ') ≈ Σ_i P̃_i(θ'/θ) m_i(t)`` for ``0 <= θ' <= θ``, with
``P̃_i(r) = (−1)^i Σ_j C(i, j) C(i+j, j) (−r)^j``. It is discretised for a step of 1 by zero-order
hold: ``Ā = exp(A)``, ``B̄ = A⁻¹ (exp(A) − I) B``, both computed as one matrix exponential of the
augmented matrix ``[[A, B], [0, 0]]``, whose exponential is ``[[Ā, B̄], [0, 1]]`` (no inverse of ``A``
needed).

Source: the paper's equations, with POPGym's LMU baseline (Morad et al., ICLR 2023, from
pytorch-lmu) for the initialisation and defaults: ``e_x``, ``e_h`` LeCun uniform, ``e_m = 0``,
``W_x, W_h, W_m`` Xavier normal, no biases (the paper's equations have none); ``Ā`` and ``B̄`` fixed
(``learn_a`` / ``learn_b`` make them parameters, starting from the same values). Nothing is changed
from the paper's model.

Sequential over time (``h_{t-1}`` feeds the memory's input, so the memory is not a scan of the
input); the input terms of all steps are one matmul, the loop does the recurrence.

Defaults: ``memory_size = hidden_size`` and ``theta = 64`` (POPGym's), ``learn_a = learn_b = False``.
State size: ``L·(H + d)`` (h, then m, of every layer); 128 at width 64.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dream_rl.errors import TorsoError
from dream_rl.torsos.base import StackedTorso

__all__ = ["LmuLayer", "LmuTorso", "legendre_delay", "zero_order_hold"]


def legendre_delay(memory_size: int, theta: float) -> tuple[Tensor, Tensor]:
    """The continuous Legendre delay system ``ṁ = A m + B u``: A (d, d), B (d, 1), float64."""
    index = torch.arange(memory_size, dtype=torch.float64)
    i, j = index.reshape(-1, 1), index.reshape(1, -1)
    scale = (2 * index + 1).reshape(-1, 1) / theta
    a = scale * torch.where(i < j, -1.0, (-1.0) ** (i - j + 1))
    b = scale * (-1.0) ** index.reshape(-1, 1)
    return a, b


def zero_order_hold(a: Tensor, b: Tensor, dt: float = 1.0) -> tuple[Tensor, Tensor]:
    """``Ā = exp(A dt)`` and ``B̄ = ∫_0^dt exp(A s) ds · B`` (the input held constant over a step), from the
    exponential of ``[[A, B], [0, 0]]·dt`` = ``[[Ā, B̄], [0, I]]``."""
    n, m = a.shape[0], b.shape[1]
    augmented = torch.zeros(n + m, n + m, dtype=a.dtype)
    augmented[:n, :n], augmented[:n, n:] = a, b
    exponential = torch.linalg.matrix_exp(augmented * dt)
    return exponential[:n, :n], exponential[:n, n:]


def lecun_uniform_(tensor: Tensor) -> Tensor:
    """U(±sqrt(3 / fan_in)), the initialisation of the LMU's encoders."""
    limit = math.sqrt(3.0 / tensor.shape[1])
    return nn.init.uniform_(tensor, -limit, limit)


class LmuLayer(nn.Module):
    """One LMU layer: ``forward(x (T, B, I), state (B, H + d))`` → ``(h (T, B, H), state)``; state ``[h, m]``."""

    def __init__(
        self, input_size: int, hidden_size: int, memory_size: int | None = None, theta: float = 64.0,
        learn_a: bool = False, learn_b: bool = False,
    ) -> None:
        super().__init__()
        d = int(hidden_size if memory_size is None else memory_size)
        if d < 1 or not float(theta) > 0:
            raise TorsoError(
                f"lmu needs memory_size >= 1 and theta > 0 (the window in steps), got memory_size={memory_size}, "
                f"theta={theta}"
            )
        self.hidden_size, self.memory_size, self.theta = hidden_size, d, float(theta)
        a, b = zero_order_hold(*legendre_delay(d, self.theta))
        a, b = a.float(), b.float()
        if learn_a:
            self.A = nn.Parameter(a)
        else:
            self.register_buffer("A", a)
        if learn_b:
            self.B = nn.Parameter(b)
        else:
            self.register_buffer("B", b)
        self.e_x = nn.Parameter(lecun_uniform_(torch.empty(1, input_size)))
        self.e_h = nn.Parameter(lecun_uniform_(torch.empty(1, hidden_size)))
        self.e_m = nn.Parameter(torch.zeros(1, d))
        self.W_x = nn.Parameter(nn.init.xavier_normal_(torch.empty(hidden_size, input_size)))
        self.W_h = nn.Parameter(nn.init.xavier_normal_(torch.empty(hidden_size, hidden_size)))
        self.W_m = nn.Parameter(nn.init.xavier_normal_(torch.empty(hidden_size, d)))
        self.state_size = hidden_size + d

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        h, m = state.split([self.hidden_size, self.memory_size], dim=1)
        # every step's input terms in one matmul: [e_x·x_t | W_x x_t]
        from_input = x @ torch.cat([self.e_x, self.W_x]).T  # (T, B, 1 + H)
        from_h = torch.cat([self.e_h, self.W_h]).T  # (H, 1 + H): [e_h·h | W_h h]
        # m_t = Ā m + B̄ (e_x·x + e_h·h + e_m·m) = (Ā + B̄ e_m) m + B̄ (e_x·x + e_h·h): the memory's own
        # term in u folded into the transition, one product fewer per step
        transition = (self.A + self.B @ self.e_m).T
        b_t = self.B.T
        outputs = []
        # unbind: one backward node for all steps, where indexing [t] would fill a zero (T, B, ·) gradient per step
        for step_input in from_input.unbind(0):
            u_without_m, hidden_terms = torch.addmm(step_input, h, from_h).split([1, self.hidden_size], dim=1)
            m = torch.addmm(u_without_m @ b_t, m, transition)
            h = torch.tanh(torch.addmm(hidden_terms, m, self.W_m.T))
            outputs.append(h)
        return torch.stack(outputs), torch.cat([h, m], dim=1)


class LmuTorso(StackedTorso):
    """``num_layers`` LMU layers of width ``hidden_size``; flat state: ``[h, m]`` of every layer.

    Args:
        memory_size: ``d``, the number of Legendre coefficients (default ``hidden_size``).
        theta: the window the memory represents, in steps (default 64).
        learn_a, learn_b: make the discretised ``Ā`` / ``B̄`` parameters (default fixed).
        dropout: dropout between layers, like ``nn.LSTM``'s.
    """

    # The delay window theta (in steps) and the order of its Legendre memory.
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "theta": {"type": "float", "low": 4.0, "high": 256.0, "log": True},
        "memory_size": {"type": "categorical", "choices": [16, 32, 64]},
    }

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        memory_size: int | None = None,
        theta: float = 64.0,
        learn_a: bool = False,
        learn_b: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(
            input_size, hidden_size, num_layers, dropout,
            lambda width: LmuLayer(width, int(hidden_size), memory_size, theta, bool(learn_a), bool(learn_b)),
        )  # fmt: skip
