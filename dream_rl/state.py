"""The recurrent state of a DREAM cell, and its flat per-sample encoding for rollout storage."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from dream_rl.config import DREAMConfig
from dream_rl.errors import DREAMError

__all__ = ["DREAMState"]


@dataclass
class DREAMState:
    """State container for a DREAM cell. The batch axis is always kept, even at batch size 1.

    Fields (``B`` batch, ``H`` hidden_dim, ``r`` rank, ``I`` input_dim):
        h: (B, H) hidden state.
        U: (B, H, r) fast weights.
        U_target: (B, H, r) consolidated fast-weight target.
        adaptive_tau: (B,) habituated surprise threshold.
        error_mean: (B, I) running mean of the prediction error.
        error_var: (B, I) running variance of the prediction error.
        avg_surprise: (B,) running average surprise.

    The flat encoding (:meth:`to_flat` / :meth:`from_flat`) stores one vector of
    :meth:`flat_size` floats per sample, laid out as
    ``[h, U, U_target, adaptive_tau - base_threshold, error_mean, error_var - 1, avg_surprise]``.
    The offsets make the all-zeros vector decode to exactly the initial state, which is what
    sb3-contrib's RecurrentPPO assumes of any recurrent state, and make ``(1 - start) * flat``
    an exact per-sample reset.
    """

    h: Tensor
    U: Tensor
    U_target: Tensor
    adaptive_tau: Tensor
    error_mean: Tensor
    error_var: Tensor
    avg_surprise: Tensor

    # ------------------------------------------------------------------ construction
    @classmethod
    def initial(
        cls,
        batch_size: int,
        config: DREAMConfig,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> DREAMState:
        """The initial state: ``h = U = U_target = 0``, ``adaptive_tau = base_threshold``,
        ``error_mean = 0``, ``error_var = 1``, ``avg_surprise = 0``."""
        # numbers.Integral admits numpy integers (e.g. a vec-env's num_envs), as DREAMConfig does
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise DREAMError(f"batch_size must be a positive integer, got {batch_size!r}")
        batch_size = int(batch_size)
        dtype = dtype or torch.get_default_dtype()
        B, H, r, I = batch_size, config.hidden_dim, config.rank, config.input_dim
        kw: dict[str, Any] = dict(device=device, dtype=dtype)
        return cls(
            h=torch.zeros(B, H, **kw),
            U=torch.zeros(B, H, r, **kw),
            U_target=torch.zeros(B, H, r, **kw),
            adaptive_tau=torch.full((B,), config.base_threshold, **kw),
            error_mean=torch.zeros(B, I, **kw),
            error_var=torch.ones(B, I, **kw),
            avg_surprise=torch.zeros(B, **kw),
        )

    # ------------------------------------------------------------------ seed API
    def detach(self) -> DREAMState:
        """A copy cut from the autograd graph (truncated BPTT between chunks)."""
        return self._map(Tensor.detach)

    def to(self, *args: Any, **kwargs: Any) -> DREAMState:
        """Move (or cast) every tensor, with the arguments of :meth:`torch.Tensor.to`."""
        return self._map(lambda t: t.to(*args, **kwargs))

    def shape(self) -> dict[str, tuple[int, ...]]:
        """Shapes of all state tensors, e.g. ``{'h': (32, 128), 'U': (32, 128, 8), ...}``."""
        return {f.name: tuple(getattr(self, f.name).shape) for f in fields(self)}

    @property
    def batch_size(self) -> int:
        return self.h.shape[0]

    # ------------------------------------------------------------------ per-sample reset
    def reset(self, mask: Tensor, config: DREAMConfig) -> DREAMState:
        """Samples where ``mask`` (shape (B,), bool or 0/1) is set go back to the initial state;
        the others are returned untouched (bit for bit)."""
        mask = mask.reshape(-1).to(device=self.h.device, dtype=torch.bool)
        if mask.shape[0] != self.batch_size:
            raise DREAMError(f"reset mask has {mask.shape[0]} entries for a batch of {self.batch_size}")
        initial = DREAMState.initial(1, config, self.h.device, self.h.dtype)  # broadcasts over B
        return DREAMState.where(mask, initial, self)

    @staticmethod
    def where(mask: Tensor, if_set: DREAMState, otherwise: DREAMState) -> DREAMState:
        """Per sample, the state ``if_set`` where ``mask`` (B,) is true, else ``otherwise``."""
        mask = mask.reshape(-1).to(torch.bool)

        def pick(a: Tensor, b: Tensor) -> Tensor:
            return torch.where(mask.view(-1, *([1] * (b.dim() - 1))), a, b)

        return DREAMState(*(pick(getattr(if_set, f.name), getattr(otherwise, f.name)) for f in fields(otherwise)))

    # ------------------------------------------------------------------ flat encoding
    @staticmethod
    def flat_size(config: DREAMConfig) -> int:
        """Floats per sample in the flat encoding: ``H + 2·H·r + 2·I + 2``."""
        H, r, I = config.hidden_dim, config.rank, config.input_dim
        return H + 2 * H * r + 2 * I + 2

    def to_flat(self, config: DREAMConfig) -> Tensor:
        """Encode as a (B, flat_size) tensor that is all zeros exactly at the initial state."""
        B = self.batch_size
        H, r, I = config.hidden_dim, config.rank, config.input_dim
        expected = {"h": (B, H), "U": (B, H, r), "U_target": (B, H, r), "adaptive_tau": (B,),
                    "error_mean": (B, I), "error_var": (B, I), "avg_surprise": (B,)}
        if self.shape() != expected:  # a state from another config would be silently mis-packed
            raise DREAMError(
                f"state shapes {self.shape()} do not match input_dim={config.input_dim}, "
                f"hidden_dim={config.hidden_dim}, rank={config.rank} (batch {B})"
            )
        return torch.cat(
            [
                self.h,
                self.U.reshape(B, -1),
                self.U_target.reshape(B, -1),
                (self.adaptive_tau - config.base_threshold).unsqueeze(1),
                self.error_mean,
                self.error_var - 1.0,
                self.avg_surprise.unsqueeze(1),
            ],
            dim=1,
        )

    @classmethod
    def from_flat(cls, flat: Tensor, config: DREAMConfig) -> DREAMState:
        """Decode a (B, flat_size) tensor written by :meth:`to_flat` (zeros → initial state)."""
        expected = cls.flat_size(config)
        if flat.dim() != 2 or flat.shape[1] != expected:
            raise DREAMError(
                f"flat DREAM state must have shape (batch, {expected}) for input_dim={config.input_dim}, "
                f"hidden_dim={config.hidden_dim}, rank={config.rank}; got {tuple(flat.shape)}"
            )
        B, H, r, I = flat.shape[0], config.hidden_dim, config.rank, config.input_dim
        h, U, U_target, tau, error_mean, error_var, surprise = torch.split(
            flat, [H, H * r, H * r, 1, I, I, 1], dim=1
        )
        return cls(
            h=h,
            U=U.reshape(B, H, r),
            U_target=U_target.reshape(B, H, r),
            adaptive_tau=tau.squeeze(1) + config.base_threshold,
            error_mean=error_mean,
            error_var=error_var + 1.0,
            avg_surprise=surprise.squeeze(1),
        )

    # ------------------------------------------------------------------ helpers
    def _map(self, fn: Any) -> DREAMState:
        return DREAMState(*(fn(getattr(self, f.name)) for f in fields(self)))
