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
norm's gradient is 0/0 at a zero word). The allocation's sort is stable, so among equally unused
slots the lowest index is allocated first (slot 0 from the empty memory).

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

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dream_rl.errors import TorsoError
from dream_rl.torsos.base import StackedTorso

__all__ = ["DncLayer", "DncTorso", "allocation_weights", "content_weights", "updated_links", "updated_usage"]

EPS = 1e-6


def content_weights(memory: Tensor, keys: Tensor, strengths: Tensor) -> Tensor:
    """``C(M, k, β)``: softmax over the words of ``β · cos(k, M[i])``.

    Args:
        memory: (B, N, W). keys: (B, K, W). strengths: (B, K).
    Returns:
        (B, K, N), each row a distribution over the words.
    """
    dots = keys @ memory.transpose(1, 2)  # (B, K, N)
    key_norms = torch.sqrt(keys.square().sum(-1, keepdim=True) + EPS)  # (B, K, 1)
    word_norms = torch.sqrt(memory.square().sum(-1) + EPS).unsqueeze(1)  # (B, 1, N)
    return torch.softmax(strengths.unsqueeze(-1) * dots / (key_norms * word_norms), dim=-1)


def allocation_weights(usage: Tensor) -> Tensor:
    """``a[φ_j] = (1 − u[φ_j]) Π_{i<j} u[φ_i]`` with ``φ`` the slots sorted by usage, ascending (stable).

    (B, N) → (B, N).
    """
    sorted_usage, order = torch.sort(usage, dim=-1, stable=True)
    before = torch.cumprod(torch.cat([torch.ones_like(sorted_usage[:, :1]), sorted_usage[:, :-1]], dim=1), dim=1)
    return torch.zeros_like(usage).scatter(1, order, (1 - sorted_usage) * before)


def updated_usage(usage: Tensor, write_weights: Tensor, read_weights: Tensor, free_gates: Tensor) -> Tensor:
    """``u_t = (u_{t-1} + w^w_{t-1} − u_{t-1} ⊙ w^w_{t-1}) ⊙ Π_i (1 − f^i w^{r,i}_{t-1})``.

    Args:
        usage, write_weights: (B, N), the previous step's. read_weights: (B, R, N), the previous step's.
        free_gates: (B, R) in [0, 1].
    """
    retention = torch.prod(1 - free_gates.unsqueeze(-1) * read_weights, dim=1)
    return (usage + write_weights - usage * write_weights) * retention


def updated_links(links: Tensor, precedence: Tensor, write_weights: Tensor) -> tuple[Tensor, Tensor]:
    """The temporal link matrix and precedence after a write.

    ``L_t[i, j] = (1 − w[i] − w[j]) L_{t-1}[i, j] + w[i] p_{t-1}[j]`` (0 on the diagonal): how much slot
    ``i`` was written right after slot ``j``; ``p_t = (1 − Σ w) p_{t-1} + w``.

    Args:
        links: (B, N, N). precedence, write_weights: (B, N).
    """
    keep = 1 - write_weights.unsqueeze(-1) - write_weights.unsqueeze(1)
    no_self_links = 1 - torch.eye(links.shape[-1], dtype=links.dtype, device=links.device)
    links = (keep * links + write_weights.unsqueeze(-1) * precedence.unsqueeze(1)) * no_self_links
    return links, (1 - write_weights.sum(-1, keepdim=True)) * precedence + write_weights


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
        # interface: read keys, read strengths, write key, write strength, erase, write vector,
        # free gates, allocation gate, write gate, read modes
        self.interface_sizes = [r * w, r, w, 1, w, w, r, 1, 1, 3 * r]
        self.interface = nn.Linear(c, sum(self.interface_sizes))
        self.output = nn.Linear(c + r * w, hidden_size)

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        steps, batch = x.shape[:2]
        n, w, r, c = self.num_words, self.word_size, self.read_heads, self.controller_size
        h, cell, memory, usage, links, precedence, read_w, write_w, reads = state.split(self.sizes, dim=1)
        memory, links = memory.reshape(batch, n, w), links.reshape(batch, n, n)
        read_w = read_w.reshape(batch, r, n)
        from_x = self.controller_x(x)  # (T, B, 4C)
        outputs = []
        for t in range(steps):
            gates = from_x[t] + self.controller_rh(torch.cat([reads, h], dim=1))
            i, f, g, o = gates.chunk(4, dim=1)
            cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(cell)
            (read_keys, read_strengths, write_key, write_strength, erase, write_vector, free_gates,
             allocation_gate, write_gate, read_modes) = self.interface(h).split(self.interface_sizes, dim=1)  # fmt: skip
            # usage: last step's writes add to it, freed reads (free gate x read weight) release it
            usage = updated_usage(usage, write_w, read_w, torch.sigmoid(free_gates))
            allocation = allocation_weights(usage)
            lookup = content_weights(memory, write_key.unsqueeze(1), oneplus(write_strength)).squeeze(1)
            allocation_gate = torch.sigmoid(allocation_gate)
            write_w = torch.sigmoid(write_gate) * (allocation_gate * allocation + (1 - allocation_gate) * lookup)
            memory = memory * (1 - write_w.unsqueeze(-1) * torch.sigmoid(erase).unsqueeze(1)) + (
                write_w.unsqueeze(-1) * write_vector.unsqueeze(1)
            )
            links, precedence = updated_links(links, precedence, write_w)
            # reads: backward, content and forward weightings mixed by each head's read modes
            modes = torch.softmax(read_modes.reshape(batch, r, 3), dim=-1)
            lookup = content_weights(memory, read_keys.reshape(batch, r, w), oneplus(read_strengths))
            forward_w = read_w @ links.transpose(1, 2)  # (L w^r)ᵀ per head: (B, R, N)
            backward_w = read_w @ links  # (Lᵀ w^r)ᵀ
            read_w = modes[..., :1] * backward_w + modes[..., 1:2] * lookup + modes[..., 2:] * forward_w
            read_vectors = read_w @ memory  # (B, R, W)
            reads = read_vectors.reshape(batch, r * w)
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
