"""The shared machinery of the linear-recurrence torsos: a resettable prefix scan and a layer stack.

Every model of this family has a state that evolves as ``h_t = a_t * h_{t-1} + b_t``, with ``a_t``
and ``b_t`` computed from the input alone (real or complex; scalars, vectors or matrices per sample,
multiplied elementwise with broadcasting). Pairs compose associatively,
``(a1, b1) then (a2, b2) = (a1 * a2, a2 * b1 + b2)``, so a whole training sequence is a prefix scan
(here chunked: ``~sqrt(T)`` steps inside chunks, all chunks at once, then across chunks) instead of
``T`` dependent steps. An episode start before step ``t`` sets
``a_t = 0``: with zeros as the initial state that is an exact reset, folded into the scan.

The scan multiplies decays but never divides by running products, so it neither overflows nor loses
precision over long sequences (every ``|a| <= 1`` keeps every product bounded). It runs as a chunked
scan with a hand-written backward (the reversed recurrence): see :func:`_scan_values` for the
measured choice, and ``scripts/bench_zoo.py`` for scan against step loop.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any

import torch
from torch import Tensor, nn

from dream_rl.errors import TorsoError
from dream_rl.torsos.base import StackedTorso

__all__ = [
    "linear_scan", "linear_scan_sequential", "ScanLayer", "ScanTorso", "CausalConv", "complex_from_flat",
    "flat_from_complex",
]


def _apply_resets(a: Tensor, b: Tensor, h0: Tensor, starts: Tensor | None) -> tuple[Tensor, Tensor]:
    """Zero ``h0`` where step 0 starts an episode, and the decays where a later step does.

    ``h0`` is reset by selection, so a NaN in a finished episode's state does not survive. The decays
    are multiplied by a 0/1 mask instead: they come from the current input (finite wherever the
    output is), and on CPU ``torch.where`` over a (T, B, ...) tensor measured 20x slower than a
    multiplication. Inside a RecurrentPPO training sequence episodes start only at step 0, so the
    decays are usually left as they are (and keep a broadcast shape).
    """
    if starts is None:
        return a, h0
    mask = starts.reshape(*starts.shape, *([1] * (b.dim() - 2)))  # (T, B, 1, ...)
    h0 = torch.where(mask[0], torch.zeros((), dtype=h0.dtype, device=h0.device), h0)
    if starts.shape[0] > 1 and bool(starts[1:].any()):
        a = a * (~mask).to(a.real.dtype if a.is_complex() else a.dtype)
    return a, h0


# Below this length the plain step loop is the cheaper forward (fewer torch calls than the chunked scan).
SEQUENTIAL_MAX_STEPS = 8


def _scan_values(a: Tensor, b: Tensor, h0: Tensor, reverse: bool = False) -> Tensor:
    """``h_t = a_t h_{t-1} + b_t`` from ``h_{-1} = h0`` (``reverse``: ``h_t = a_t h_{t+1} + b_t`` from
    ``h_T = h0``), without autograd: the kernel of :class:`_LinearScan`.

    Short sequences run step by step. Longer ones are cut into ``C`` chunks of ``L ~ sqrt(T/2)``
    steps: all chunks advance together through their ``L`` positions (from zero, keeping the running
    product of their decays), then the chunks are chained in order, each adding ``prod * carry`` to
    its states. That is ``2L + C`` torch calls and O(T) work, against ``log2 T`` calls of O(T log T)
    work for a Hillis-Steele scan, which measured slower at RL sizes (B*H >= 4096).
    """
    steps = b.shape[0]
    if steps <= SEQUENTIAL_MAX_STEPS:
        out = torch.empty_like(b)
        prev = h0
        for t in range(steps - 1, -1, -1) if reverse else range(steps):
            torch.addcmul(b[t], a[t], prev, out=out[t])
            prev = out[t]
        return out
    length = max(2, round(math.sqrt(steps / 2)))
    chunks = -(-steps // length)
    pad = chunks * length - steps
    if pad:  # extra steps with a = b = 0 after the last (before the first, in reverse) change nothing
        a_pad, b_pad = a.new_zeros((pad, *a.shape[1:])), b.new_zeros((pad, *b.shape[1:]))
        a = torch.cat([a_pad, a] if reverse else [a, a_pad])
        b = torch.cat([b_pad, b] if reverse else [b, b_pad])
    a = a.reshape(chunks, length, *a.shape[1:])
    b = b.reshape(chunks, length, *b.shape[1:])
    h = torch.empty_like(b)
    prod = torch.empty_like(a)
    first, step = (length - 1, -1) if reverse else (0, 1)
    h[:, first] = b[:, first]
    prod[:, first] = a[:, first]
    for pos in range(first + step, first + step * length, step):
        torch.addcmul(b[:, pos], a[:, pos], h[:, pos - step], out=h[:, pos])
        torch.mul(a[:, pos], prod[:, pos - step], out=prod[:, pos])
    carry = h0
    for chunk in range(chunks - 1, -1, -1) if reverse else range(chunks):
        h[chunk].addcmul_(prod[chunk], carry)
        carry = h[chunk, length - 1 - first]
    h = h.reshape(chunks * length, *b.shape[2:])
    return h[pad:] if reverse else h[:steps]


class _LinearScan(torch.autograd.Function):
    """The scan with a hand-written backward: the adjoint of a linear recurrence is the same
    recurrence run backwards, ``g_t = dL/dh_t + conj(a_{t+1}) g_{t+1}``, and then
    ``dL/db_t = g_t``, ``dL/da_t = g_t conj(h_{t-1})``, ``dL/dh0 = conj(a_0) g_0`` (torch's
    convention for complex gradients). Two scans instead of an autograd graph of hundreds of ops."""

    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor, h0: Tensor) -> Tensor:  # type: ignore[override]
        h = _scan_values(a, b, h0)
        ctx.save_for_backward(a, h, h0)
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_h: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:  # type: ignore[override]
        a, h, h0 = ctx.saved_tensors
        # g_t = dL/dh_t + conj(a_{t+1}) g_{t+1}: the reversed recurrence, with the decays shifted by one
        a_next = torch.cat([a[1:], torch.zeros_like(a[:1])]).conj()
        grad_b = _scan_values(a_next, grad_h, torch.zeros_like(grad_h[0]), reverse=True)
        grad_a = grad_h0 = None
        if ctx.needs_input_grad[0]:
            grad_a = torch.empty_like(grad_b)
            torch.mul(grad_b[1:], h[:-1].conj(), out=grad_a[1:])
            torch.mul(grad_b[0], h0.conj(), out=grad_a[0])
            grad_a = grad_a.sum_to_size(a.shape)
        if ctx.needs_input_grad[2]:
            grad_h0 = (grad_b[0] * a[0].conj()).sum_to_size(h0.shape)
        return grad_a, grad_b, grad_h0


def linear_scan(a: Tensor, b: Tensor, h0: Tensor, starts: Tensor | None = None) -> Tensor:
    """All states of ``h_t = a_t * h_{t-1} + b_t`` (``h_{-1} = h0``) by a chunked scan.

    Args:
        a: (T, B, ...) decays, broadcastable to ``b`` (e.g. (T, B, heads, 1, 1) against (T, B, heads, d, d)).
        b: (T, B, ...) inputs.
        h0: (B, ...) the state before step 0, shaped like ``b[0]``.
        starts: (T, B) bool, True where an episode starts before step t (the state is reset); None: no resets.
    Returns:
        h: (T, B, ...), the state after every step.

    ``a``, ``b`` and ``h0`` share one dtype (real or complex). Gradients flow to all three.
    """
    a, h0 = _apply_resets(a, b, h0, starts)
    if b.shape[0] == 1:  # a rollout step: the recurrence itself
        return (a[0] * h0 + b[0]).unsqueeze(0)
    if a.shape[0] != b.shape[0]:
        a = a.expand(b.shape[0], *a.shape[1:])
    return _LinearScan.apply(a, b, h0)


def linear_scan_sequential(a: Tensor, b: Tensor, h0: Tensor, starts: Tensor | None = None) -> Tensor:
    """The same recurrence one step at a time under autograd: the reference the scan is tested
    (and benchmarked) against."""
    a, h = _apply_resets(a, b, h0, starts)
    states = []
    for t in range(b.shape[0]):
        h = a[t if a.shape[0] > 1 else 0] * h + b[t]
        states.append(h)
    return torch.stack(states)


class ScanLayer(nn.Module):
    """One layer of a scan torso: ``(x (T, B, in), h0 (B, state_size), starts (T, B) bool | None)``
    → ``(y (T, B, out), h_last (B, state_size))``, with the flat state all zeros at the initial state."""

    state_size: int

    @abstractmethod
    def forward(self, x: Tensor, h0: Tensor, starts: Tensor | None) -> tuple[Tensor, Tensor]: ...


class ScanTorso(StackedTorso):
    """``num_layers`` :class:`ScanLayer` s of width ``hidden_size``, each feeding the next.

    Resets are folded into every layer's scan, so a training sequence is one call per layer even
    when episodes start inside it. The flat state concatenates the layers' states. ``dropout``
    applies to the outputs of every layer but the last, as in ``nn.LSTM`` (RecurrentPPO passes it
    through ``lstm_kwargs``). Subclasses implement :meth:`make_layer`.
    """

    # The model options make_layer accepts; when set, any other keyword is a TorsoError naming them.
    layer_options: tuple[str, ...] | None = None

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0, **layer_kwargs: Any
    ) -> None:
        if self.layer_options is not None:
            unknown = sorted(set(layer_kwargs) - set(self.layer_options))
            if unknown:
                raise TorsoError(
                    f"{type(self).__name__} got unknown options {unknown}; its options are "
                    f"{[*self.layer_options, 'dropout']}"
                )
        super().__init__(
            input_size, hidden_size, num_layers, dropout,
            lambda width: self.make_layer(width, int(hidden_size), **layer_kwargs),
        )  # fmt: skip

    @abstractmethod
    def make_layer(self, input_size: int, hidden_size: int, **layer_kwargs: Any) -> ScanLayer:
        """One layer mapping ``input_size`` features to ``hidden_size`` outputs."""

    def run(self, features: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        return self.run_layers(features, state, None)

    def run_with_resets(self, features: Tensor, state: Tensor, starts: Tensor) -> tuple[Tensor, Tensor]:
        return self.run_layers(features, state, starts)


def complex_from_flat(flat: Tensor, *shape: int) -> Tensor:
    """A complex state from its flat real form: (B, 2·prod(shape)) → (B, *shape) complex, real and
    imaginary parts interleaved (zeros stay zeros)."""
    return torch.view_as_complex(flat.reshape(flat.shape[0], *shape, 2).contiguous())


def flat_from_complex(state: Tensor) -> Tensor:
    """The inverse of :func:`complex_from_flat`: (B, *shape) complex → (B, 2·prod(shape)) real."""
    return torch.view_as_real(state).reshape(state.shape[0], -1)


class _DepthwiseCausalConv(torch.autograd.Function):
    """``y_t = bias + Σ_l weight[l] ⊙ full[K-1+t-l]`` over a sequence with no episode start after step 0,
    with a hand-written backward: one in-place multiply-add per lag each way instead of an autograd
    graph of slices, products and sums (measured about 2x faster at (T, B, C) = (128, 8, 128))."""

    @staticmethod
    def forward(ctx: Any, full: Tensor, weight: Tensor, bias: Tensor) -> Tensor:  # type: ignore[override]
        lags = weight.shape[0] - 1
        steps = full.shape[0] - lags
        y = torch.addcmul(bias, full[lags:], weight[0])
        for lag in range(1, lags + 1):
            y.addcmul_(full[lags - lag : lags - lag + steps], weight[lag])
        ctx.save_for_backward(full, weight)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        full, weight = ctx.saved_tensors
        lags = weight.shape[0] - 1
        steps = full.shape[0] - lags
        grad_full = torch.zeros_like(full)
        grad_weight = torch.empty_like(weight)
        flat_grad = grad_y.reshape(-1, grad_y.shape[-1])  # (T·B, C)
        for lag in range(lags + 1):
            window = full[lags - lag : lags - lag + steps]
            grad_full[lags - lag : lags - lag + steps].addcmul_(grad_y, weight[lag])
            grad_weight[lag] = (window.reshape(-1, window.shape[-1]) * flat_grad).sum(0)
        return grad_full, grad_weight, flat_grad.sum(0)


class CausalConv(nn.Module):
    """A depthwise causal convolution over time whose last ``kernel_size - 1`` inputs are carried in
    the flat state, so a sequence call equals the step calls (Mamba's and xLSTM's short convolution)::

        y_t = bias + Σ_{l=0}^{K-1} w_l ⊙ x_{t-l}        x_{t-l} = 0 across an episode start

    The state holds the inputs of the last ``K - 1`` steps, oldest first: (B, (K-1)·channels), all
    zeros at an episode start. A lag that crosses a start is dropped by selection, so a NaN from a
    finished episode does not leak. Initialisation: ``nn.Conv1d``'s for a depthwise kernel
    (uniform in ``±1/sqrt(K)``, the fan-in of one channel).
    """

    def __init__(self, channels: int, kernel_size: int = 4) -> None:
        super().__init__()
        if kernel_size < 1:
            raise TorsoError(f"the causal convolution needs kernel_size >= 1, got {kernel_size}")
        self.channels, self.kernel_size = int(channels), int(kernel_size)
        self.state_size = (self.kernel_size - 1) * self.channels
        bound = 1.0 / math.sqrt(self.kernel_size)
        self.weight = nn.Parameter(torch.empty(self.kernel_size, self.channels).uniform_(-bound, bound))  # w_l = weight[l]
        self.bias = nn.Parameter(torch.empty(self.channels).uniform_(-bound, bound))

    def forward(self, x: Tensor, history: Tensor, starts: Tensor | None) -> tuple[Tensor, Tensor]:
        """``x`` (T, B, channels), ``history`` (B, state_size), ``starts`` (T, B) bool or None →
        ``y`` (T, B, channels) and the new history (B, state_size)."""
        steps, batch, channels = x.shape
        lags = self.kernel_size - 1
        if lags == 0:
            return x * self.weight[0] + self.bias, history
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        past = history.reshape(batch, lags, channels).transpose(0, 1)  # (K-1, B, C), oldest first
        if starts is not None:
            past = torch.where(starts[0].reshape(1, batch, 1), zero, past)
        full = torch.cat([past, x])  # (K-1+T, B, C): full[lags + t] = x_t
        new_past = full[-lags:]  # the inputs of the last K-1 steps
        if starts is None or steps == 1 or not bool(starts[1:].any()):  # no lag crosses a start
            y = _DepthwiseCausalConv.apply(full, self.weight, self.bias)
        else:
            # counts[p] = number of starts at sequence positions <= p - lags (full's coordinates), so a
            # start in (t-l, t] separates x_{t-l} from step t iff counts[lags+t] > counts[lags+t-l]
            counts = torch.cat([starts.new_zeros(lags, batch, dtype=torch.long), starts.long().cumsum(0)])
            # the fast path's operations in its order, so a sample without a start gets the same bits
            y = torch.addcmul(self.bias, x, self.weight[0])
            for lag in range(1, lags + 1):
                shifted = full[lags - lag : lags - lag + steps]  # x_{t-lag}, (T, B, C)
                cut = counts[lags : lags + steps] > counts[lags - lag : lags - lag + steps]  # (T, B)
                y = y.addcmul_(torch.where(cut.unsqueeze(-1), zero, shifted), self.weight[lag])
            # drop the kept inputs from before the sequence's last start
            cut = counts[-1] > counts[-lags:]  # a start after the entry's step, (K-1, B)
            new_past = torch.where(cut.unsqueeze(-1), zero, new_past)
        return y, new_past.transpose(0, 1).reshape(batch, lags * channels)
