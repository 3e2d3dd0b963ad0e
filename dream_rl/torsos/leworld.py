"""LeWorld's addressable external memory (seed 003, design note family 4) as a torso.

Model (per layer, per sample; ``K`` controllers, a memory ``M`` of ``N`` words of ``W`` floats)::

    s_t = GELU(W_s x_t) + W_q q_{t-1}                    encoded input, modulated by last step's info query
    e_k = GELU(W_k s_t)                                  controller k's hidden state (k = 1..K)
    start_k = softmax(row logits_k) ⊗ softmax(column logits_k)      product-key soft start address over N
    len_k = softmax(range logits_k)                                 soft range length over 1..R
    w_k[j] = Σ_a start_k[a] Σ_l len_k[l] · [a <= j < a + l] / l     soft read weights: mean over the range
    r_k = w_k M_{t-1}                                    soft read (W floats)
    g = σ(W_g s_t)                                       router gates over the controllers
    h_t = LayerNorm(MLP([s_t, g_1 e_1, g_1 R r_1, …, g_K e_K, g_K R r_K]))     output (H)
    q_t = LayerNorm(W_i h_t)                             info query for the next step
    M_t = M_{t-1} + (β p)[:, None] ⊙ (v - M_{t-1})       soft write: p product-key address, β = σ(·), v = tanh(·)

Flat state per layer: ``[M (N·W), q (Q)]``; zeros are the empty memory and "no query yet".

Kept from the seed: a word-addressed memory read in contiguous address ranges (a start address and a
range length per controller, reads pooled by the mean over the range), start addresses composed from two
sub-address heads (the seed's product-key high/low split, here ``rows × columns = N``), several small
controllers (the SLMs) that each emit an address range from the encoded state, a router (the BLM's gate,
one sigmoid per controller) that gates each controller's hidden state and its memory read before they are
combined, a learned encoder of the read words, and the BLM's info query fed back to modulate the next
step's controller input.

Changed, and why:
- Writes are per sample, soft and differentiable (an erase-and-write at a soft address, with a write
  strength): the seed writes hard addresses with ``.detach()`` and lets the last batch element win, which
  couples the samples of a batch (a torso's samples must never interact) and passes no gradient.
- The memory starts empty (zeros), per env, in the flat state: the seed's memory is one random buffer
  shared by the whole batch, and zeros must be the initial state for exact episode resets.
- ``N`` = 64 words of 16 floats by default (64-256 fit), not 64K words of 32 bits: the memory is part of
  every env's state in RecurrentPPO's rollout buffer (the seed's would be 8 MB per env and step).
- Words are real numbers (``tanh`` contents), not bits with a straight-through threshold, and the read
  encoder is linear, applied after the soft read: a linear map commutes with the weighted mean, so a step
  encodes K vectors instead of every word.
- Addresses are soft in training and acting (expected read over the start and length distributions),
  not argmax: argmax passes no gradient to the address heads, and soft reads are what the seed's
  ``soft_read`` offers for differentiable training. Ranges wrap around the end of the memory (the seed
  clamps them), so every start address can read every length.
- The router's gates are soft sigmoids, not straight-through binary masks (and no load-balancing loss:
  PPO's loss is the only objective); controllers and the BLM are MLPs, not transformers (each of the seed's
  transformers attends over one or a handful of tokens per step, where an MLP does the same job).

Defaults: ``num_words=64``, ``word_size=16``, ``max_range=8``, ``num_controllers=3``, ``controller_size=32``,
``query_size=16``, ``dropout=0`` between layers.
State size: ``N·W + Q`` per layer, independent of the width: 1040 floats at width 64 with the defaults.
Sequential over time (each read depends on the previous write); the input encoding is one matmul for all
steps.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dream_rl.errors import TorsoError
from dream_rl.torsos.base import StackedTorso

__all__ = ["LeWorldLayer", "LeWorldTorso", "range_read_weights"]


def _product_key_split(num_words: int) -> tuple[int, int]:
    """``rows × columns = num_words`` with ``rows`` the largest divisor not above the square root."""
    rows = max(r for r in range(1, int(num_words**0.5) + 1) if num_words % r == 0)
    return rows, num_words // rows


def _product_address(row_logits: Tensor, column_logits: Tensor) -> Tensor:
    """A distribution over ``rows·columns`` addresses, address ``row·columns + column``: (..., R), (..., C) → (..., R·C)."""
    rows = torch.softmax(row_logits, dim=-1).unsqueeze(-1)
    columns = torch.softmax(column_logits, dim=-1).unsqueeze(-2)
    return (rows * columns).flatten(-2)


def range_read_weights(start: Tensor, length: Tensor) -> Tensor:
    """Soft read weights over the words of a mean read of a contiguous, wrapping address range.

    Args:
        start: (..., N) distribution of the start address.
        length: (..., R) distribution of the range length ``1..R`` (``R <= N``).
    Returns:
        (..., N): ``w[j] = Σ_a start[a] Σ_l length[l] [a <= j < a + l (mod N)] / l``; sums to 1.
    """
    num_words, max_range = start.shape[-1], length.shape[-1]
    lengths = torch.arange(1, max_range + 1, dtype=length.dtype, device=length.device)
    # The weight of the word at offset o from the start is Σ_{l > o} length[l] / l, a reversed cumulative
    # sum; ``by_offset_reversed[r]`` is that weight at offset R - 1 - r.
    by_offset_reversed = (length / lengths).flip(-1).cumsum(-1)  # (..., R)
    padded = torch.cat([start[..., num_words - (max_range - 1) :], start], dim=-1)  # wrap: (..., N + R - 1)
    windows = padded.unfold(-1, max_range, 1)  # (..., N, R): windows[j, r] = start[j - (R - 1 - r)]
    # (a grouped conv1d computes the same but measured several times slower at these sizes)
    return (windows @ by_offset_reversed.unsqueeze(-1)).squeeze(-1)


class LeWorldLayer(nn.Module):
    """One LeWorld memory layer. ``forward(x (T, B, I), state (B, N·W + Q))`` → ``(h (T, B, H), state)``."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_words: int = 64,
        word_size: int = 16,
        max_range: int = 8,
        num_controllers: int = 3,
        controller_size: int = 32,
        query_size: int = 16,
    ) -> None:
        super().__init__()
        for name, value, low in [
            ("num_words", num_words, 2), ("word_size", word_size, 1), ("max_range", max_range, 1),
            ("num_controllers", num_controllers, 1), ("controller_size", controller_size, 1), ("query_size", query_size, 1),
        ]:  # fmt: skip
            if int(value) < low:
                raise TorsoError(f"leworld: {name} must be >= {low}, got {value}")
        if max_range > num_words:
            raise TorsoError(f"leworld: max_range ({max_range}) must not exceed num_words ({num_words})")
        self.num_words, self.word_size, self.max_range = num_words, word_size, max_range
        self.num_controllers, self.controller_size, self.query_size = num_controllers, controller_size, query_size
        self.rows, self.columns = _product_key_split(num_words)
        k, c = num_controllers, controller_size
        self.encoder = nn.Linear(input_size, c)
        self.query_modulation = nn.Linear(query_size, c, bias=False)  # no bias: a zero query changes nothing
        self.controllers = nn.Linear(c, k * c)  # the K controllers' hidden layers, one matmul
        address_width = self.rows + self.columns + max_range
        self.address_heads = nn.Parameter(torch.randn(k, c, address_width) / c**0.5)
        self.address_bias = nn.Parameter(torch.zeros(k, address_width))
        self.read_encoder = nn.Linear(word_size, c)
        self.router = nn.Linear(c, k)
        self.combine = nn.Sequential(
            nn.Linear(c + 2 * k * c, hidden_size), nn.GELU(), nn.Linear(hidden_size, hidden_size), nn.LayerNorm(hidden_size)
        )
        self.info_query = nn.Sequential(nn.Linear(hidden_size, query_size), nn.LayerNorm(query_size))
        # write head: row and column logits, strength, content
        self.write_head = nn.Linear(hidden_size, self.rows + self.columns + 1 + word_size)
        self.state_size = num_words * word_size + query_size

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        steps, batch = x.shape[:2]
        n, w, k, c = self.num_words, self.word_size, self.num_controllers, self.controller_size
        rows, columns = self.rows, self.columns
        encoded = F.gelu(self.encoder(x))  # (T, B, c): every step's input in one matmul
        memory = state[:, : n * w].reshape(batch, n, w)
        query = state[:, n * w :]
        outputs = []
        for t in range(steps):
            s = encoded[t] + self.query_modulation(query)  # (B, c)
            hidden = F.gelu(self.controllers(s)).view(batch, k, c)
            logits = torch.einsum("bkc,kca->bka", hidden, self.address_heads) + self.address_bias
            start = _product_address(logits[..., :rows], logits[..., rows : rows + columns])  # (B, k, N)
            weights = range_read_weights(start, torch.softmax(logits[..., rows + columns :], dim=-1))
            reads = self.read_encoder(torch.bmm(weights, memory))  # (B, k, c)
            gates = torch.sigmoid(self.router(s)).unsqueeze(-1)  # (B, k, 1)
            h = self.combine(torch.cat([s, (gates * hidden).flatten(1), (gates * reads).flatten(1)], dim=1))
            query = self.info_query(h)
            write = self.write_head(h)
            address = _product_address(write[:, :rows], write[:, rows : rows + columns])  # (B, N)
            strength = torch.sigmoid(write[:, rows + columns : rows + columns + 1])  # (B, 1)
            content = torch.tanh(write[:, rows + columns + 1 :])  # (B, W)
            memory = memory + (strength * address).unsqueeze(-1) * (content.unsqueeze(1) - memory)
            outputs.append(h)
        return torch.stack(outputs), torch.cat([memory.reshape(batch, -1), query], dim=1)


class LeWorldTorso(StackedTorso):
    """``num_layers`` :class:`LeWorldLayer` s of width ``hidden_size``; the flat state concatenates their
    ``[memory, info query]``. Keyword arguments are :class:`LeWorldLayer`'s, plus ``dropout`` between layers."""

    # The memory's number of words (64-256 fit), the address range of a write and the controllers.
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "num_words": {"type": "categorical", "choices": [16, 64, 256]},
        "max_range": {"type": "categorical", "choices": [4, 8, 16]},
        "num_controllers": {"type": "categorical", "choices": [1, 3, 5]},
    }

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        num_words: int = 64,
        word_size: int = 16,
        max_range: int = 8,
        num_controllers: int = 3,
        controller_size: int = 32,
        query_size: int = 16,
        dropout: float = 0.0,
    ) -> None:
        sizes = dict(
            num_words=int(num_words), word_size=int(word_size), max_range=int(max_range),
            num_controllers=int(num_controllers), controller_size=int(controller_size), query_size=int(query_size),
        )  # fmt: skip
        super().__init__(
            input_size, hidden_size, num_layers, dropout, lambda width: LeWorldLayer(width, int(hidden_size), **sizes)
        )
