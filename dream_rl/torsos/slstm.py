"""sLSTM, xLSTM's scalar LSTM (Beck et al., "xLSTM: Extended Long Short-Term Memory", NeurIPS 2024), as a torso.

Model (per layer, per unit; heads of ``d = H / num_heads`` units have their own recurrent weights)::

    z, ĩ, f̃, o = W x_t + b + R h_{t-1}        R block-diagonal: one (d, 4d) block per head
    log f = logsigmoid(f̃)                      (forget_gate="exp": log f = f̃)
    m_t = max(log f + m_{t-1}, ĩ)               stabiliser (m_t = ĩ at the first step: n_{t-1} = 0)
    i' = exp(ĩ - m_t),  f' = exp(log f + m_{t-1} - m_t)
    c_t = f' c_{t-1} + i' tanh(z)               cell
    n_t = f' n_{t-1} + i'                       normaliser
    h_t = σ(o) · c_t / n_t

The exponential input gate can grow without bound; dividing ``c`` and ``n`` by ``exp(m)`` keeps them
finite without changing ``h`` (``c/n`` is invariant to the stabiliser), and because ``m`` is part of the
flat state a rollout step and a sequence agree exactly.

Zeros are the initial state: ``n = 0`` only before the first step (after any step one of ``f'``, ``i'``
is 1, so ``n >= 1``), and where ``n = 0`` the stabiliser starts from ``ĩ`` (``m_{-1} = -inf``), the value
xLSTM's reference implementation uses for a fresh state. The stored ``m`` of a zero state is never read.

Source: the equations of Beck et al. 2024 (sec. 2.2, appendix "sLSTM"); this is the cell only: the xLSTM
block's causal convolution, group norm and gated MLP are left out (PPO's own MLP heads follow the torso).
Sequential over time: the input projections of all steps are one matmul, the loop does the recurrence.

Defaults: ``num_heads=4``, sigmoid forget gate with biases spread over [1, 4] (memory timescales of about
3 to 50 steps), input-gate bias 0, ``dropout=0`` between layers.
State size: ``4·L·H`` (h, c, n, m of every layer); 256 at width 64.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dream_rl.errors import TorsoError
from dream_rl.torsos.base import StackedTorso

__all__ = ["SlstmLayer", "SlstmTorso"]

GATES = 4  # z, input, forget, output, in this order inside each head


class SlstmLayer(nn.Module):
    """One sLSTM layer of ``hidden_size`` units in ``num_heads`` heads.

    ``forward(x (T, B, I), state (B, 4H))`` → ``(h (T, B, H), state (B, 4H))``; state ``[h, c, n, m]``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_heads: int = 4, forget_gate: str = "sigmoid") -> None:
        super().__init__()
        if num_heads < 1 or hidden_size % num_heads:
            raise TorsoError(
                f"slstm: hidden_size ({hidden_size}) must be a multiple of num_heads ({num_heads}); "
                "pick num_heads among its divisors"
            )
        if forget_gate not in ("sigmoid", "exp"):
            raise TorsoError(f"slstm: forget_gate must be 'sigmoid' or 'exp', got {forget_gate!r}")
        self.hidden_size, self.num_heads, self.head_size = hidden_size, num_heads, hidden_size // num_heads
        self.exp_forget = forget_gate == "exp"
        # Input projection, output features ordered (head, gate, unit): a step's gates are then one view.
        self.input_proj = nn.Linear(input_size, GATES * hidden_size)
        self.recurrent = nn.Parameter(torch.empty(num_heads, self.head_size, GATES * self.head_size))
        bound = 1.0 / math.sqrt(self.head_size)
        nn.init.uniform_(self.recurrent, -bound, bound)
        with torch.no_grad():
            bias = self.input_proj.bias.view(num_heads, GATES, self.head_size)
            bias[:, 1] = 0.0  # input gate
            bias[:, 2] = torch.linspace(1.0, 4.0, self.head_size)  # forget gate: a spread of timescales
        self.state_size = 4 * hidden_size

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        steps, batch = x.shape[:2]
        heads, d = self.num_heads, self.head_size
        # All steps' input projections in one matmul, laid out head-major (T, heads, B, 4d) so that a
        # step's gates are one baddbmm with the block-diagonal recurrent weights.
        projected = self.input_proj(x).view(steps, batch, heads, GATES * d).transpose(1, 2).contiguous()
        h, c, n, m = (s.reshape(batch, heads, d).transpose(0, 1) for s in state.chunk(4, dim=1))  # (heads, B, d)
        outputs = []
        for t in range(steps):
            z, i_raw, f_raw, o = torch.baddbmm(projected[t], h, self.recurrent).view(heads, batch, GATES, d).unbind(2)
            log_f = f_raw if self.exp_forget else F.logsigmoid(f_raw)
            if t == 0:
                # Only the first step of a call can meet a fresh state (n = 0): resets cut sequences
                # there, and after any step n >= 1. The clamp is a no-op where n > 0; on a fresh
                # state (c = n = 0) it keeps exp finite so that 0 * f' stays 0, forward and backward.
                m_new = torch.where(n == 0, i_raw, torch.maximum(log_f + m, i_raw))
                f_gate = torch.exp(torch.clamp(log_f + m - m_new, max=0.0))
            else:
                m_new = torch.maximum(log_f + m, i_raw)
                f_gate = torch.exp(log_f + m - m_new)
            i_gate = torch.exp(i_raw - m_new)
            c = f_gate * c + i_gate * torch.tanh(z)
            n = f_gate * n + i_gate
            m = m_new
            h = torch.sigmoid(o) * (c / n)
            outputs.append(h)
        out = torch.stack(outputs).permute(0, 2, 1, 3).reshape(steps, batch, self.hidden_size)
        return out, torch.cat([s.transpose(0, 1).reshape(batch, -1) for s in (h, c, n, m)], dim=1)


class SlstmTorso(StackedTorso):
    """``num_layers`` sLSTM layers of width ``hidden_size``; flat state concatenates the layers' ``[h, c, n, m]``.

    Args:
        num_heads: heads per layer (block-diagonal recurrence); must divide ``hidden_size``.
        forget_gate: ``"sigmoid"`` (default) or ``"exp"``.
        dropout: dropout between layers, like ``nn.LSTM``'s.
    """

    # Heads of the block-diagonal recurrence and the forget gate (xLSTM's exponential gate or a sigmoid).
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "num_heads": {"type": "categorical", "choices": [1, 2, 4, 8]},
        "forget_gate": {"type": "categorical", "choices": ["sigmoid", "exp"]},
    }

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        num_heads: int = 4,
        forget_gate: str = "sigmoid",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(
            input_size, hidden_size, num_layers, dropout,
            lambda width: SlstmLayer(width, int(hidden_size), int(num_heads), forget_gate),
        )  # fmt: skip
