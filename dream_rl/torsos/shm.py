"""SHM, Stable Hadamard Memory (Le, Do, Nguyen, Gupta & Venkatesh, ICLR 2025, "Stable Hadamard Memory:
Revitalizing Memory-Augmented Agents for Reinforcement Learning"), as a scan torso.

A matrix memory ``M ∈ R^{d×d}`` updated by a Hadamard (elementwise) calibration and an outer-product
write; the calibration comes from the input and a parameter vector ``θ_t`` drawn from a learned set
``Θ = {θ_1, …, θ_K}``, which keeps the running product of calibrations near 1 (the paper's stability
argument: ``θ_t`` does not depend on the input)::

    [v, k̃, q̃, v_c, η̃] = conv(W x_t)             a causal short convolution of the projection
    k = relu(k̃) / (Σ relu(k̃) + 1e-5);  q likewise from q̃
    η_t  = σ(η̃)                              write strength
    U_t  = η_t v kᵀ                          the write
    C_t  = 1 + tanh(θ_t v_cᵀ)                the calibration, elementwise in (0, 2)
    M_t  = M_{t-1} ⊙ C_t + U_t
    y_t  = W_o (M_t q + s ⊙ v) + b_o         back to width H, with a learnable skip s (init 1)

Training runs :func:`~dream_rl.torsos.scan.linear_scan` over the ``d×d`` memories (``a = C_t``,
``b = U_t``): ``C_t`` is a full elementwise matrix, not a product of per-step scalars, so there is no
attention-like chunked form that skips materialising the states. A rollout step applies the
recurrence once.

The draw of ``θ_t``, and why it is not random: the paper samples ``θ_t`` uniformly from ``Θ`` at every
step. Here ``θ_t = ±Θ[i]`` with ``(i, sign)`` a fixed hash of ``τ``, the step's index within the episode
(kept in the flat state, 0 at an episode start), and of a per-model key (a buffer, saved and loaded with
the model). The draw stays independent of the input, as the stability argument needs, and it is a
function of the state, so one sequence call equals the step calls, and RecurrentPPO's rollouts (eval
mode) and training passes (train mode) compute the same policy: a per-call random draw would make the
two disagree and bias PPO's probability ratios. There is no train/eval switch. What is lost is variety
across episodes: every episode sees the same sequence of calibration vectors.

Why the draw is signed and hashed (the long-sequence stability). The paper's argument needs ``θ_t``
symmetric about zero: then ``E[tanh(θ_t v)] = 0`` and ``E[C_t] = 1`` for any ``v``, so the expected
product of calibrations stays 1. A finite learned ``Θ`` is not symmetric (at Glorot initialisation a
column's mean over ``K = 128`` draws is about ±0.01), and ``log C ≈ θ·v_c - (θ·v_c)²/2``: a non-zero mean
of ``θ`` meeting an input with a steady ``v_c`` (a constant, zero or random observation) multiplies the
memory by ``e^{0.01}`` or so every step. An earlier version drew ``θ_t`` from a fixed table of 1024
unsigned indices and diverged that way: output 2.4 at step 100, 9e4 at step 1000, inf by step 6,500.
Drawing ``θ`` and ``-θ`` equally often makes the draws exactly symmetric over the hash's period (every
``τ`` in ``[0, P)`` maps to a different hash value, whose top bit is the sign), whatever ``Θ`` learns:
``log C`` then has a negative mean for any input the hash cannot predict, and the product of
calibrations is a mean-1 martingale. A short fixed table is not enough even when signed: over its period
an input that repeats with the table (one alternating every step, say) meets the same draws again and
again and can grow the memory exponentially; the hash's period ``P = 2^24`` steps (float32 keeps ``τ``
exact up to there) is longer than any episode. What remains is the paper's own behaviour: with
``E[C] = 1`` and no forgetting bias, writes accumulate, so the memory's size grows with the episode's
length (about 10-40 at step 1000 and hundreds to a few thousand at step 10^5 at width 64, default
initialisation; measured in ``tests/torsos/test_long_sequences.py``), never exponentially. A float16 or
bfloat16 state keeps ``τ`` exact only to 2^11 or 2^8 steps, so the period shrinks to that there.

The convolution over the last 4 steps (:class:`~dream_rl.torsos.scan.CausalConv`) and the skip
are not the paper's; they are the short convolution and skip that Mamba and xLSTM put before their
memories. Without them the torso stayed below a memoryless policy's return on CartPoleNoVel (37-38,
sb3-contrib's LSTM setting, 50k steps, seeds 1-2; the task needs the difference of two consecutive
positions), with them 211-373 (seeds 1-4). ``conv_kernel=1`` leaves a per-channel scale and bias.

Initialisation: ``Θ`` Glorot-uniform over ``(K, d)``; projections ``nn.Linear``'s default, without
bias except the output's. No LayerNorm on the input (SB3 hands the torso raw observation features;
a LayerNorm over a few features erases information). The structure of ``U``, ``k``, ``q`` and ``η``
follows Memorax's ``SHMCell``.

Defaults: ``memory_size = 16`` (``d``, at every width; Memorax's example uses ``d = 64``), ``num_thetas
= 128`` (``K``). The memory size sets the cost: every step touches ``d²`` memory cells in the
calibration, the write, the scan and the read, forward and backward, so ``d = 32`` costs about four
times ``d = 16`` (measured: 3.7-10x a fused LSTM's forward+backward at the benchmark sizes, against
about 1-2x for ``d = 16``). Pass ``memory_size=32`` for the larger memory. ``conv_kernel = 4``.

State size: ``L·(d² + (conv_kernel - 1)·(4d + 1) + 1)`` (the memory, the convolution's last inputs,
then the step counter ``τ``); 452 at width 64 (1412 with ``d = 32``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dream_rl.errors import TorsoError
from dream_rl.torsos.base import check_size
from dream_rl.torsos.scan import CausalConv, ScanLayer, ScanTorso, linear_scan

__all__ = ["ShmTorso", "ShmLayer"]

PERIOD_BITS = 24  # the step counter runs modulo P = 2^24: the integers a float32 state holds exactly
# Odd multipliers: x -> x * m mod 2^n is a bijection, as are x -> x ^ key and x -> x ^ (x >> s) (s >= 1).
_MIX_1, _MIX_2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9


def period_bits(dtype: torch.dtype) -> int:
    """``log2 P`` for a state of ``dtype``: 24, or fewer where the dtype holds fewer integers exactly
    (11 for float16, 8 for bfloat16)."""
    mantissa_bits = round(-math.log2(torch.finfo(dtype).eps))  # 23 for float32
    return min(PERIOD_BITS, mantissa_bits + 1)


def draw(tau: Tensor, key: Tensor, num_thetas: int, bits: int = PERIOD_BITS) -> tuple[Tensor, Tensor]:
    """The calibration draw of steps ``tau`` (int64, any shape, values in ``[0, 2^bits)``): ``(index, sign)``,
    an index into Θ (``[0, num_thetas)``) and a sign ±1, from a bijective hash of ``tau`` keyed by ``key``.

    The hash maps ``[0, 2^bits)`` onto itself one to one, and its top bit is the sign, so over one period
    every other bit pattern comes once with each sign: every ``θ`` is drawn exactly as often as ``-θ``."""
    mask = (1 << bits) - 1
    h = (tau ^ key) & mask
    h = (h * (_MIX_1 & mask)) & mask
    h = h ^ (h >> (bits // 2))
    h = (h * (_MIX_2 & mask)) & mask
    h = h ^ (h >> (bits // 2 - 1))
    high = 1 << (bits - 1)
    sign = 1 - 2 * (h >= high).long()
    return (h & (high - 1)).remainder(num_thetas), sign


class ShmLayer(ScanLayer):
    """One SHM layer: (T, B, input_size) → (T, B, hidden_size); state ``[M (d·d), conv history, τ]``."""

    def __init__(
        self, input_size: int, hidden_size: int, memory_size: int = 16, num_thetas: int = 128, conv_kernel: int = 4
    ) -> None:
        super().__init__()
        d = self.memory_size = check_size("shm", "memory_size", memory_size)
        num_thetas = check_size("shm", "num_thetas", num_thetas)
        self.proj = nn.Linear(input_size, 4 * d + 1, bias=False)  # v, k, q, v_c and η
        self.conv = CausalConv(4 * d + 1, conv_kernel)  # over the projection
        self.skip = nn.Parameter(torch.ones(d))  # the convolved value branch added to the read-out
        self.state_size = d * d + self.conv.state_size + 1
        self.thetas = nn.Parameter(nn.init.xavier_uniform_(torch.empty(num_thetas, d)))
        self.register_buffer("draw_key", torch.randint(0, 1 << PERIOD_BITS, ()))  # this model's draws
        self.out = nn.Linear(d, hidden_size)

    def calibration_vectors(self, tau: Tensor, bits: int = PERIOD_BITS) -> Tensor:
        """``θ_t`` (..., d) for episode steps ``tau`` (..., int64 in ``[0, 2^bits)``): ``±Θ[index]`` as
        :func:`draw` picks them."""
        index, sign = draw(tau, self.draw_key, self.thetas.shape[0], bits)
        return self.thetas[index] * sign.unsqueeze(-1).to(self.thetas.dtype)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        if prefix + "schedule" in state_dict:
            raise TorsoError(
                "this shm checkpoint draws θ from the fixed 1024-step schedule of earlier versions, whose memory "
                "diverges on long sequences (tens of thousands of steps): retrain it with this version"
            )
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, x: Tensor, h0: Tensor, starts: Tensor | None) -> tuple[Tensor, Tensor]:
        steps, batch, _ = x.shape
        d = self.memory_size
        m0, conv_history, tau0 = h0.split([d * d, self.conv.state_size, 1], dim=1)
        m0 = m0.reshape(batch, d, d)
        # the step counter: sanitised so that no state, however corrupt, gives a step outside the period
        tau0 = torch.nan_to_num(tau0[:, 0].detach(), nan=0.0, posinf=0.0, neginf=0.0).round().long()
        period = 1 << period_bits(h0.dtype)
        tau0 = tau0.remainder(period)
        offsets = torch.arange(steps, device=x.device).unsqueeze(1)  # (T, 1)
        if starts is None:
            tau = tau0 + offsets  # (T, B)
        else:
            last_start = torch.where(starts, offsets, -1).cummax(dim=0).values  # (T, B), -1: none yet
            tau = torch.where(last_start >= 0, offsets - last_start, tau0 + offsets)
        tau = tau.remainder(period)
        theta = self.calibration_vectors(tau, period_bits(h0.dtype))  # (T, B, d)

        projected, conv_history = self.conv(self.proj(x), conv_history, starts)
        v, k, q, v_c, eta = projected.split([d, d, d, d, 1], dim=-1)
        k, q = F.relu(k), F.relu(q)
        k = k / (k.sum(-1, keepdim=True) + 1e-5)
        q = q / (q.sum(-1, keepdim=True) + 1e-5)
        write = (torch.sigmoid(eta) * v).unsqueeze(-1) * k.unsqueeze(-2)  # U (T, B, d, d)
        # C = 1 + tanh(z) = 2 σ(2z), exactly: σ is several times cheaper than tanh on CPU
        calibration = 2.0 * torch.sigmoid((2.0 * theta).unsqueeze(-1) * v_c.unsqueeze(-2))  # C (T, B, d, d)
        memory = linear_scan(calibration, write, m0, starts)  # (T, B, d, d)
        y = self.out((memory @ q.unsqueeze(-1)).squeeze(-1) + self.skip * v)
        tau_next = ((tau[-1] + 1).remainder(period)).to(h0.dtype).unsqueeze(1)
        return y, torch.cat([memory[-1].reshape(batch, d * d), conv_history, tau_next], dim=1)


class ShmTorso(ScanTorso):
    """``num_layers`` SHM layers of width ``hidden_size``; options ``memory_size``, ``num_thetas``,
    ``conv_kernel`` (see the module docstring). Flat state: ``[M, conv history, τ]`` of every layer."""

    # The memory's size d (d = 32 costs about four times d = 16) and the number of calibration draws K.
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "memory_size": {"type": "categorical", "choices": [8, 16, 32]},
        "num_thetas": {"type": "categorical", "choices": [32, 128, 512]},
    }

    layer_options = ("memory_size", "num_thetas", "conv_kernel")

    def make_layer(self, input_size: int, hidden_size: int, **layer_kwargs: Any) -> ScanLayer:
        return ShmLayer(input_size, hidden_size, **layer_kwargs)
