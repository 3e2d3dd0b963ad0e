"""The differentiable neural computer (Graves et al., Nature 2016, "Hybrid computing using a neural
network with dynamic external memory"), as a torso.

Model (per layer; an LSTM controller of ``C`` units, a memory ``M`` of ``N`` words of ``W`` floats,
``R`` read heads and one write head; the paper's Methods section, equation by equation)::

    (h_t, c_t) = LSTM([x_t, r_{t-1}], (h_{t-1}, c_{t-1}))           the controller sees last step's reads
    ξ_t = W_ξ h_t                                                    the interface vector, split into
        read keys k^r (R×W), read strengths β^r = oneplus(·) (R), write key k^w (W), write strength β^w,
        erase e = σ(·) (W), write vector v (W), free gates f = σ(·) (R), allocation gate g^a = σ(·),
        write gate g^w = σ(·), read modes π = softmax(·) (R×3: backward, content, forward)
    C(M, k, β)[i] = softmax_i(β · cos(k, M[i]))                      content addressing
    ψ_t = Π_i (1 − f^i w^{r,i}_{t-1});  u_t = (u_{t-1} + w^w_{t-1} − u_{t-1} ⊙ w^w_{t-1}) ⊙ ψ_t     usage
    a_t[φ_j] = (1 − u_t[φ_j]) Π_{i<j} u_t[φ_i]                       allocation, φ = usage sorted ascending
    w^w_t = g^w (g^a a_t + (1 − g^a) C(M_{t-1}, k^w, β^w))            write weighting
    M_t = M_{t-1} ⊙ (1 − w^w eᵀ) + w^w vᵀ                             erase, then write
    L_t[i, j] = (1 − w^w[i] − w^w[j]) L_{t-1}[i, j] + w^w[i] p_{t-1}[j],  L_t[i, i] = 0     temporal links
    p_t = (1 − Σ_i w^w[i]) p_{t-1} + w^w                               precedence
    w^{r,i}_t = π^i_b (L_tᵀ w^{r,i}_{t-1}) + π^i_c C(M_t, k^{r,i}, β^{r,i}) + π^i_f (L_t w^{r,i}_{t-1})
    r^i_t = M_tᵀ w^{r,i}_t                                             the reads
    y_t = W_y [h_t, r_t]                                               output (H)

This is the whole DNC of the paper with one write head: content addressing, usage-based allocation
with free gates, and the temporal link matrix with forward and backward read modes. Not included:
the paper's sparse link matrix (an approximation for large ``N``, pointless at ``N = 16``).

Zeros are the initial state: an empty memory, no usage, no links, no precedence, zero read and write
weightings and reads, and a zero controller state. The cosine similarity is
``k·M[i] / (sqrt(‖k‖² + ε) sqrt(‖M[i]‖² + ε))`` with ``ε = 1e-6`` (as DeepMind's implementation adds one):
at the empty memory it is 0 (a uniform content weighting), and its gradient stays finite (a plain
norm's gradient is 0/0 at a zero word). Among equally used slots the allocation's sort puts the lowest
index first (slot 0 from the empty memory), by a key of ``u + 1e-6 · index``: the paper leaves ties
open, and an order set by rounding noise would differ between batch sizes (see ``allocation_weights``).

Source: the paper's equations; POPGym's DNC baseline (Morad et al., ICLR 2023) wraps the ``dnc``
package with the same model and state (controller, memory, links, precedence, read and write
weightings, usage, reads). Sizes follow POPGym's: words of 16 floats and 4 read heads; ``N = 16``
slots (POPGym sets ``N = hidden_size / 16``, 4 at width 64). Initialisation: torch's defaults for the
controller (``nn.LSTM``'s uniform ``±1/sqrt(C)``) and ``nn.Linear``'s for the interface and output maps.

Sequential over time (every read depends on the previous write); the controller's input projection
of ``x`` is one matmul for all steps.

Defaults: ``num_words = 16``, ``word_size = 16``, ``read_heads = 4``, ``controller_size = hidden_size``.
State size per layer: ``2C + N·W + N + N² + N + R·N + N + R·W``; 816 at width 64 with the defaults.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dream_rl.errors import TorsoError
from dream_rl.torsos.base import StackedTorso

__all__ = [
    "DncLayer", "DncTorso", "allocation_weights", "content_weights", "normalised", "updated_links", "updated_usage",
]

EPS = 1e-6
TIE_BREAK = 1e-6  # per slot index, added to the usage for the allocation's sort only


def normalised(vectors: Tensor) -> Tensor:
    """``v / sqrt(‖v‖² + ε)`` along the last axis: unit length, and 0 (with a finite gradient) at 0."""
    return vectors * torch.rsqrt(vectors.square().sum(-1, keepdim=True) + EPS)


def content_weights(memory: Tensor, keys: Tensor, strengths: Tensor) -> Tensor:
    """``C(M, k, β)``: softmax over the words of ``β · cos(k, M[i])``.

    Args:
        memory: (B, N, W). keys: (B, K, W). strengths: (B, K).
    Returns:
        (B, K, N), each row a distribution over the words.
    """
    return torch.softmax(strengths.unsqueeze(-1) * (normalised(keys) @ normalised(memory).transpose(1, 2)), dim=-1)


def allocation_weights(usage: Tensor) -> Tensor:
    """``a[φ_j] = (1 − u[φ_j]) Π_{i<j} u[φ_i]`` with ``φ`` the slots sorted by usage, ascending.

    (B, N) → (B, N). Slots used equally (in exact arithmetic) are ordered by index: the sort key is
    ``u + TIE_BREAK · index``. Equally used slots are common (every slot the empty memory's uniform
    content lookup wrote to alike), and without the offset their order would follow rounding noise,
    which differs between batch sizes: the same sample would allocate different slots in a rollout
    and in a training batch (the outputs agree, since such slots are exact twins, but the states
    would be permutations of each other).
    """
    index = torch.arange(usage.shape[-1], dtype=usage.dtype, device=usage.device)
    order = torch.argsort(usage.detach() + TIE_BREAK * index, dim=-1)
    sorted_usage = usage.gather(1, order)
    before = torch.cumprod(torch.cat([torch.ones_like(sorted_usage[:, :1]), sorted_usage[:, :-1]], dim=1), dim=1)
    return torch.zeros_like(usage).scatter(1, order, (1 - sorted_usage) * before)


def updated_usage(usage: Tensor, write_weights: Tensor, read_weights: Tensor, free_gates: Tensor) -> Tensor:
    """``u_t = (u_{t-1} + w^w_{t-1} − u_{t-1} ⊙ w^w_{t-1}) ⊙ Π_i (1 − f^i w^{r,i}_{t-1})``.

    Args:
        usage, write_weights: (B, N), the previous step's. read_weights: (B, R, N), the previous step's.
        free_gates: (B, R) in [0, 1].
    """
    retention = torch.prod(1 - free_gates.unsqueeze(-1) * read_weights, dim=1)
    return torch.addcmul(usage, write_weights, 1 - usage) * retention


def updated_links(
    links: Tensor, precedence: Tensor, write_weights: Tensor, no_self_links: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The temporal link matrix and precedence after a write.

    ``L_t[i, j] = (1 − w[i] − w[j]) L_{t-1}[i, j] + w[i] p_{t-1}[j]`` (0 on the diagonal): how much slot
    ``i`` was written right after slot ``j``; ``p_t = (1 − Σ w) p_{t-1} + w``.

    Args:
        links: (B, N, N). precedence, write_weights: (B, N).
        no_self_links: ``1 − I`` (N, N), when the caller has it at hand.
    """
    if no_self_links is None:
        no_self_links = 1 - torch.eye(links.shape[-1], dtype=links.dtype, device=links.device)
    column = write_weights.unsqueeze(-1)
    keep = (1 - column) - write_weights.unsqueeze(1)
    links = torch.addcmul(keep * links, column, precedence.unsqueeze(1)) * no_self_links
    return links, torch.addcmul(write_weights, 1 - write_weights.sum(-1, keepdim=True), precedence)


def oneplus(z: Tensor) -> Tensor:
    """The paper's strength map, ``1 + softplus(z)`` (>= 1)."""
    return 1 + F.softplus(z)


class DncLayer(nn.Module):
    """One DNC: ``forward(x (T, B, I), state (B, state_size))`` → ``(y (T, B, H), state)``.

    Flat state: ``[h (C), c (C), M (N·W), usage (N), links (N·N), precedence (N), read weights (R·N),
    write weights (N), reads (R·W)]``.
    """

    def __init__(
        self, input_size: int, hidden_size: int, num_words: int = 16, word_size: int = 16, read_heads: int = 4,
        controller_size: int | None = None,
    ) -> None:
        super().__init__()
        controller_size = int(hidden_size if controller_size is None else controller_size)
        for name, value in [("num_words", num_words), ("word_size", word_size), ("read_heads", read_heads),
                            ("controller_size", controller_size)]:  # fmt: skip
            if int(value) < 1:
                raise TorsoError(f"dnc: {name} must be >= 1, got {value}")
        n, w, r, c = int(num_words), int(word_size), int(read_heads), controller_size
        self.num_words, self.word_size, self.read_heads, self.controller_size = n, w, r, c
        self.sizes = [c, c, n * w, n, n * n, n, r * n, n, r * w]  # the flat state's parts, in order
        self.state_size = sum(self.sizes)
        # the LSTM controller, gates (i, f, g, o) like nn.LSTM; x's part is applied to all steps at once
        bound = 1.0 / math.sqrt(c)
        self.controller_x = nn.Linear(input_size, 4 * c)
        self.controller_rh = nn.Linear(r * w + c, 4 * c, bias=False)
        for param in (*self.controller_x.parameters(), self.controller_rh.weight):
            nn.init.uniform_(param, -bound, bound)
        # the interface vector ξ, laid out so that parts under one activation are contiguous: the keys
        # (R read keys, then the write key), the write vector, the strengths (oneplus), the gates
        # (sigmoid: erase, free gates, allocation gate, write gate), the read modes (softmax per head)
        self.interface_names = ("read_keys", "write_key", "write_vector", "read_strengths", "write_strength",
                                "erase", "free_gates", "allocation_gate", "write_gate", "read_modes")  # fmt: skip
        self.interface_sizes = [r * w, w, w, r, 1, w, r, 1, 1, 3 * r]
        self.interface = nn.Linear(c, sum(self.interface_sizes))
        self.output = nn.Linear(c + r * w, hidden_size)

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        steps, batch = x.shape[:2]
        n, w, r = self.num_words, self.word_size, self.read_heads
        h, cell, memory, usage, links, precedence, read_w, write_w, reads = state.split(self.sizes, dim=1)
        memory, links = memory.reshape(batch, n, w), links.reshape(batch, n, n)
        read_w = read_w.reshape(batch, r, n)
        from_x = self.controller_x(x)  # (T, B, 4C)
        recurrent_weight = self.controller_rh.weight.T
        no_self_links = 1 - torch.eye(n, dtype=x.dtype, device=x.device)
        # ξ's parts, grouped by activation: [keys | write vector | strengths | gates | read modes]
        groups = [(r + 1) * w, w, r + 1, w + r + 2, 3 * r]
        unit_memory = normalised(memory)  # the words scaled to unit length, for the cosine
        outputs = []
        # The step below is the model's equations (see the module docstring) with the operations grouped
        # (one activation per group of interface parts, one product for both link directions, splits
        # rather than slices): a DNC step is dozens of small operations, and their count, not their
        # size, sets its speed.
        # unbind: one backward node for all steps, where indexing [t] would fill a zero (T, B, ·) gradient per step
        for step_input in from_x.unbind(0):
            gates = torch.addmm(step_input, torch.cat([reads, h], dim=1), recurrent_weight)
            input_gate, forget_gate, _, output_gate = torch.sigmoid(gates).chunk(4, dim=1)
            cell = torch.addcmul(forget_gate * cell, input_gate, torch.tanh(gates).chunk(4, dim=1)[2])
            h = output_gate * torch.tanh(cell)
            keys, write_vector, strengths, gate_values, modes = self.interface(h).split(groups, dim=1)
            read_keys, write_key = normalised(keys.reshape(batch, r + 1, w)).split([r, 1], dim=1)
            read_strengths, write_strength = (1 + F.softplus(strengths)).split([r, 1], dim=1)  # oneplus
            erase, free_gates, allocation_gate, write_gate = torch.sigmoid(gate_values).split([w, r, 1, 1], dim=1)
            modes = torch.softmax(modes.reshape(batch, r, 1, 3), dim=-1)  # (B, R, 1, 3)
            # usage, allocation, and the write weighting (content lookup in the memory before the write)
            usage = updated_usage(usage, write_w, read_w, free_gates)
            allocation = allocation_weights(usage)
            lookup = torch.softmax(write_strength * (write_key @ unit_memory.transpose(1, 2)).squeeze(1), -1)
            write_w = write_gate * torch.addcmul(lookup, allocation_gate, allocation - lookup)
            # erase, then write
            write_column = write_w.unsqueeze(-1)
            erased = torch.addcmul(memory, memory, write_column * erase.unsqueeze(1), value=-1)
            memory = torch.addcmul(erased, write_column, write_vector.unsqueeze(1))
            unit_memory = normalised(memory)
            links, precedence = updated_links(links, precedence, write_w, no_self_links)
            # reads: backward (Lᵀ w), content and forward (L w) weightings mixed by each head's read modes
            lookup = torch.softmax(read_strengths.unsqueeze(-1) * (read_keys @ unit_memory.transpose(1, 2)), -1)
            backward, forward = (read_w @ torch.cat([links, links.transpose(1, 2)], dim=2)).split(n, dim=2)
            candidates = torch.stack([backward, lookup, forward], dim=2)  # (B, R, 3, N)
            read_w = (modes @ candidates).squeeze(2)
            reads = (read_w @ memory).reshape(batch, r * w)
            outputs.append(torch.cat([h, reads], dim=1))
        y = self.output(torch.stack(outputs))
        flat = [h, cell, memory.reshape(batch, -1), usage, links.reshape(batch, -1), precedence,
                read_w.reshape(batch, -1), write_w, reads]  # fmt: skip
        return y, torch.cat(flat, dim=1)


class DncTorso(StackedTorso):
    """``num_layers`` DNCs of width ``hidden_size``, each with its own memory; flat state: every layer's
    DNC state (see :class:`DncLayer`).

    Args:
        num_words: memory slots ``N`` (default 16).
        word_size: floats per slot ``W`` (default 16).
        read_heads: ``R`` (default 4).
        controller_size: the LSTM controller's units (default ``hidden_size``).
        dropout: dropout between layers, like ``nn.LSTM``'s.
    """

    # The number of memory slots N (the state grows as N²) and of read heads.
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "num_words": {"type": "categorical", "choices": [8, 16, 32]},
        "read_heads": {"type": "categorical", "choices": [1, 2, 4]},
    }

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        num_words: int = 16,
        word_size: int = 16,
        read_heads: int = 4,
        controller_size: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(
            input_size, hidden_size, num_layers, dropout,
            lambda width: DncLayer(width, int(hidden_size), num_words, word_size, read_heads, controller_size),
        )  # fmt: skip
