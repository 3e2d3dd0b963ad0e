"""Linear attention (Katharopoulos, Vyas, Pappas & Fleuret, ICML 2020, "Transformers are RNNs"), in
the setup of POPGym's linear transformer block (Morad et al., ICLR 2023), as a scan torso.

Causal softmax attention with the kernel ``sim(q, k) = φ(q)ᵀφ(k)``, ``φ = elu + 1``, is a recurrence
over a matrix state per head (``d = head_dim``)::

    q, k = conv(W_q x_t), conv(W_k x_t);  v = W_v x_t   a causal short convolution; heads of d units
    S_t = S_{t-1} + φ(k_t) v_tᵀ                    S ∈ R^{d×d}
    z_t = z_{t-1} + φ(k_t)                         z ∈ R^d
    a_t = S_tᵀ φ(q_t) / (z_tᵀ φ(q_t) + ε)          per head, concatenated to width H
    y_t = FF(a_t + s ⊙ q_t) + W_s x_t              POPGym: FF = Linear-ReLU-Linear (optional here), a linear shortcut

``z`` is kept as one more column of ``S`` (the values get a constant 1 appended), so numerator and
denominator come from one product. A training sequence runs chunk by chunk: inside a chunk of
``chunk`` steps the outputs are causal, unnormalised attention ``Σ_s [same episode] (φ(q_t)·φ(k_s)) v_s``
plus the entering state's ``S_eᵀ φ(q_t)``, and only chunk-end states are materialised (never the
``T·d²`` states of every step), chained across chunks by one masked sum (no loop). An episode start
cuts every path that crosses it; a state from before a start is dropped by selection, so a NaN in a
finished episode's state does not leak. A rollout step applies the recurrence itself.
The decay is 1, so the scan family's ``h = a h + b`` is here ``a = 1`` with resets, and the chunked
form is exact (no decay products at all).

Changes from POPGym's block, and why: a causal depthwise convolution over the last 4 steps on the
q and k projections, with a learnable skip (``s``, init 1) of the convolved queries into the output
(:class:`~dream_rl.torsos.scan.CausalConv`; the short convolution that Based, Arora et al. 2024, pairs
with linear attention). Attention without decay weighs the whole episode alike, so it cannot tell
the last step from the first: without the convolution the torso stayed at a memoryless policy's
return on CartPoleNoVel (74-77, sb3-contrib's LSTM setting, 50k steps, seeds 1-2; the task needs the
difference of two consecutive positions), with it 500 at seeds 1-4. Several heads (POPGym keeps one ``H×H`` state, 4160 floats
per sample at width 64; Memorax's linear attention uses heads of 16), and no LayerNorm on the
input (SB3 hands the torso raw observation features, and a LayerNorm over a few features erases
information: over one feature it outputs a constant). ``ε = 1e-6`` (the paper's). Initialisation:
``nn.Linear``'s default (neither source prescribes another); projections ``W_q, W_k, W_v`` have no bias.
The feed-forward is off by default: SB3's policy puts its own MLP (``net_arch``) right after the
torso, and at width 128 the two ``H×H`` layers cost about half a fused LSTM's forward+backward;
``feed_forward=True`` gives POPGym's block exactly.

Defaults: ``head_dim = min(16, H)`` (``H`` divisible by it), ``chunk = 16`` (measured against 8, 32
and 64 at the benchmark sizes), ``feed_forward = False``, ``residual = True``, ``conv_kernel = 4``.

State size: ``L·(H·(d + 1) + 2·H·(conv_kernel - 1))``; 1472 at width 64 (4 heads of 16).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dream_rl.errors import TorsoError
from dream_rl.torsos.scan import CausalConv, ScanLayer, ScanTorso

__all__ = ["LinearAttentionTorso", "LinearAttentionLayer", "linear_attention_chunked"]

EPS = 1e-6


def episode_masks(starts: Tensor | None, batch: int, chunks: int, length: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Where paths inside a chunk survive episode starts.

    Args:
        starts: (chunks·length, B) bool (padded), True where an episode starts before step t; None: none.
    Returns:
        live (B, chunks, L, L): step s reaches step t (s <= t, same chunk, no start in (s, t]);
        clean (B, chunks, L): no start in [chunk start, t], so the entering state reaches step t.
    """
    causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
    if starts is None:
        return causal.expand(batch, chunks, length, length), torch.ones(batch, chunks, length, dtype=torch.bool, device=device)
    starts_bm = starts.transpose(0, 1).long().reshape(batch, chunks, length)
    count = starts_bm.cumsum(-1)  # starts in [chunk start, t]
    live = (count.unsqueeze(-1) == count.unsqueeze(-2)) & causal
    return live, count == 0


def chunk_paths(keep: Tensor) -> tuple[Tensor, Tensor]:
    """Which chunk-end states reach which: ``keep`` (B, 1, chunks) is True where no episode starts inside
    the chunk. Returns ``reach`` (B, 1, chunks, chunks): chunk j' (<= j)'s own writes survive to the end of
    chunk j (no start in chunks j'+1..j), and ``from_start`` (B, 1, chunks): the state before step 0 does."""
    count = (~keep).long().cumsum(-1)  # chunks with a start, up to j
    chunks = keep.shape[-1]
    causal = torch.ones(chunks, chunks, dtype=torch.bool, device=keep.device).tril()
    return (count.unsqueeze(-1) == count.unsqueeze(-2)) & causal, count == 0


def chain_chunks(local_states: Tensor, keep: Tensor, s0: Tensor) -> tuple[Tensor, Tensor]:
    """The state entering every chunk and the last state, from each chunk's own writes (decay 1).

    Args:
        local_states: (B, heads, chunks, d, e) what each chunk adds after its last episode start.
        keep: (B, 1, chunks) True where no episode starts inside the chunk.
        s0: (B, heads, d, e) the state before step 0.
    Returns:
        entering (B, heads, chunks, d, e) and the state after the last chunk (B, heads, d, e).
    """
    batch, heads, chunks, d, e = local_states.shape
    reach, from_start = chunk_paths(keep)
    ends = (reach.to(local_states.dtype) @ local_states.reshape(batch, heads, chunks, d * e)).reshape(local_states.shape)
    zero = torch.zeros((), dtype=s0.dtype, device=s0.device)
    ends = ends + torch.where(from_start[..., None, None], s0.unsqueeze(2), zero)  # selection: NaN-safe
    return torch.cat([s0.unsqueeze(2), ends[:, :, :-1]], dim=2), ends[:, :, -1]


def linear_attention_chunked(
    q: Tensor, k: Tensor, v: Tensor, s0: Tensor, starts: Tensor | None, chunk: int
) -> tuple[Tensor, Tensor]:
    """Outputs ``S_tᵀ q_t`` and the last state of ``S_t = S_{t-1} + k_t v_tᵀ`` per head, with resets.

    Args:
        q, k: (T, B, heads, d) feature-mapped queries and keys.
        v: (T, B, heads, e) values.
        s0: (B, heads, d, e) the state before step 0, already zeroed where step 0 starts an episode.
        starts: (T, B) bool or None.
        chunk: steps per chunk.
    Returns:
        out (T, B, heads, e) and the state after the last step (B, heads, d, e).
    """
    steps, batch, heads, _ = q.shape
    length = min(chunk, steps)
    chunks = -(-steps // length)
    pad = chunks * length - steps
    if pad:  # trailing steps with k = 0 add nothing to the state; their outputs are dropped
        q, k, v = (F.pad(t, (0, 0, 0, 0, 0, 0, 0, pad)) for t in (q, k, v))
        if starts is not None:
            starts = F.pad(starts, (0, 0, 0, pad))

    def chunked(t: Tensor) -> Tensor:  # (T', B, heads, n) → (B, heads, chunks, L, n)
        return t.permute(1, 2, 0, 3).reshape(batch, heads, chunks, length, t.shape[-1])

    q, k, v = chunked(q), chunked(k), chunked(v)
    live, clean = episode_masks(starts, batch, chunks, length, q.device)
    # masks as 0/1 factors over the finite scores and keys: a multiply is several times cheaper than
    # torch.where on CPU; the one product that can meet a non-finite state (the entering one) selects
    live = (live[0, 0] if starts is None else live.unsqueeze(1)).to(q.dtype)  # broadcast over heads
    clean = clean.unsqueeze(1)
    out = ((q @ k.transpose(-1, -2)) * live) @ v  # within-chunk part (B, heads, chunks, L, e)
    # what each chunk writes into its end state: the keys/values after its last start
    local_states = (k * live[..., -1, :].unsqueeze(-1)).transpose(-1, -2) @ v  # (B, heads, chunks, d, e)
    entering_states, state = chain_chunks(local_states, clean[..., -1], s0)
    from_entering = q @ entering_states
    if starts is not None:
        from_entering = torch.where(clean.unsqueeze(-1), from_entering, torch.zeros((), dtype=q.dtype, device=q.device))
    out = out + from_entering
    out = out.reshape(batch, heads, chunks * length, -1)[:, :, :steps].permute(2, 0, 1, 3)
    return out, state


class LinearAttentionLayer(ScanLayer):
    """One linear-attention block: (T, B, input_size) → (T, B, hidden_size); state ``[S | z]`` per head
    (B, heads, d, d + 1) and the convolution's last inputs, flat."""

    def __init__(
        self, input_size: int, hidden_size: int, head_dim: int | None = None, chunk: int = 16,
        feed_forward: bool = False, residual: bool = True, conv_kernel: int = 4,
    ) -> None:
        super().__init__()
        head_dim = int(head_dim or min(16, hidden_size))
        if head_dim < 1 or hidden_size % head_dim or chunk < 1:
            raise TorsoError(
                f"linear_attention needs hidden_size ({hidden_size}) divisible by head_dim ({head_dim}) and "
                f"chunk >= 1 (got {chunk}); pass head_dim=... that divides the width"
            )
        self.heads, self.head_dim, self.hidden_size, self.chunk = hidden_size // head_dim, head_dim, hidden_size, chunk
        self.memory_size = hidden_size * (head_dim + 1)
        self.qkv = nn.Linear(input_size, 3 * hidden_size, bias=False)
        self.conv = CausalConv(2 * hidden_size, conv_kernel)  # over [q | k], before φ (Based's short convolution)
        self.skip = nn.Parameter(torch.ones(hidden_size))  # the convolved query branch added to the output
        self.state_size = self.memory_size + self.conv.state_size
        self.feed_forward = (
            nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, hidden_size))
            if feed_forward else None
        )
        self.shortcut = nn.Linear(input_size, hidden_size) if residual else None

    def forward(self, x: Tensor, h0: Tensor, starts: Tensor | None) -> tuple[Tensor, Tensor]:
        steps, batch, _ = x.shape
        heads, d = self.heads, self.head_dim
        h0, conv_history = h0.split([self.memory_size, self.conv.state_size], dim=1)
        qk, v = self.qkv(x).split([2 * self.hidden_size, self.hidden_size], dim=-1)
        qk, conv_history = self.conv(qk, conv_history, starts)
        q, k = (F.elu(qk) + 1.0).reshape(steps, batch, 2, heads, d).unbind(2)  # φ on one tensor
        v = v.reshape(steps, batch, heads, d)
        v = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)  # the last column accumulates z
        s0 = h0.reshape(batch, heads, d, d + 1)
        if starts is not None:
            s0 = torch.where(starts[0].reshape(batch, 1, 1, 1), torch.zeros((), dtype=s0.dtype, device=s0.device), s0)
            if not bool(starts[1:].any()):  # the zeroed s0 is the whole reset: the kernel needs no masks
                starts = None
        if steps == 1:  # a rollout step: the recurrence itself
            state = s0 + k[0].unsqueeze(-1) * v[0].unsqueeze(-2)
            out = (q[0].unsqueeze(-2) @ state).unsqueeze(0).squeeze(-2)  # (1, B, heads, d + 1)
        else:
            out, state = linear_attention_chunked(q, k, v, s0, starts, self.chunk)
        y = (out[..., :d] / (out[..., d:] + EPS)).reshape(steps, batch, self.hidden_size)
        y = y + self.skip * qk[..., : self.hidden_size]
        if self.feed_forward is not None:
            y = self.feed_forward(y)
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        return y, torch.cat([state.reshape(batch, self.memory_size), conv_history], dim=1)


class LinearAttentionTorso(ScanTorso):
    """``num_layers`` linear-attention blocks of width ``hidden_size``; options ``head_dim``, ``chunk``,
    ``feed_forward``, ``residual``, ``conv_kernel`` (see the module docstring). Flat state: ``[S | z]`` of
    every head and the convolution's history, per layer."""

    # Heads, the short convolution that lets it tell recent steps apart (see the module docstring), and
    # POPGym's feed-forward block.
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "head_dim": {"type": "categorical", "choices": [8, 16, 32]},
        "conv_kernel": {"type": "categorical", "choices": [2, 4, 8]},
        "feed_forward": {"type": "categorical", "choices": [False, True]},
    }

    layer_options = ("head_dim", "chunk", "feed_forward", "residual", "conv_kernel")

    def make_layer(self, input_size: int, hidden_size: int, **layer_kwargs: Any) -> ScanLayer:
        return LinearAttentionLayer(input_size, hidden_size, **layer_kwargs)
