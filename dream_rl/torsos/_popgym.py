"""Pieces shared by the POPGym baselines (``mlp``, ``positional_mlp``, ``framestack``, ``tcn``).

POPGym (Morad et al., ICLR 2023) builds its memoryless and windowed baselines from one two-layer
LeakyReLU block (``popgym/baselines/ray_models/ray_mlp.py``); frame stacking and the temporal
convolution read a causal window of past inputs carried in the flat state (:func:`causal_window`); the
option checks give every one of these torsos the same one-line :class:`~dream_rl.errors.TorsoError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from dream_rl.errors import TorsoError

__all__ = ["popgym_core", "reject_unknown_options", "causal_window"]


def popgym_core(input_size: int, hidden_size: int) -> nn.Sequential:
    """POPGym's core: ``Linear → LeakyReLU → Linear → LeakyReLU``, (..., input_size) → (..., hidden_size)."""
    return nn.Sequential(
        nn.Linear(input_size, hidden_size),
        nn.LeakyReLU(),
        nn.Linear(hidden_size, hidden_size),
        nn.LeakyReLU(),
    )


def reject_unknown_options(name: str, options: dict[str, Any], known: Iterable[str]) -> None:
    """Raise :class:`TorsoError` naming the options of torso ``name`` if ``options`` holds any other key."""
    if options:
        raise TorsoError(f"{name} torso got unknown options {sorted(options)}; its options are {sorted(known)}")


def causal_window(x: Tensor, past: Tensor, starts: Tensor | None, k: int, dilation: int = 1) -> tuple[Tensor, Tensor]:
    """The inputs a causal window of ``k`` taps, ``dilation`` steps apart, sees at every step.

    Args:
        x: (T, B, C), this call's inputs.
        past: (B, P·C) with ``P = (k-1)·dilation``: the inputs of the ``P`` steps before this call,
            oldest first; zeros before an episode's first step.
        starts: (T, B) bool, True where step t starts an episode (the window is emptied before it), or None.
    Returns:
        window (T, B, k, C), oldest tap first: ``window[t, b, i] = x[t - (k-1-i)·dilation, b]``, zero
        where that step lies before the episode of step t; and the new ``past`` (B, P·C).

    A tap that crosses an episode start is dropped by selection (``torch.where``), so a NaN from a
    finished episode does not leak into the next.
    """
    steps, batch, channels = x.shape
    lags = (k - 1) * dilation
    if lags == 0:
        return x.unsqueeze(2), past
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    previous = past.reshape(batch, lags, channels).transpose(0, 1)  # (P, B, C), oldest first
    if starts is not None:
        previous = torch.where(starts[0].reshape(1, batch, 1), zero, previous)
    full = torch.cat([previous, x])  # (P + T, B, C): full[P + t] = x_t
    taps = [full[lags - lag : lags - lag + steps] for lag in range(lags, -1, -dilation)]  # oldest first
    new_past = full[-lags:]
    if starts is not None and steps > 1 and bool(starts[1:].any()):
        # counts[q] = number of starts at steps <= q - P (full's coordinates): x_{t-lag} and step t lie
        # in different episodes iff a start falls in (t - lag, t], i.e. counts[P+t] > counts[P+t-lag].
        counts = torch.cat([starts.new_zeros(lags, batch, dtype=torch.long), starts.long().cumsum(0)])
        now = counts[lags : lags + steps]
        taps = [
            torch.where((now > counts[lags - lag : lags - lag + steps]).unsqueeze(-1), zero, tap)
            for lag, tap in zip(range(lags, -1, -dilation), taps)
        ]
        new_past = torch.where((counts[-1] > counts[-lags:]).unsqueeze(-1), zero, new_past)
    return torch.stack(taps, dim=2), new_past.transpose(0, 1).reshape(batch, lags * channels)
