"""Causal multi-head self-attention over a sliding window of the last ``L`` steps, as a torso.

Model (per layer; design note family 3). The step's features ``x_t`` enter a residual stream
``u_t = W_in x_t``; ``q, k, v`` come from ``LayerNorm(u_t)``. Step ``t`` attends to itself and the ``L``
steps before it, never across an episode start::

    a_t = W_o · MultiHead( softmax_j( q_t·k_j / sqrt(d_head) + bias[t - j] ) v_j ),  t - L <= j <= t
    y_t = gate(u_t, relu(a_t))                       GTrXL's GRU-type gate, or u_t + a_t (gating=False)
    out_t = gate(y_t, relu(MLP(LayerNorm(y_t))))     the position-wise sublayer (feedforward=True)

``bias`` is a learned per-head bias by distance ``t - j`` in ``0..L`` (relative positions, as in T5;
Transformer-XL / GTrXL use sinusoidal relative encodings for the same purpose). The gate is GTrXL's
(Parisotto et al., "Stabilizing Transformers for Reinforcement Learning", ICML 2020):
``r = σ(W_r y + U_r x)``, ``z = σ(W_z y + U_z x - b_g)``, ``ĥ = tanh(W_g y + U_g (r ⊙ x))``,
``gate(x, y) = (1 - z) ⊙ x + z ⊙ ĥ`` with ``b_g = 2`` at initialisation (close to the identity), with
pre-layer-norm sublayers, as in that paper.

Memory: the flat state holds the window, the keys and values of the last ``L`` steps (zeros where
empty, the newest last) and how many of them are valid (a count in ``0..L``): zeros are the empty
window. A training sequence attends over ``[window; sequence]`` (``L + T`` keys) with a sliding-window
causal mask; an episode start before step ``t`` hides every earlier key from step ``t`` on (the window
included), exactly as a fresh run would see it; a rollout step (T = 1) is the same computation with one
query. Keys and values depend on their own step only, so caching them is exact (each layer keeps its own
window, as in Transformer-XL).

Defaults: ``window=16``, ``attention_size=32`` (the width ``d`` of q, k, v), ``num_heads=4``,
``gating=True``, ``feedforward=True`` (MLP width ``2·H``), ``dropout=0`` between layers.
State size: ``L·2d + 1`` per layer, independent of the width: 1025 floats at width 64 with the defaults.
Call memory: a call over ``T`` steps scores every query against ``L + T`` keys, ``B·heads·T·(L+T)``
floats per layer (quadratic in ``T``: 22.5 GB for one sequence of 20,000 steps). A longer call is run as
consecutive calls of at most :meth:`SelfAttentionTorso.max_steps` steps, whose scores fit
``max_attention_bytes`` (64 MiB); the window in the state carries the keys and values across, so the
result is the same as one call's.
Buffer memory: RecurrentPPO stores the state of the actor's and the critic's memory for every step of a
rollout, ``n_steps · n_envs · 2 · (L·2d + 1) · 4`` bytes: 8.4 MB at ``n_steps=128, n_envs=8`` (an LSTM of
width 64: 1 MB). Cost per step is ``O(L·d)``; a training sequence is ``O(T·(L+T)·d)``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dream_rl.errors import TorsoError
from dream_rl.torsos.base import StackedTorso, reset_where

__all__ = ["GruGate", "WindowAttentionLayer", "SelfAttentionTorso"]


class GruGate(nn.Module):
    """GTrXL's gating layer: ``gate(x, y)`` for the residual stream ``x`` and a sublayer output ``y``, both (..., H)."""

    def __init__(self, size: int, gate_bias: float = 2.0) -> None:
        super().__init__()
        self.from_y = nn.Linear(size, 3 * size)  # W_r, W_z, W_g (with the biases)
        self.from_x = nn.Linear(size, 2 * size, bias=False)  # U_r, U_z
        self.candidate_from_x = nn.Linear(size, size, bias=False)  # U_g
        with torch.no_grad():
            self.from_y.bias[size : 2 * size] = -gate_bias  # z starts near σ(-2): the gate starts near identity

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        wr, wz, wg = self.from_y(y).chunk(3, dim=-1)
        ur, uz = self.from_x(x).chunk(2, dim=-1)
        r, z = torch.sigmoid(wr + ur), torch.sigmoid(wz + uz)
        candidate = torch.tanh(wg + self.candidate_from_x(r * x))
        return x + z * (candidate - x)


class WindowAttentionLayer(nn.Module):
    """One attention block over a window of ``window`` cached steps.

    ``forward(x (T, B, I), state (B, 2·L·d + 1), starts (T, B) bool | None)`` → ``(out (T, B, H), state)``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        window: int = 16,
        attention_size: int = 32,
        num_heads: int = 4,
        gating: bool = True,
        feedforward: bool = True,
    ) -> None:
        super().__init__()
        if window < 1:
            raise TorsoError(f"self_attention: window must be >= 1 step, got {window}")
        if num_heads < 1 or attention_size % num_heads:
            raise TorsoError(
                f"self_attention: attention_size ({attention_size}) must be a multiple of num_heads ({num_heads})"
            )
        self.window, self.attention_size, self.num_heads = window, attention_size, num_heads
        self.head_size = attention_size // num_heads
        self.input_proj = nn.Linear(input_size, hidden_size)
        self.attention_norm = nn.LayerNorm(hidden_size)
        self.qkv = nn.Linear(hidden_size, 3 * attention_size)
        self.attention_out = nn.Linear(attention_size, hidden_size)
        self.distance_bias = nn.Parameter(torch.zeros(num_heads, window + 1))  # by distance 0..L
        self.attention_gate = GruGate(hidden_size) if gating else None
        self.feedforward = (
            nn.Sequential(
                nn.LayerNorm(hidden_size),
                nn.Linear(hidden_size, 2 * hidden_size),
                nn.ReLU(),
                nn.Linear(2 * hidden_size, hidden_size),
            )
            if feedforward
            else None
        )
        self.feedforward_gate = GruGate(hidden_size) if gating and feedforward else None
        self.state_size = 2 * window * attention_size + 1

    def forward(self, x: Tensor, state: Tensor, starts: Tensor | None) -> tuple[Tensor, Tensor]:
        steps, batch = x.shape[:2]
        window, d, heads, head_size = self.window, self.attention_size, self.num_heads, self.head_size
        u = self.input_proj(x)  # (T, B, H)
        q, k, v = self.qkv(self.attention_norm(u)).transpose(0, 1).chunk(3, dim=-1)  # each (B, T, d)
        cached_k = state[:, : window * d].view(batch, window, d)
        cached_v = state[:, window * d : 2 * window * d].view(batch, window, d)
        count = state[:, -1].detach().round().clamp(0, window).long()  # (B,)
        keys = torch.cat([cached_k, k], dim=1)  # (B, L+T, d): key j is step j - L of this call
        values = torch.cat([cached_v, v], dim=1)

        # Query t sits at key position L + t and sees positions [L + t - L, L + t] not before its episode.
        positions = torch.arange(window + steps, device=x.device)
        distance = (window + torch.arange(steps, device=x.device)).unsqueeze(1) - positions  # (T, L+T)
        in_band = (distance >= 0) & (distance <= window)
        first_visible = (window - count).unsqueeze(1).expand(batch, steps)  # (B, T): the valid window
        if starts is not None:
            step_index = torch.arange(steps, device=x.device).unsqueeze(1).expand(steps, batch)
            last_start = torch.where(starts, step_index, -1).cummax(dim=0).values.transpose(0, 1)  # (B, T)
            first_visible = torch.where(last_start >= 0, window + last_start, first_visible)
        visible = in_band & (positions >= first_visible.unsqueeze(2))  # (B, T, L+T)

        def split_heads(tensor: Tensor) -> Tensor:  # (B, n, d) -> (B, heads, n, d_head)
            return tensor.reshape(batch, -1, heads, head_size).transpose(1, 2)

        scores = split_heads(q) @ split_heads(keys).transpose(-1, -2) / math.sqrt(head_size)  # (B, h, T, L+T)
        scores = scores + self.distance_bias[:, distance.clamp(0, window)]
        scores = scores.masked_fill(~visible.unsqueeze(1), float("-inf"))  # every row keeps its own step
        attended = torch.softmax(scores, dim=-1) @ split_heads(values)  # (B, h, T, d_head)
        attended = self.attention_out(attended.transpose(1, 2).reshape(batch, steps, d).transpose(0, 1))

        y = self.attention_gate(u, F.relu(attended)) if self.attention_gate is not None else u + attended
        if self.feedforward is not None:
            update = self.feedforward(y)
            y = self.feedforward_gate(y, F.relu(update)) if self.feedforward_gate is not None else y + update

        # The new window: the last L keys and values, zeros where not visible from the last step.
        new_count = (window + steps - first_visible[:, -1]).clamp(max=window)  # (B,)
        kept = (torch.arange(window, device=x.device) >= window - new_count.unsqueeze(1)).unsqueeze(2)  # (B, L, 1)
        zero = torch.zeros((), dtype=keys.dtype, device=keys.device)
        new_k = torch.where(kept, keys[:, -window:], zero)
        new_v = torch.where(kept, values[:, -window:], zero)
        new_state = torch.cat(
            [new_k.reshape(batch, -1), new_v.reshape(batch, -1), new_count.to(state.dtype).unsqueeze(1)], dim=1
        )
        return y, new_state


class SelfAttentionTorso(StackedTorso):
    """``num_layers`` :class:`WindowAttentionLayer` s of width ``hidden_size``; the flat state concatenates
    the layers' windows. Episode starts are masks inside every layer: one call per training sequence.

    Args:
        window: ``L``, the steps before the current one that attention sees.
        attention_size: ``d``, the width of queries, keys and values (the window stores ``2·L·d`` floats).
        num_heads: attention heads; must divide ``attention_size``.
        gating: GTrXL's GRU-type gates instead of residual additions.
        feedforward: add the position-wise MLP sublayer.
        dropout: dropout between layers, like ``nn.LSTM``'s.
    """

    # The window (its whole memory, in steps) and the width of queries, keys and values.
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "window": {"type": "categorical", "choices": [8, 16, 32, 64]},
        "attention_size": {"type": "categorical", "choices": [16, 32, 64]},
    }

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        window: int = 16,
        attention_size: int = 32,
        num_heads: int = 4,
        gating: bool = True,
        feedforward: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(
            input_size, hidden_size, num_layers, dropout,
            lambda width: WindowAttentionLayer(
                width, int(hidden_size), int(window), int(attention_size), int(num_heads), gating, feedforward
            ),
        )  # fmt: skip

    # The most memory one call's attention scores may take; longer calls run in consecutive parts.
    max_attention_bytes: int = 64 * 2**20

    def max_steps(self, batch: int, dtype: torch.dtype = torch.float32) -> int:
        """The longest call whose scores, ``batch·heads·T·(L+T)`` elements of ``dtype``, fit
        :attr:`max_attention_bytes` (at least 1)."""
        layer = self.layers[0]
        budget = self.max_attention_bytes / (max(batch, 1) * layer.num_heads * torch.finfo(dtype).bits / 8)
        window = layer.window
        return max(1, int((math.sqrt(window * window + 4 * budget) - window) / 2))  # T·(L+T) <= budget

    def run(self, features: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        return self._in_parts(features, state, None)

    def run_with_resets(self, features: Tensor, state: Tensor, starts: Tensor) -> tuple[Tensor, Tensor]:
        return self._in_parts(features, state, starts)

    def _in_parts(self, features: Tensor, state: Tensor, starts: Tensor | None) -> tuple[Tensor, Tensor]:
        """One call per part of at most :meth:`max_steps` steps, each from the state the last one left."""
        part = self.max_steps(features.shape[1], features.dtype)
        outputs = []
        for begin in range(0, features.shape[0], part):
            x = features[begin : begin + part]
            if starts is None:
                out, state = self.run_layers(x, state, None)
            else:
                # A start at step 0 hides the whole window; selecting zeros also drops non-finite values there.
                part_starts = starts[begin : begin + part]
                out, state = self.run_layers(x, reset_where(state, part_starts[0]), part_starts)
            outputs.append(out)
        return (outputs[0] if len(outputs) == 1 else torch.cat(outputs)), state
