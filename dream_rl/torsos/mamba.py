"""Mamba-2-style selective state space model (Dao & Gu, ICML 2024, "Transformers are SSMs"), as a
scan torso.

Per head ``k`` (``heads = expand·H / head_dim``), a matrix state ``S ∈ R^{P×N}`` (P = head_dim,
N = d_state) with a scalar, input-dependent decay::

    [z, u, B, C, δ] = W_in x_t                       u, z ∈ R^{heads·P}; B, C ∈ R^N (shared by heads)
    u, B, C        = SiLU(conv([u, B, C]))            a causal depthwise convolution over the last 4 steps
    Δ_k            = softplus(δ_k + dt_bias_k)
    S_k,t          = exp(-Δ_k e^{A_log,k}) S_k,t-1 + Δ_k u_k Bᵀ
    y_k            = S_k,t C + D_k u_k
    out            = W_out RMSNorm(y ⊙ SiLU(z))       Mamba-2's gated RMSNorm, back to width H

Training runs the state space dual form chunk by chunk (Mamba-2's SSD): inside a chunk of ``chunk``
steps the outputs are a masked, decayed attention ``(C_t·B_s) exp(Σ_{s<r<=t} log a_r) Δ_s u_s``,
and only the chunk-end states are materialised and chained; never the state of every step, which is
``T·heads·P·N`` floats per sample. Decays are summed in log space inside a chunk (a difference of
cumulative sums over at most ``chunk`` steps, all ``<= 0`` where used); an episode start zeroes
every path that crosses it (by selection, so a NaN in a finished episode's state does not leak).
A rollout step applies the recurrence itself.

Initialisation (Mamba-2): ``A = e^{A_log} ~ U(1, 16)`` per head; ``Δ = exp(U(log 0.001, log 0.1))``
(floored at 1e-4) through ``dt_bias = Δ + log(-expm1(-Δ))``, the inverse softplus; ``D = 1``;
projections without bias, ``nn.Linear``'s default init; the convolution as ``nn.Conv1d``'s
(:class:`~dream_rl.torsos.scan.CausalConv`, which keeps its last three inputs in the flat state).
The convolution was left out at first, to keep the state small; without it the torso reached a
return of 101 on CartPoleNoVel (sb3-contrib's LSTM setting, 50k steps, seed 1; the task needs the
difference of two consecutive positions), with it 178-475 (seeds 1-4).

The RecurrentPPO policies apply RL defaults on top (``dream_rl.sb3.policies.TORSO_RL_DEFAULTS``):
``dt_min = 0.1, dt_max = 1, a_init_range = (0.05, 1)``, one env step as about one unit of time; with
the paper's values a step writes about 1% of its input and the T-maze test stayed at chance.

Defaults: ``d_state = 16``, ``head_dim = 16`` (``gcd(inner width, 16)`` at widths that are not multiples
of 16), ``expand = 1`` (inner width = H: Memorax's
``Mamba2Config(features=64, num_heads=4, head_dim=16)``), ``chunk = 32``, ``dt_min = 0.001``,
``dt_max = 0.1``, ``a_init_range = (1, 16)`` (Mamba-2's), ``conv_kernel = 4`` (Mamba-2's; 1 leaves
the convolution a per-channel scale and bias, with no state).

State size: ``L·(expand·H·d_state + (conv_kernel - 1)·(expand·H + 2·d_state))``; 1312 at width 64.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dream_rl.errors import TorsoError
from dream_rl.torsos.scan import CausalConv, ScanLayer, ScanTorso

__all__ = ["MambaTorso", "MambaLayer", "ssd_chunked"]


def ssd_chunked(
    u: Tensor, log_a: Tensor, b: Tensor, c: Tensor, s0: Tensor, starts: Tensor | None, chunk: int
) -> tuple[Tensor, Tensor]:
    """The outputs and final state of ``S_t = a_t S_{t-1} + u_t b_tᵀ``, ``y_t = S_t c_t`` per head.

    Args:
        u: (T, B, heads, P) inputs (already scaled by Δ).
        log_a: (T, B, heads) log decays (<= 0).
        b, c: (T, B, N) input and output projections, shared by the heads.
        s0: (B, heads, P, N) state before step 0 (already zeroed where step 0 starts an episode).
        starts: (T, B) bool or None: an episode starts before step t.
        chunk: steps per chunk.
    Returns:
        y (T, B, heads, P) and the state after the last step (B, heads, P, N).
    """
    steps, batch, heads, p = u.shape
    length = min(chunk, steps)
    chunks = -(-steps // length)
    pad = chunks * length - steps
    if pad:  # trailing steps with zero input and decay 1 leave the state as it is
        u, log_a, b, c = (F.pad(v, (0,) * (2 * (v.dim() - 1)) + (0, pad)) for v in (u, log_a, b, c))
    # batch-major chunks: (B, chunks, L, ...)
    u = u.transpose(0, 1).reshape(batch, chunks, length, heads, p)
    b = b.transpose(0, 1).reshape(batch, chunks, length, -1)
    c = c.transpose(0, 1).reshape(batch, chunks, length, -1)
    cum = log_a.permute(1, 2, 0).reshape(batch, heads, chunks, length).cumsum(-1)  # log decay, chunk start → t

    # 0/1 masks, multiplied in (torch.where over these shapes measured ~20x slower on CPU): which paths
    # survive. Without episode starts after step 0 (the usual RecurrentPPO sequence) only causality.
    live = torch.ones(length, length, dtype=u.dtype, device=u.device).tril()  # s <= t
    to_end_live = from_start_live = None
    if starts is not None and steps > 1 and bool(starts[1:].any()):
        starts_bm = F.pad(starts, (0, 0, 0, pad)).transpose(0, 1).long()  # (B, T')
        count = starts_bm.cumsum(1)  # starts at positions <= t
        count_before_chunk = (count - starts_bm).reshape(batch, chunks, length)[:, :, :1]
        count = count.reshape(batch, chunks, length)
        same = count.unsqueeze(-1) == count.unsqueeze(-2)  # (B, chunks, t, s): no start in (s, t]
        live = (same.to(u.dtype) * live).unsqueeze(1)  # (B, 1, chunks, L, L)
        to_end_live = same[..., -1, :].to(u.dtype).unsqueeze(1)  # (B, 1, chunks, L): no start in (s, end]
        from_start_live = (count == count_before_chunk).to(u.dtype).unsqueeze(1)  # none in [chunk start, t]

    # inside a chunk: y_t = Σ_s (c_t·b_s) exp(cum_t - cum_s) u_s over the live paths (masked before exp:
    # the dead upper triangle would overflow)
    decay = torch.exp((cum.unsqueeze(-1) - cum.unsqueeze(-2)) * live) * live  # (B, heads, chunks, t, s)
    scores = torch.einsum("bctn,bcsn->bcts", c, b).unsqueeze(1) * decay
    y = torch.einsum("bhcts,bcshp->bcthp", scores, u)

    # each chunk's own contribution to its end state, and the decay from the chunk start through t
    to_end = torch.exp(cum[..., -1:] - cum)  # (B, heads, chunks, L)
    from_start = torch.exp(cum)
    if to_end_live is not None:
        to_end, from_start = to_end * to_end_live, from_start * from_start_live
    chunk_states = torch.einsum("bhcs,bcshp,bcsn->bchpn", to_end, u, b)
    state = s0
    entering = []
    for k in range(chunks):
        entering.append(state)
        state = from_start[:, :, k, -1].reshape(batch, heads, 1, 1) * state + chunk_states[:, k]
    entering_states = torch.stack(entering, dim=1)  # (B, chunks, heads, P, N)
    y = y + torch.einsum("bctn,bchpn,bhct->bcthp", c, entering_states, from_start)
    y = y.reshape(batch, chunks * length, heads, p)[:, :steps].transpose(0, 1)
    return y, state


class MambaLayer(ScanLayer):
    """One Mamba-2-style layer: (T, B, input_size) → (T, B, hidden_size); state S (B, heads, P, N), flat."""

    def __init__(
        self, input_size: int, hidden_size: int, d_state: int = 16, head_dim: int | None = None, expand: int = 1,
        chunk: int = 32, dt_min: float = 0.001, dt_max: float = 0.1, a_init_range: tuple[float, float] = (1.0, 16.0),
        conv_kernel: int = 4,
    ) -> None:
        super().__init__()
        inner = int(expand) * hidden_size
        if head_dim is None:  # 16 where it divides the inner width, else the largest power of two that does
            head_dim = math.gcd(inner, 16)
        a_low, a_high = (float(v) for v in a_init_range)
        if (d_state < 1 or head_dim < 1 or expand < 1 or chunk < 1 or inner % head_dim or not 0 < dt_min <= dt_max
                or not 0 < a_low <= a_high):
            raise TorsoError(
                f"mamba needs expand·hidden_size ({inner}) divisible by head_dim ({head_dim}), d_state, expand, "
                f"chunk >= 1, 0 < dt_min <= dt_max and 0 < a_init_range[0] <= a_init_range[1]; got d_state={d_state}, "
                f"expand={expand}, chunk={chunk}, dt_min={dt_min}, dt_max={dt_max}, a_init_range={a_init_range} "
                "(for a small width pass e.g. head_dim=hidden_size)"
            )
        self.heads, self.head_dim, self.d_state, self.inner, self.chunk = inner // head_dim, head_dim, d_state, inner, chunk
        self.conv = CausalConv(inner + 2 * d_state, conv_kernel)  # over [u | B | C], before their SiLU
        self.ssm_size = inner * d_state
        self.state_size = self.ssm_size + self.conv.state_size
        self.in_proj = nn.Linear(input_size, 2 * inner + 2 * d_state + self.heads, bias=False)
        self.A_log = nn.Parameter(torch.log(torch.empty(self.heads).uniform_(a_low, a_high)))
        dt = torch.exp(torch.empty(self.heads).uniform_(math.log(dt_min), math.log(dt_max))).clamp_min(1e-4)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.D = nn.Parameter(torch.ones(self.heads))
        self.norm_weight = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, hidden_size, bias=False)

    def forward(self, x: Tensor, h0: Tensor, starts: Tensor | None) -> tuple[Tensor, Tensor]:
        steps, batch, _ = x.shape
        heads, p, n = self.heads, self.head_dim, self.d_state
        z, ubc, delta = self.in_proj(x).split([self.inner, self.inner + 2 * n, heads], dim=-1)
        h0, conv_history = h0.split([self.ssm_size, self.conv.state_size], dim=1)
        ubc, conv_history = self.conv(ubc, conv_history, starts)
        u, bc = F.silu(ubc).split([self.inner, 2 * n], dim=-1)
        u = u.reshape(steps, batch, heads, p)
        b, c = bc.chunk(2, dim=-1)
        dt = F.softplus(delta + self.dt_bias)  # (T, B, heads)
        log_a = -dt * torch.exp(self.A_log)
        u_dt = u * dt.unsqueeze(-1)
        s0 = h0.reshape(batch, heads, p, n)
        if starts is not None:
            s0 = torch.where(starts[0].reshape(batch, 1, 1, 1), torch.zeros((), dtype=s0.dtype, device=s0.device), s0)
        if steps == 1:  # a rollout step: the recurrence itself
            keep = torch.exp(log_a[0]).reshape(batch, heads, 1, 1)
            state = keep * s0 + u_dt[0].unsqueeze(-1) * b[0].reshape(batch, 1, 1, n)
            y = torch.einsum("bhpn,bn->bhp", state, c[0]).unsqueeze(0)
        else:
            y, state = ssd_chunked(u_dt, log_a, b, c, s0, starts, self.chunk)
        y = (y + self.D.reshape(heads, 1) * u).reshape(steps, batch, self.inner) * F.silu(z)
        y = y * torch.rsqrt(y.square().mean(-1, keepdim=True) + 1e-5) * self.norm_weight
        return self.out_proj(y), torch.cat([state.reshape(batch, self.ssm_size), conv_history], dim=1)


class MambaTorso(ScanTorso):
    """``num_layers`` Mamba-2-style layers of width ``hidden_size``; options ``d_state``, ``head_dim``,
    ``expand``, ``chunk``, ``dt_min``, ``dt_max``, ``a_init_range``, ``conv_kernel`` (see the module docstring).
    Flat state: S and the convolution's history of every layer."""

    # The state size, and the step size range around the RL default (0.1-1): how much a step writes
    # (TORSO_RL_DEFAULTS). The two ranges meet at 0.3, so every sample has dt_min <= dt_max.
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "d_state": {"type": "categorical", "choices": [8, 16, 32]},
        "dt_min": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
        "dt_max": {"type": "float", "low": 0.3, "high": 3.0, "log": True},
    }

    layer_options = ("d_state", "head_dim", "expand", "chunk", "dt_min", "dt_max", "a_init_range", "conv_kernel")

    def make_layer(self, input_size: int, hidden_size: int, **layer_kwargs: object) -> ScanLayer:
        return MambaLayer(input_size, hidden_size, **layer_kwargs)  # type: ignore[arg-type]
