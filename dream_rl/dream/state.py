"""The recurrent state of a DREAM cell, and its flat per-sample encoding for rollout storage."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dream_rl.dream.config import DREAMConfig
from dream_rl.errors import DREAMError

__all__ = ["DREAMState"]

#: the state fields, in order, and the layout of each (``B`` batch, ``H`` hidden, ``r`` rank, ``I`` input)
FIELD_NAMES = ("h", "U", "U_target", "adaptive_tau", "error_mean", "error_var", "avg_surprise")
_LAYOUTS = ("(batch, hidden_dim)", "(batch, hidden_dim, rank)", "(batch, hidden_dim, rank)", "(batch,)",
            "(batch, input_dim)", "(batch, input_dim)", "(batch,)")


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
    ``[h, U, U_target, adaptive_tau - base_threshold, error_mean, error_var - 1, avg_surprise, tag]``.
    The offsets make the all-zeros vector decode to exactly the initial state, which is what
    sb3-contrib's RecurrentPPO assumes of any recurrent state. ``tag`` is 0 in an all-zeros row and
    otherwise :meth:`layout_tag` of the config that wrote it, a small integer computed from
    ``(input_dim, hidden_dim, rank)``: :meth:`from_flat` refuses a row written by a config of another
    shape whose flat length happens to be the same (a shape collision of the tag, 1 in 2047, goes
    unnoticed). Reset by selection
    (``torch.where(start, 0, flat)``, or :meth:`reset`), not by ``(1 - start) * flat``: the product
    keeps NaN and inf (``0 · NaN = NaN``), so one bad value would outlive every episode start.
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

    @staticmethod
    def expected_shapes(config: DREAMConfig, batch_size: int) -> tuple[tuple[int, ...], ...]:
        """The shape of each field (in :data:`FIELD_NAMES` order) for ``config`` and ``batch_size``."""
        B, H, r, I = batch_size, config.hidden_dim, config.rank, config.input_dim
        return (B, H), (B, H, r), (B, H, r), (B,), (B, I), (B, I), (B,)

    def validate(
        self,
        config: DREAMConfig,
        batch_size: int,
        dtype: torch.dtype | None = None,
        device: torch.device | None = None,
        owner: str = "the cell",
    ) -> None:
        """Raise :class:`DREAMError` unless every field is a tensor of the shape ``config`` and
        ``batch_size`` give it, and (when given) of ``dtype`` and on ``device``.

        The message names the first bad field and its expected shape. Kernels that read raw buffers
        rely on this check: a state built for another ``rank`` or ``input_dim`` would otherwise be
        read out of bounds.
        """
        shapes = self.expected_shapes(config, batch_size)
        for name, shape, layout in zip(FIELD_NAMES, shapes, _LAYOUTS):
            t = getattr(self, name)
            if not isinstance(t, Tensor):
                raise DREAMError(f"state.{name} must be a tensor of shape {shape} {layout}, got {type(t).__name__}")
            if t.shape != shape:
                raise DREAMError(
                    f"state.{name} has shape {tuple(t.shape)} but {owner} (input_dim={config.input_dim}, "
                    f"hidden_dim={config.hidden_dim}, rank={config.rank}) needs {shape} {layout} for a batch of "
                    f"{batch_size}; a state built for another config or batch cannot be used: start from "
                    f"init_state({batch_size})"
                )
            if dtype is not None and t.dtype != dtype:
                raise DREAMError(
                    f"state.{name} has dtype {t.dtype} but {owner} computes in {dtype}; "
                    f"convert the state with state.to({dtype})"
                )
            if device is not None and t.device != device:
                raise DREAMError(
                    f"state.{name} is on device {t.device} but {owner} is on {device}; "
                    f"move the state with state.to({str(device)!r})"
                )

    # ------------------------------------------------------------------ per-sample reset
    def reset(self, mask: Tensor, config: DREAMConfig) -> DREAMState:
        """Samples where ``mask`` (shape (B,), bool or 0/1) is set go back to the initial state;
        the others are returned untouched (bit for bit).

        The reset selects (``torch.where``) rather than multiplies, so it is exact even for a state
        holding NaN or inf."""
        mask = torch.as_tensor(mask).reshape(-1).to(device=self.h.device, dtype=torch.bool)
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
        """Floats per sample in the flat encoding: ``H + 2·H·r + 2·I + 3``."""
        H, r, I = config.hidden_dim, config.rank, config.input_dim
        return H + 2 * H * r + 2 * I + 3

    @staticmethod
    def layout_tag(config: DREAMConfig) -> int:
        """The flat encoding's tag of ``config``'s shape: an integer in [1, 2047] (exact in float16)."""
        I, H, r = config.input_dim, config.hidden_dim, config.rank
        return 1 + (I * 1_000_003 + H * 10_007 + r * 101) % 2047

    def to_flat(self, config: DREAMConfig) -> Tensor:
        """Encode as a (B, flat_size) tensor that is all zeros exactly at the initial state."""
        if not isinstance(self.h, Tensor) or self.h.dim() < 1:
            raise DREAMError(f"state.h must be a (batch, hidden_dim) tensor, got {type(self.h).__name__}")
        B = self.batch_size
        # a state from another config would be silently mis-packed
        self.validate(config, B, self.h.dtype, self.h.device, owner="to_flat")
        body = torch.cat(
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
        )  # (B, flat_size - 1)
        written = body.ne(0).any(dim=1, keepdim=True)  # (B, 1): the initial state stays all zeros
        tag = torch.where(written, float(self.layout_tag(config)), 0.0).to(body.dtype)
        return torch.cat([body, tag], dim=1)

    @classmethod
    def from_flat(cls, flat: Tensor, config: DREAMConfig) -> DREAMState:
        """Decode a (B, flat_size) tensor written by :meth:`to_flat` (zeros → initial state).

        ``flat`` may also be a numpy array (as stored by a rollout buffer); it is wrapped without a
        copy, keeping its dtype. The fields are views of ``flat``."""
        expected = cls.flat_size(config)
        if isinstance(flat, np.ndarray):
            if flat.dtype.kind != "f":
                raise DREAMError(f"a flat DREAM state must hold floats, got a numpy array of {flat.dtype}")
            flat = torch.from_numpy(flat)
        if not isinstance(flat, Tensor):
            raise DREAMError(f"a flat DREAM state must be a tensor or numpy array, got {type(flat).__name__}")
        if not flat.dtype.is_floating_point:
            raise DREAMError(f"a flat DREAM state must hold floats, got a tensor of {flat.dtype}")
        if flat.dim() != 2 or flat.shape[1] != expected:
            raise DREAMError(
                f"flat DREAM state must have shape (batch, {expected}) for input_dim={config.input_dim}, "
                f"hidden_dim={config.hidden_dim}, rank={config.rank}; got {tuple(flat.shape)}"
            )
        B, H, r, I = flat.shape[0], config.hidden_dim, config.rank, config.input_dim
        h, U, U_target, tau, error_mean, error_var, surprise, tag = torch.split(
            flat, [H, H * r, H * r, 1, I, I, 1, 1], dim=1
        )
        if bool(((tag != 0) & (tag != cls.layout_tag(config)) & tag.isfinite()).any()):  # NaN: nothing to check
            raise DREAMError(
                f"this flat DREAM state was written by a DREAM of another shape than input_dim={I}, "
                f"hidden_dim={H}, rank={r} (its layout tag differs); start from zeros (the initial state) "
                "or decode it with the config that wrote it"
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
