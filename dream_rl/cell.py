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
  ``τ_eff → 0`` limit).

The cell has no mode-dependent behaviour: train and eval mode compute the same function.

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

from dream_rl.config import DREAMConfig
from dream_rl.errors import DREAMError
from dream_rl.state import DREAMState

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
            self.log_tau_sys.fill_(math.log(cfg.ltc_tau_sys))
            self.log_surprise_scale.fill_(math.log(cfg.ltc_surprise_scale))
            # orthonormal columns when r <= I, orthonormal rows otherwise
            nn.init.orthogonal_(self.sensory_filter)

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
        """One time step. ``x``: (B, I) → output (B, H) and the new state."""
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
        S = torch.sigmoid((novelty - threshold) / cfg.surprise_temperature)  # (B,)

        # 6. surprise-gated Hebbian write, forgetting toward the consolidated target
        e_filtered = e @ V  # Vᵀe: (B, r)
        gate = self.plasticity.unsqueeze(0) * S.unsqueeze(1)  # (B, H)
        hebbian = (gate * h).unsqueeze(2) * e_filtered.unsqueeze(1)  # (B, H, r)
        U_prime = U + dt * (-cfg.forgetting_rate * (U - U_target) + hebbian)

        # 7. homeostasis: shrink toward the target norm, by κ of the way
        norm = (U_prime * U_prime).sum(dim=(1, 2)).clamp_min(EPS * EPS).sqrt()  # (B,)
        rho = cfg.target_norm / norm.clamp_min(cfg.target_norm)  # min(1, target / ‖U'‖)
        U_new = U_prime * (1.0 - cfg.kappa * (1.0 - rho)).view(-1, 1, 1)

        # 8. drive: input, recurrence, surprise-weighted error, fast-weight read-out, bias
        x_filtered = x @ V  # Vᵀx: (B, r)
        drive = (
            x @ self.weight_in.T
            + h @ self.weight_rec.T
            + (S.unsqueeze(1) * e) @ self.weight_err.T
            + torch.bmm(U_new, x_filtered.unsqueeze(2)).squeeze(2)
            + self.bias
        )  # (B, H)
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
        outputs, state = self.run_time_major(x_seq.transpose(0, 1), state)  # (T, B, H)
        return (outputs.transpose(0, 1) if return_all else outputs[-1]), state

    #: Sequence implementation used by :meth:`run_time_major`: ``None`` follows the process-wide
    #: default (:func:`dream_rl.fast_sequence.set_backend`, ``"auto"`` unless changed), or one of
    #: ``"auto"``, ``"native"``, ``"torch"``, ``"reference"`` for this cell.
    sequence_backend: str | None = None

    def run_time_major(self, x_tbi: Tensor, state: DREAMState) -> tuple[Tensor, DREAMState]:
        """Unchecked sequence kernel: ``x_tbi`` (T, B, I) → outputs (T, B, H), final state.

        Runs the fast whole-sequence path of :mod:`dream_rl.fast_sequence` (same values and
        gradients as :meth:`reference_run_time_major`, tested to float64 precision)."""
        from dream_rl.fast_sequence import run_sequence

        return run_sequence(self, x_tbi, state, self.sequence_backend)

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
        layout = "(batch, input_dim)" if ndim == 2 else "(batch, time, input_dim)"
        if not isinstance(x, Tensor) or x.dim() != ndim or x.shape[-1] != self.config.input_dim:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise DREAMError(f"{name} must have shape {layout} with input_dim={self.config.input_dim}, got {got}")
        if ndim == 3 and x.shape[1] == 0:
            raise DREAMError(f"{name} must have at least one time step, got shape {tuple(x.shape)}")
        if not isinstance(state, DREAMState):
            raise DREAMError(f"state must be a DREAMState (see init_state), got {type(state).__name__}")
        if state.h.shape != (x.shape[0], self.config.hidden_dim):
            raise DREAMError(
                f"state is for batch {tuple(state.h.shape)} (batch, hidden_dim) but {name} has batch "
                f"{x.shape[0]} and the cell hidden_dim={self.config.hidden_dim}; build it with "
                f"init_state({x.shape[0]})"
            )

    def extra_repr(self) -> str:
        c = self.config
        return f"input_dim={c.input_dim}, hidden_dim={c.hidden_dim}, rank={c.rank}, ltc_enabled={c.ltc_enabled}"
