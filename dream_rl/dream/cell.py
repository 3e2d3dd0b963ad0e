"""The DREAM cell: one continuous-time recurrent step with surprise-gated Hebbian fast weights.

The equations are fixed in ``docs/dream-cell.md``; :meth:`DREAMCell.step` follows them line by line
and is the reference every faster path is checked against. Choices made where the note is silent:

- the drive (step 8) reads the fast weights *after* this step's update and homeostasis (``U_new``),
  so a surprising input is written and read in the same step; the prediction (step 1) reads the
  previous ``U``;
- the standardised error is ``z = sqrt(q + 1e-12)`` rather than ``sqrt(q)``, and the entropy uses
  ``mean(error_var) + ε``: both keep gradients finite when ``q`` or the variance is exactly zero
  (zero input from the initial state) and change values by less than float32 resolution;
- the norm in the homeostasis step is floored at 1e-6 for the same reason (its gradient at
  ``U' = 0`` is otherwise 0/0);
- ``R`` is initialised orthogonal with gain 0.5, so the untrained recurrence is contractive;
- with ``ltc_enabled=False`` the monitored time constant is reported as 0 (``h_new = h*`` is the
  ``τ_eff → 0`` limit);
- the ablation switches of :class:`DREAMConfig` (``fast_weights``, ``surprise_gating``,
  ``error_injection``) drop their term from the equations (``S`` becomes the constant 1): a parameter
  that no longer enters (``η``, ``W``) gets no gradient, as ``log τ_sys`` without LTC.

The cell has no mode-dependent behaviour: train and eval mode compute the same function.

Input checks: :meth:`DREAMCell.forward`, :meth:`DREAMCell.forward_sequence` (and ``DREAM.forward``,
``DREAM.forward_with_mask``, ``DREAMStack``) raise :class:`DREAMError` before any kernel runs when

- a state field has the wrong shape, dtype or device for the cell (the message names the field and
  the shape it needs): the C++ kernel reads raw buffers, so such a state must never reach it;
- the input's dtype or device differs from the parameters' (both are named);
- the input holds NaN or inf (the first bad batch index is named): one NaN would otherwise turn that
  sample's ``h``, ``U`` and error statistics to NaN for good. This costs one ``isfinite().all()``
  reduction per call (not per step); it is skipped under ``torch.compile`` and ``torch.func``.

:meth:`DREAMCell.run_time_major`, the per-step entry of the RL torsos, makes the structural checks
only. A NaN already inside a state is not looked for (it can only come from outside the cell).

Stability of the fast weights: the prediction reads ``U``, so the error is ``e ≈ x - V Uᵀh`` and
the Hebbian write (step 6) contains ``-dt·η·S·h hᵀ U``. When ``dt·η·S·‖h‖² > 2`` that term
overshoots and grows, and homeostasis with ``κ < 1`` only removes part of the excess, so ``U`` can
diverge (large ``dt`` with a wide, saturated hidden state). With ``κ = 1`` ``‖U‖_F ≤ target_norm``
after every step and the whole state stays bounded; the RL policies use ``κ = 1`` by default.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from dream_rl.dream.config import DREAMConfig
from dream_rl.dream.kernels.dispatch import run_sequence
from dream_rl.dream.state import DREAMState
from dream_rl.errors import DREAMError

__all__ = ["DREAMCell", "StepInternals"]

EPS = 1e-6
TAU_MIN, TAU_MAX = 0.01, 100.0
_LOG_2PI_E = math.log(2.0 * math.pi * math.e)


class StepInternals(NamedTuple):
    """Per-sample quantities worth monitoring, one value per sample (and per step in sequences).

    surprise: ``S`` in [0, 1].
    tau_eff: effective time constant averaged over hidden units (0 when LTC is disabled).
    fast_weight_norm: ``‖U‖_F`` after the step.
    """

    surprise: Tensor
    tau_eff: Tensor
    fast_weight_norm: Tensor


class DREAMCell(nn.Module):
    """DREAM cell: the core building block, one step at a time (like :class:`torch.nn.GRUCell`).

    Args:
        config: the cell's :class:`DREAMConfig`.

    Parameters (``I`` input_dim, ``H`` hidden_dim, ``r`` rank):
        weight_in (H, I) ``B``, weight_rec (H, H) ``R``, weight_err (H, I) ``W``,
        weight_pred (I, H) ``C``, bias (H,) ``b``, plasticity (H,) ``η``,
        log_tau_sys (H,), log_surprise_scale (1,); buffer sensory_filter (I, r) ``V``, fixed.
    """

    def __init__(self, config: DREAMConfig) -> None:
        super().__init__()
        if not isinstance(config, DREAMConfig):
            raise DREAMError(f"DREAMCell expects a DREAMConfig, got {type(config).__name__}")
        self.config = config
        I, H, r = config.input_dim, config.hidden_dim, config.rank
        self.weight_in = nn.Parameter(torch.empty(H, I))
        self.weight_rec = nn.Parameter(torch.empty(H, H))
        self.weight_err = nn.Parameter(torch.empty(H, I))
        self.weight_pred = nn.Parameter(torch.empty(I, H))
        self.bias = nn.Parameter(torch.empty(H))
        self.plasticity = nn.Parameter(torch.empty(H))
        self.log_tau_sys = nn.Parameter(torch.empty(H))
        self.log_surprise_scale = nn.Parameter(torch.empty(1))
        self.register_buffer("sensory_filter", torch.empty(I, r))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise every parameter (Xavier for the projections, see the module docstring)
        and redraw the fixed sensory filter ``V``."""
        cfg = self.config
        with torch.no_grad():
            nn.init.xavier_uniform_(self.weight_in)
            nn.init.orthogonal_(self.weight_rec, gain=0.5)
            nn.init.xavier_uniform_(self.weight_err)
            nn.init.xavier_uniform_(self.weight_pred)
            self.bias.zero_()
            self.plasticity.fill_(cfg.base_plasticity)
            # log-spaced over [τ_sys / spread, τ_sys · spread] across the units (all τ_sys at spread 1)
            units = self.log_tau_sys.numel()
            offsets = torch.linspace(-1.0, 1.0, units) if units > 1 else torch.zeros(1)
            self.log_tau_sys.copy_(math.log(cfg.ltc_tau_sys) + math.log(cfg.ltc_tau_spread) * offsets)
            self.log_surprise_scale.fill_(math.log(cfg.ltc_surprise_scale))
            # orthonormal columns when r <= I, orthonormal rows otherwise
            nn.init.orthogonal_(self.sensory_filter)

    @property
    def config(self) -> DREAMConfig:
        """The cell's configuration (immutable). It may be replaced by one with the same
        ``input_dim``, ``hidden_dim`` and ``rank`` (``dataclasses.replace(cell.config, kappa=1.0)``):
        the kernels read it on every call; the dimensions are fixed by the weights."""
        return self.__dict__["_config"]

    @config.setter
    def config(self, config: DREAMConfig) -> None:
        if not isinstance(config, DREAMConfig):
            raise DREAMError(f"DREAMCell expects a DREAMConfig, got {type(config).__name__}")
        old = self.__dict__.get("_config")
        if old is not None:
            for name in ("input_dim", "hidden_dim", "rank"):
                if getattr(config, name) != getattr(old, name):
                    raise DREAMError(
                        f"a cell's {name} is fixed by its weights ({getattr(old, name)}); got a config with "
                        f"{name}={getattr(config, name)}: build a new DREAMCell instead"
                    )
        self.__dict__["_config"] = config

    @property
    def input_dim(self) -> int:
        return self.config.input_dim

    @property
    def hidden_dim(self) -> int:
        return self.config.hidden_dim

    def init_state(
        self,
        batch_size: int,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> DREAMState:
        """Initial state for ``batch_size`` samples, on the cell's device and dtype by default."""
        return DREAMState.initial(
            batch_size,
            self.config,
            device=device if device is not None else self.weight_in.device,
            dtype=dtype if dtype is not None else self.weight_in.dtype,
        )

    # ------------------------------------------------------------------ one step
    def forward(self, x: Tensor, state: DREAMState) -> tuple[Tensor, DREAMState]:
        """One time step. ``x``: (B, I) → output (B, H) and the new state.

        Raises :class:`DREAMError` for a state that does not fit the cell (field, shape, dtype,
        device) and for non-finite input (see the module docstring)."""
        self._check_input(x, state, "x", 2)
        h_new, new_state, _ = self.step(x, state)
        return h_new, new_state

    def step(self, x: Tensor, state: DREAMState) -> tuple[Tensor, DREAMState, StepInternals]:
        """The reference step of ``docs/dream-cell.md``, also returning :class:`StepInternals`.

        No input checks here: callers check once per sequence.
        """
        cfg = self.config
        dt = cfg.time_step
        h, U, U_target = state.h, state.U, state.U_target  # (B, H), (B, H, r), (B, H, r)
        V = self.sensory_filter  # (I, r)

        # 1. prediction of the input from the hidden state and the fast weights
        recall = torch.bmm(h.unsqueeze(1), U).squeeze(1)  # Uᵀh: (B, r)
        x_hat = h @ self.weight_pred.T + recall @ V.T  # (B, I)
        e = x - x_hat  # (B, I)

        # 2. novelty: the error standardised against its running statistics
        q = ((e - state.error_mean) ** 2 / (state.error_var + EPS)).mean(dim=1)  # (B,)
        z = torch.sqrt(q + 1e-12)
        novelty = z / (1.0 + z)  # in [0, 1)

        # 3-5. uncertainty raises the habituated threshold; surprise is a soft comparison
        entropy = (0.5 * (_LOG_2PI_E + torch.log(state.error_var.mean(dim=1) + EPS))).clamp(0.0, 2.0)
        threshold = state.adaptive_tau * (1.0 + cfg.entropy_influence * entropy)  # (B,)
        if cfg.surprise_gating:
            S = torch.sigmoid((novelty - threshold) / cfg.surprise_temperature)  # (B,)
        else:  # ablation: every step is fully surprising, a constant (no gradient into the statistics)
            S = torch.ones_like(novelty)

        # 6. surprise-gated Hebbian write, forgetting toward the consolidated target
        if cfg.fast_weights:
            e_filtered = e @ V  # Vᵀe: (B, r)
            gate = self.plasticity.unsqueeze(0) * S.unsqueeze(1)  # (B, H)
            hebbian = (gate * h).unsqueeze(2) * e_filtered.unsqueeze(1)  # (B, H, r)
            U_prime = U + dt * (-cfg.forgetting_rate * (U - U_target) + hebbian)
        else:  # ablation: no Hebbian write, U only relaxes toward U_target
            U_prime = U + dt * (-cfg.forgetting_rate * (U - U_target))

        # 7. homeostasis: shrink toward the target norm, by κ of the way
        norm = (U_prime * U_prime).sum(dim=(1, 2)).clamp_min(EPS * EPS).sqrt()  # (B,)
        rho = cfg.target_norm / norm.clamp_min(cfg.target_norm)  # min(1, target / ‖U'‖)
        U_new = U_prime * (1.0 - cfg.kappa * (1.0 - rho)).view(-1, 1, 1)

        # 8. drive: input, recurrence, surprise-weighted error, fast-weight read-out, bias
        x_filtered = x @ V  # Vᵀx: (B, r)
        drive = x @ self.weight_in.T + h @ self.weight_rec.T
        if cfg.error_injection:
            drive = drive + (S.unsqueeze(1) * e) @ self.weight_err.T
        drive = drive + torch.bmm(U_new, x_filtered.unsqueeze(2)).squeeze(2) + self.bias  # (B, H)
        h_target = torch.tanh(drive)

        # 9. liquid time constant: surprise shortens τ, so novel input is integrated faster
        if cfg.ltc_enabled:
            tau_sys = self.log_tau_sys.exp().unsqueeze(0)  # (1, H)
            scale = self.log_surprise_scale.exp()  # (1,)
            tau_eff = (tau_sys / (1.0 + scale * S.unsqueeze(1))).clamp(TAU_MIN, TAU_MAX)  # (B, H)
            a = dt / (tau_eff + dt)
            h_new = (1.0 - a) * h + a * h_target
            tau_report = tau_eff.mean(dim=1)
        else:
            h_new = h_target
            tau_report = torch.zeros_like(S)

        # 10. running statistics
        beta, beta_s = cfg.error_smoothing, cfg.surprise_smoothing
        deviation = e - state.error_mean
        error_mean = (1.0 - beta) * state.error_mean + beta * e
        error_var = (1.0 - beta) * state.error_var + beta * deviation * deviation
        adaptive_tau = (1.0 - beta) * state.adaptive_tau + beta * novelty
        avg_surprise = (1.0 - beta_s) * state.avg_surprise + beta_s * S

        # 11. sleep: consolidate the fast weights into the target while surprise stays low
        asleep = (avg_surprise < cfg.min_surprise_for_sleep).to(h.dtype).view(-1, 1, 1)
        U_target = U_target + cfg.sleep_rate * asleep * (U_new - U_target)

        new_state = DREAMState(h_new, U_new, U_target, adaptive_tau, error_mean, error_var, avg_surprise)
        internals = StepInternals(S, tau_report, U_new.flatten(1).norm(dim=1))
        return h_new, new_state, internals

    # ------------------------------------------------------------------ sequences
    def forward_sequence(
        self, x_seq: Tensor, state: DREAMState, return_all: bool = True
    ) -> tuple[Tensor, DREAMState]:
        """Run a sequence. ``x_seq``: (B, T, I) → outputs (B, T, H) (or (B, H), the last, when
        ``return_all`` is False) and the final state."""
        self._check_input(x_seq, state, "x_seq", 3)
        outputs, state = self._run_time_major(x_seq.transpose(0, 1), state)  # (T, B, H)
        return (outputs.transpose(0, 1) if return_all else outputs[-1]), state

    #: Sequence implementation used by :meth:`run_time_major`: ``None`` follows the process-wide
    #: default (:func:`dream_rl.dream.kernels.dispatch.set_backend`, ``"auto"`` unless changed), or one of
    #: ``"auto"``, ``"native"``, ``"torch"``, ``"reference"`` for this cell.
    sequence_backend: str | None = None

    def run_time_major(self, x_tbi: Tensor, state: DREAMState) -> tuple[Tensor, DREAMState]:
        """Sequence kernel: ``x_tbi`` (T, B, I) → outputs (T, B, H), final state.

        Runs the fast whole-sequence path of :mod:`dream_rl.dream.kernels.dispatch` (same values and
        gradients as :meth:`reference_run_time_major`, tested to float64 precision). Shapes, dtypes
        and devices of ``x_tbi`` and the state are checked (a few microseconds); the values are not
        (no finiteness reduction: this is the per-step entry of the RL torsos, whose policy checks
        its observations)."""
        self._check_structure(x_tbi, state, "x_tbi", 3, batch_axis=1)
        return self._run_time_major(x_tbi, state)

    def _run_time_major(self, x_tbi: Tensor, state: DREAMState) -> tuple[Tensor, DREAMState]:
        # every caller ran _check_structure(x_tbi, state) just before: the kernel need not repeat it
        return run_sequence(self, x_tbi, state, self.sequence_backend, validated=True)

    def reference_run_time_major(self, x_tbi: Tensor, state: DREAMState) -> tuple[Tensor, DREAMState]:
        """The reference sequence loop: :meth:`step` once per time step, under autograd."""
        outputs = []
        for x_t in x_tbi:
            h, state, _ = self.step(x_t, state)
            outputs.append(h)
        return torch.stack(outputs), state

    def forward_sequence_with_internals(
        self, x_seq: Tensor, state: DREAMState
    ) -> tuple[Tensor, DREAMState, StepInternals]:
        """Like :meth:`forward_sequence` (all steps), also returning the per-step internals, each
        of shape (B, T). For monitoring; runs the reference step."""
        self._check_input(x_seq, state, "x_seq", 3)
        outputs, records = [], []
        for x_t in x_seq.unbind(1):
            h, state, internals = self.step(x_t, state)
            outputs.append(h)
            records.append(internals)
        stacked = StepInternals(*(torch.stack(values, dim=1) for values in zip(*records)))
        return torch.stack(outputs, dim=1), state, stacked

    # ------------------------------------------------------------------ checks
    def _check_input(self, x: Tensor, state: DREAMState, name: str, ndim: int) -> None:
        """Everything a public entry point checks: :meth:`_check_structure`, then that ``x`` is finite."""
        self._check_structure(x, state, name, ndim, batch_axis=0)
        check_finite(x, name, batch_axis=0)

    def _check_structure(self, x: Tensor, state: DREAMState, name: str, ndim: int, batch_axis: int) -> None:
        """Shapes, dtypes and devices of ``x`` and of every state field against the cell; no reduction
        over values, so it costs a few microseconds whatever the sizes.

        Every backend runs behind this check: the C++ kernel reads raw buffers with the sizes of
        ``x`` and the weights, so a state field of another shape would be read out of bounds."""
        cfg = self.config
        if ndim == 2:
            layout = "(batch, input_dim)"
        else:
            layout = "(batch, time, input_dim)" if batch_axis == 0 else "(time, batch, input_dim)"
        if not isinstance(x, Tensor) or x.dim() != ndim or x.shape[-1] != cfg.input_dim:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise DREAMError(f"{name} must have shape {layout} with input_dim={cfg.input_dim}, got {got}")
        if ndim == 3 and x.shape[1 - batch_axis] == 0:
            raise DREAMError(f"{name} must have at least one time step, got shape {tuple(x.shape)}")
        weight = self._parameters.get("weight_in")
        if weight is None:  # a parametrized weight lives outside _parameters
            weight = self.weight_in
        if x.dtype != weight.dtype:
            raise DREAMError(
                f"{name} has dtype {x.dtype} but the model's parameters are {weight.dtype}; convert one of "
                f"them (e.g. x.to({weight.dtype}) or model.to({x.dtype}))"
            )
        if x.device != weight.device:
            raise DREAMError(
                f"{name} is on device {x.device} but the model is on {weight.device}; move one of them "
                f"(e.g. x.to({str(weight.device)!r}) or model.to({str(x.device)!r}))"
            )
        if not isinstance(state, DREAMState):
            raise DREAMError(f"state must be a DREAMState (see init_state), got {type(state).__name__}")
        state.validate(cfg, x.shape[batch_axis], weight.dtype, weight.device)

    def extra_repr(self) -> str:
        c = self.config
        return f"input_dim={c.input_dim}, hidden_dim={c.hidden_dim}, rank={c.rank}, ltc_enabled={c.ltc_enabled}"


def check_finite(x: Tensor, name: str, batch_axis: int, valid: Tensor | None = None) -> None:
    """Raise :class:`DREAMError` naming the first batch index where ``x`` holds NaN or inf.

    ``valid`` (B, T), for batch-first sequences: only those steps are looked at (padding may hold
    anything). One reduction over ``x`` per call (a device sync on GPU). Skipped while tracing
    (``torch.compile``, ``torch.func`` transforms), where a data-dependent branch cannot run."""
    if torch.compiler.is_compiling() or torch._C._functorch.is_functorch_wrapped_tensor(x):
        return
    if valid is None:
        if bool(torch.isfinite(x).all()):
            return
        bad = (~torch.isfinite(x.detach())).movedim(batch_axis, 0).flatten(1).any(dim=1)  # (B,)
    else:
        bad = ((~torch.isfinite(x.detach())).any(dim=2) & valid).any(dim=1)  # (B,)
        if not bool(bad.any()):
            return
    indices = bad.nonzero().flatten().tolist()
    raise DREAMError(
        f"{name} contains non-finite values (NaN or inf) at batch index {indices[0]}"
        + (f" (and {len(indices) - 1} more)" if len(indices) > 1 else "")
        + "; DREAM rejects them because they would poison that sample's h, U and error statistics "
        "for good. Clean the input first (e.g. torch.nan_to_num)"
    )
