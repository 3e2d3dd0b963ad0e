"""mLSTM, the matrix LSTM of xLSTM (Beck et al., NeurIPS 2024, "xLSTM: Extended Long Short-Term
Memory"), as a scan torso.

Per head (``d = head_dim``) a matrix memory ``C``, a normaliser ``n`` and a stabiliser ``m``, with an
exponential input gate and a sigmoid forget gate taken in log space::

    q, k = SiLU(conv(W_q x_t)), SiLU(conv(W_k x_t)) / sqrt(d),  v = W_v x_t   heads of d units
    ĩ_t = w_iᵀ x_t + b_i,  log f_t = log σ(w_fᵀ x_t + b_f)   one of each per head
    m_t = max(log f_t + m_{t-1}, ĩ_t)                 the stabiliser
    C_t = exp(log f_t + m_{t-1} - m_t) C_{t-1} + exp(ĩ_t - m_t) v_t k_tᵀ
    n_t = exp(log f_t + m_{t-1} - m_t) n_{t-1} + exp(ĩ_t - m_t) k_t
    h̃_t = C_t q_t / max(|n_tᵀ q_t|, exp(-m_t))       = the paper's C̄q / max(|n̄ᵀq|, 1), C̄ = e^m C
    y_t = σ(W_o x_t + b_o) ⊙ (GroupNorm_heads(h̃_t) + s ⊙ q_t)   output gate, per-head norm, learnable skip

``conv`` is a causal depthwise convolution over the last 4 steps (:class:`~dream_rl.torsos.scan.CausalConv`).

``C`` and ``n`` are stored divided by ``e^{m}``; the output does not depend on which stabiliser is
used (numerator and denominator scale together, and the ``1`` of the paper's ``max`` becomes
``exp(-m)``), but the *state* does, so the stabiliser is part of the flat state and the sequence
form reproduces the step recurrence's ``m`` exactly: a rollout step and a training sequence agree
to rounding. ``m = 0`` is the initial stabiliser (as in xLSTM's code), so zeros are the initial state.

Training form: chunkwise parallel (xLSTM's "parallel" form within chunks, the recurrence across
them). Inside a chunk of ``chunk`` steps the outputs are a masked, gated attention
``Σ_s exp(F_t - F_s + ĩ_s - m_t) (q_t·k_s) [v_s, 1]`` (``F`` = cumulative log forget gates inside
the chunk) plus the entering state's contribution ``exp(F_t + m_e - m_t) C_e q_t``; ``m_t`` is the
recurrence's stabiliser in closed form, ``max(F_t + m_e, max_s (F_t - F_s + ĩ'_s))`` (``ĩ'`` = ``ĩ``
except at an episode start, where it is ``max(ĩ, log f)``: the recurrence's ``log f + m`` with the
reset ``m = 0``). Only chunk-end states are materialised, each with its own local stabiliser; all
exponents are ``<= 0``. The chunk-end states are chained in closed form too (the same masked,
log-weighted sum at chunk scale; no loop over chunks). Log weights are differences of cumulative
log forget gates, which are ``<= 0`` sums: their rounding grows with ``|Σ log f|`` but never
overflows, and terms with a large difference weigh ``exp(-large) ~ 0`` anyway. An episode start
cuts every path that crosses it (an additive ``-inf`` in the log weights; a state from before the
start is dropped by selection, so a NaN in it does not leak). A rollout step applies the recurrence.
``exp(-m)`` is taken with ``m >= -80`` (it stays finite in float32 and its gradient defined; ``m < -80``
needs ``ĩ < -80``). The stabiliser carries no gradient (it is
detached, as in xLSTM's kernels): outputs do not depend on it, and a state ``(C, n, m)`` stands for
``e^m (C, n)``, so the gradients through ``m`` cancel exactly; dropping them saves backward work.

Changes from the xLSTM block, and why: no up-projection or down-projection (they would multiply
the state RecurrentPPO stores per env); the block's convolution and learnable skip act on the q and k
projections (the block convolves the up-projected input and computes q and k from it); ``n`` is kept
as one more column of ``C`` (values get a constant 1 appended). Gates come from the layer input, as
in the paper's cell equations. The convolution and skip were left out at first; without them the
torso reached a return of 73-83 on CartPoleNoVel (sb3-contrib's LSTM setting, 50k steps, seeds 1-2: a
memoryless policy's level; the task needs the difference of two consecutive positions, which a
memory whose forget gates start near 1 averages away), with them 204-453 (seeds 1-4).

Initialisation (xLSTM's code): gate weights zero, ``b_i ~ N(0, 0.1)``, ``b_f`` evenly spaced over
``[3, 6]`` across heads (forget gates near 1: long memory at the start), ``b_o = 0``; q, k, v and the
output gate with ``nn.Linear``'s default (all six share one projection matrix); norm weight 1; skip
1 (xLSTM's); the convolution as ``nn.Conv1d``'s.

Defaults: ``head_dim = min(16, H)`` (``H`` divisible by it; 4 heads at width 64), ``chunk = 16``
(measured against 8 and 32 at the benchmark sizes), ``conv_kernel = 4`` (xLSTM's).

State size: ``L·(H·(d + 1) + H/d + 2·H·(conv_kernel - 1))``; 1476 at width 64.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dream_rl.errors import TorsoError
from dream_rl.torsos.linear_attention import chunk_paths, episode_masks
from dream_rl.torsos.scan import CausalConv, ScanLayer, ScanTorso

__all__ = ["MlstmTorso", "MlstmLayer", "mlstm_chunked"]

# exp(-m) is evaluated with -m <= MAX_NEG_STABILISER: finite in float32 (e^80 ~ 5.5e34), finite gradient.
MAX_NEG_STABILISER = 80.0


def _exp_masked(arg: Tensor, mask: Tensor) -> Tensor:
    """``exp(arg)`` where ``mask``, else 0, with no NaN gradient from the masked-out entries."""
    return torch.exp(torch.where(mask, arg, torch.full((), float("-inf"), dtype=arg.dtype, device=arg.device)))


def _chain_chunks(
    local_states: Tensor, local_m: Tensor, log_f_total: Tensor, keep: Tensor, c0: Tensor, m0: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The stabilised states entering every chunk, and the last one, in closed form over chunks.

    The recurrence across chunks is the cell's own at chunk scale: chunk j multiplies the carried
    state by ``exp(G_j)`` (its summed log forget gates) and adds its writes ``local_states[j]`` (in the
    stabiliser ``local_m[j]``, which already holds the reset term when an episode starts inside it).
    Unrolled, the end of chunk j is a masked sum over chunks j' <= j with log weights
    ``Gc_j - Gc_j' + local_m[j']`` (``Gc`` = cumulative G), and its stabiliser their maximum.

    Args:
        local_states: (B, heads, chunks, d, e); local_m, log_f_total: (B, heads, chunks);
        keep: (B, 1, chunks) no start inside the chunk; c0: (B, heads, d, e); m0: (B, heads).
    Returns:
        entering states (B, heads, chunks, d, e), their stabilisers (B, heads, chunks), the last state and
        its stabiliser.
    """
    batch, heads, chunks, d, e = local_states.shape
    reach, from_start = chunk_paths(keep)
    total = log_f_total.cumsum(-1)  # Gc
    log_w = torch.where(
        reach, total.unsqueeze(-1) - total.unsqueeze(-2) + local_m.unsqueeze(-2),
        torch.full((), float("-inf"), dtype=c0.dtype, device=c0.device),
    )
    carried = total + m0.unsqueeze(-1)  # the state before step 0, at the end of chunk j
    m_end = log_w.amax(-1)
    m_end = torch.where(from_start, torch.maximum(carried, m_end), m_end).detach()
    ends = torch.exp(log_w - m_end.unsqueeze(-1)) @ local_states.reshape(batch, heads, chunks, d * e)
    zero = torch.zeros((), dtype=c0.dtype, device=c0.device)
    ends = ends.reshape(local_states.shape) + _exp_masked(carried - m_end, from_start)[..., None, None] * torch.where(
        from_start[..., None, None], c0.unsqueeze(2), zero
    )
    entering = torch.cat([c0.unsqueeze(2), ends[:, :, :-1]], dim=2)
    entering_m = torch.cat([m0.unsqueeze(-1), m_end[..., :-1]], dim=-1)
    return entering, entering_m, ends[:, :, -1], m_end[..., -1]


def mlstm_chunked(
    q: Tensor, k: Tensor, v: Tensor, log_f: Tensor, log_i: Tensor, c0: Tensor, m0: Tensor,
    starts: Tensor | None, chunk: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The stabilised mLSTM over a sequence, chunk by chunk, with resets.

    Args:
        q, k: (T, B, heads, d); v: (T, B, heads, e) (the last value column is the constant 1 of ``n``).
        log_f, log_i: (T, B, heads) log forget gates (<= 0) and input-gate pre-activations.
        c0: (B, heads, d, e) stabilised memory ``[C | n]ᵀ`` before step 0; m0: (B, heads) its stabiliser.
            Both already zeroed where step 0 starts an episode.
        starts: (T, B) bool or None.
        chunk: steps per chunk.
    Returns:
        out (T, B, heads, e): ``[C | n]ᵀ q`` at every step in the stabiliser ``m_t``; m (T, B, heads);
        and the state after the last step: memory (B, heads, d, e) and stabiliser (B, heads).
    """
    steps, batch, heads, _ = q.shape
    length = min(chunk, steps)
    chunks = -(-steps // length)
    pad = chunks * length - steps
    if pad:  # trailing steps that keep the state: forget gate 1 (log 0), input gate 0 (log -inf)
        q, k, v = (F.pad(t, (0, 0, 0, 0, 0, 0, 0, pad)) for t in (q, k, v))
        log_f = F.pad(log_f, (0, 0, 0, 0, 0, pad))
        log_i = F.pad(log_i, (0, 0, 0, 0, 0, pad), value=float("-inf"))
        if starts is not None:
            starts = F.pad(starts, (0, 0, 0, pad))

    def chunked(t: Tensor) -> Tensor:  # (T', B, heads, ...) → (B, heads, chunks, L, ...)
        return t.movedim(0, 2).reshape(batch, heads, chunks, length, *t.shape[3:])

    q, k, v, log_f, log_i = chunked(q), chunked(k), chunked(v), chunked(log_f), chunked(log_i)
    live, clean = episode_masks(starts, batch, chunks, length, q.device)
    clean = clean.unsqueeze(1)  # broadcast over heads
    # the mask as an additive 0 / -inf term (built once, shared by the heads): adding is several
    # times cheaper than torch.where on CPU
    if starts is None:
        live = live[0, 0]  # causal (L, L)
    blocked = torch.zeros(live.shape, dtype=q.dtype, device=q.device).masked_fill_(~live, float("-inf"))
    blocked = blocked if starts is None else blocked.unsqueeze(1)

    cum = log_f.cumsum(-1)  # F_t (B, heads, chunks, L)
    decay = (cum.unsqueeze(-1) - cum.unsqueeze(-2)) + (log_i.unsqueeze(-2) + blocked)  # (.., t, s)
    # the stabiliser's extra term at an episode start: the recurrence's log f + m with m reset to 0
    if starts is None:
        decay_m = decay
    else:
        is_start = starts.transpose(0, 1).reshape(batch, 1, chunks, length)
        reset_term = torch.where(is_start, (log_f - log_i).clamp_min(0.0), torch.zeros((), dtype=q.dtype, device=q.device))
        decay_m = decay + reset_term.unsqueeze(-2)
    local_max = decay_m.amax(-1).detach()  # (B, heads, chunks, L): max over steps s of the chunk

    # each chunk's write into its end state, in its own stabiliser local_max[..., -1]
    end_weights = torch.exp(decay[..., -1, :] - local_max[..., -1:])  # (B, heads, chunks, L)
    local_states = (k * end_weights.unsqueeze(-1)).transpose(-1, -2) @ v  # (B, heads, chunks, d, e)
    entering_states, entering_m, state, m_state = _chain_chunks(
        local_states, local_max[..., -1], cum[..., -1], clean[..., -1], c0, m0
    )
    entering_m_t = entering_m.unsqueeze(-1)  # (B, heads, chunks, 1)

    carried = cum + entering_m_t  # the entering state's log weight at step t
    m = torch.where(clean, torch.maximum(carried, local_max), local_max).detach()  # (B, heads, chunks, L)
    weights = torch.exp(decay - m.unsqueeze(-1))  # masked entries: exp(-inf) = 0
    out = ((q @ k.transpose(-1, -2)) * weights) @ v
    from_entering = q @ entering_states
    if starts is not None:  # selection: a non-finite entering state must not leak past a start
        from_entering = torch.where(clean.unsqueeze(-1), from_entering, torch.zeros((), dtype=q.dtype, device=q.device))
    out = out + _exp_masked(carried - m, clean).unsqueeze(-1) * from_entering
    out = out.reshape(batch, heads, chunks * length, -1)[:, :, :steps].permute(2, 0, 1, 3)
    m = m.reshape(batch, heads, chunks * length)[:, :, :steps].permute(2, 0, 1)
    return out, m, state, m_state


class MlstmLayer(ScanLayer):
    """One mLSTM layer: (T, B, input_size) → (T, B, hidden_size); state ``[C | n]`` (B, heads, d, d + 1),
    ``m`` (B, heads) and the convolution's last inputs, flat."""

    def __init__(
        self, input_size: int, hidden_size: int, head_dim: int | None = None, chunk: int = 16, conv_kernel: int = 4
    ) -> None:
        super().__init__()
        head_dim = int(head_dim or min(16, hidden_size))
        if head_dim < 1 or hidden_size % head_dim or chunk < 1:
            raise TorsoError(
                f"mlstm needs hidden_size ({hidden_size}) divisible by head_dim ({head_dim}) and chunk >= 1 "
                f"(got {chunk}); pass head_dim=... that divides the width"
            )
        heads = hidden_size // head_dim
        self.heads, self.head_dim, self.hidden_size, self.chunk = heads, head_dim, hidden_size, chunk
        self.memory_size = hidden_size * (head_dim + 1)
        self.conv = CausalConv(2 * hidden_size, conv_kernel)  # over [q | k], then SiLU (xLSTM's conv4 + swish)
        self.state_size = self.memory_size + heads + self.conv.state_size
        # one projection for q, k, v, the output gate and the two exponential/forget gates (one matmul
        # instead of three); bias only on the gates (q, k, v carry none in the paper)
        self.proj = nn.Linear(input_size, 4 * hidden_size + 2 * heads, bias=False)
        self.gate_bias = nn.Parameter(torch.zeros(hidden_size + 2 * heads))  # [o, ĩ, f̃]
        with torch.no_grad():
            self.proj.weight[4 * hidden_size :].zero_()  # ĩ and f̃ start input-independent
            self.gate_bias[hidden_size : hidden_size + heads].normal_(0.0, 0.1)
            self.gate_bias[hidden_size + heads :] = torch.linspace(3.0, 6.0, heads) if heads > 1 else torch.tensor([3.0])
        self.norm_weight = nn.Parameter(torch.ones(hidden_size))
        self.skip = nn.Parameter(torch.ones(hidden_size))  # xLSTM's learnable skip of the convolved branch

    def project(
        self, x: Tensor, conv_history: Tensor, starts: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(T, B, input_size) → q, k / sqrt(d), [v, 1] (T, B, heads, d or d + 1), the output gate's
        pre-activation (T, B, H), ĩ and f̃ (T, B, heads), the convolved query branch (T, B, H) and the
        convolution's new history."""
        lead, heads, d, width = x.shape[:-1], self.heads, self.head_dim, self.hidden_size
        qk, v, gates = self.proj(x).split([2 * width, width, width + 2 * heads], dim=-1)
        qk, conv_history = self.conv(qk, conv_history, starts)
        qk = F.silu(qk)
        q, k = qk.reshape(*lead, 2, heads, d).unbind(-3)
        v = torch.cat([v.reshape(*lead, heads, d), torch.ones_like(v[..., :heads, None])], dim=-1)  # n's column
        o_pre, i_pre, f_pre = (gates + self.gate_bias).split([width, heads, heads], dim=-1)
        return q, k / d**0.5, v, o_pre, i_pre, f_pre, qk[..., :width], conv_history

    def forward(self, x: Tensor, h0: Tensor, starts: Tensor | None) -> tuple[Tensor, Tensor]:
        steps, batch, _ = x.shape
        heads, d = self.heads, self.head_dim
        h0, m0, conv_history = h0.split([self.memory_size, heads, self.conv.state_size], dim=1)
        q, k, v, o_pre, log_i, f_pre, q_branch, conv_history = self.project(x, conv_history, starts)
        log_f = F.logsigmoid(f_pre)
        c0 = h0.reshape(batch, heads, d, d + 1)
        if starts is not None:  # by selection: a NaN in a finished episode's state does not survive
            zero = torch.zeros((), dtype=h0.dtype, device=h0.device)
            c0 = torch.where(starts[0].reshape(batch, 1, 1, 1), zero, c0)
            m0 = torch.where(starts[0].reshape(batch, 1), zero, m0)
            if not bool(starts[1:].any()):  # the zeroed state is the whole reset: the kernel needs no masks
                starts = None
        if steps == 1:  # a rollout step: the recurrence itself
            m_state = torch.maximum(log_f[0] + m0, log_i[0]).detach()
            state = (
                torch.exp(log_f[0] + m0 - m_state)[..., None, None] * c0
                + torch.exp(log_i[0] - m_state)[..., None, None] * (k[0].unsqueeze(-1) * v[0].unsqueeze(-2))
            )
            out = (q[0].unsqueeze(-2) @ state).squeeze(-2).unsqueeze(0)  # (1, B, heads, d + 1)
            m = m_state.unsqueeze(0)
        else:
            out, m, state, m_state = mlstm_chunked(q, k, v, log_f, log_i, c0, m0, starts, self.chunk)
        floor = torch.exp((-m).clamp_max(MAX_NEG_STABILISER)).unsqueeze(-1)
        h = out[..., :d] / torch.maximum(out[..., d:].abs(), floor)  # (T, B, heads, d)
        h = F.layer_norm(h, (d,)).reshape(steps, batch, self.hidden_size) * self.norm_weight  # per-head norm
        y = torch.sigmoid(o_pre) * (h + self.skip * q_branch)
        return y, torch.cat([state.reshape(batch, self.memory_size), m_state, conv_history], dim=1)


class MlstmTorso(ScanTorso):
    """``num_layers`` mLSTM layers of width ``hidden_size``; options ``head_dim``, ``chunk``, ``conv_kernel``
    (see the module docstring). Flat state: ``[C | n]``, ``m`` and the convolution's history of every layer."""

    # Heads of the matrix memory (width 64 over head_dim) and the short convolution's window.
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "head_dim": {"type": "categorical", "choices": [8, 16, 32]},
        "conv_kernel": {"type": "categorical", "choices": [2, 4, 8]},
    }

    layer_options = ("head_dim", "chunk", "conv_kernel")

    def make_layer(self, input_size: int, hidden_size: int, **layer_kwargs: Any) -> ScanLayer:
        return MlstmLayer(input_size, hidden_size, **layer_kwargs)
