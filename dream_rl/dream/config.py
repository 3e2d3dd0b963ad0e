"""DREAM configuration: the 18 hyper-parameters of a cell (and this project's options, whose defaults
are the specified behaviour), validated on construction, and named presets.

A :class:`DREAMConfig` is immutable (a frozen dataclass): the kernels read it on every call, so a field
changed after validation could hand them a value they cannot compute with (or a ``rank`` that no longer
matches the weights). Derive a changed copy with :func:`dataclasses.replace`, which validates again.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

from dream_rl.errors import DREAMError

__all__ = ["DREAMConfig", "PRESETS"]


@dataclass(frozen=True)
class DREAMConfig:
    """Configuration for a DREAM cell.

    Symbols refer to ``docs/dream-cell.md`` (the equations this package implements).

    Model dimensions:
        input_dim: input feature dimension ``I``.
        hidden_dim: hidden state size ``H``.
        rank: fast-weight rank ``r`` (``r <= H``).
    Time:
        time_step: integration step ``dt`` of the continuous-time dynamics.
    Plasticity:
        forgetting_rate: decay ``λ`` of the fast weights toward their consolidated target.
        base_plasticity: initial value of the learned per-unit plasticity ``η``.
    Surprise:
        base_threshold: initial habituated surprise threshold ``τ₀``.
        entropy_influence: weight ``α`` of the error-model entropy on the threshold.
        surprise_temperature: sigmoid temperature ``γ`` (smaller = sharper gate).
    Smoothing:
        error_smoothing: EMA rate ``β`` of the error statistics and the threshold.
        surprise_smoothing: EMA rate ``β_s`` of the average surprise.
    Homeostasis:
        target_norm: Frobenius-norm target of the fast weights.
        kappa: homeostasis strength ``κ`` (1 = hard projection onto the norm ball).
    Sleep consolidation:
        sleep_rate: consolidation rate ``ζ`` of ``U_target`` toward ``U``.
        min_surprise_for_sleep: consolidation happens while the average surprise is below this.
    Liquid time constants:
        ltc_enabled: integrate with a surprise-modulated time constant (False: plain RNN step).
        ltc_tau_sys: initial per-unit base time constant ``τ_sys``.
        ltc_surprise_scale: initial surprise → time-constant scale ``s``.
    This project's options (not in the seed; each default is the specified behaviour):
        ltc_tau_spread: the units' initial base time constants are log-spaced over
            ``[τ_sys / spread, τ_sys · spread]`` (1: every unit starts at ``τ_sys``). Fast units keep
            exact recent inputs, slow ones integrate; measured on the quick leaderboard (README).

    Ablations (``docs/dream-ablations.md``): each switches one mechanism off; True is the seed's cell.
        fast_weights: False turns the Hebbian write off (step 6 without ``η S h (Vᵀe)ᵀ``; ``η`` is
            unused and gets no gradient). ``U`` then only relaxes toward ``U_target``: from the initial
            state (``U = U_target = 0``) it stays 0, so neither the prediction nor the drive reads
            anything from it. ``base_plasticity = 0`` is not the same: ``η`` is learned and moves away
            from 0 after the first gradient step.
        surprise_gating: False fixes ``S ≡ 1`` wherever it enters: the Hebbian gate, the error
            injection, the liquid time constant (``τ_eff = τ_sys / (1 + s)``, constant in time) and the
            average surprise (so sleep stops once it passes ``min_surprise_for_sleep``). The error
            statistics and the threshold still update; nothing flows back through them into ``S``.
        error_injection: False removes ``W (S e)`` from the drive
            (step 8; ``W`` is unused).

    Two ablations need no switch: ``ltc_enabled=False`` (no liquid time constant: ``h_new = h*``)
    and ``sleep_rate=0`` (``U_target`` never moves: no consolidation, exactly).

    Every field is checked on construction; a bad value raises :class:`DREAMError` naming the
    field and its allowed range. Float fields must also be computable in float32, the cell's default
    precision: a strictly positive field may not round to 0 there (it divides or is a logarithm's
    argument) and no field may exceed float32's largest value (it would be ``inf`` from the first step).

    The configuration is immutable; ``dataclasses.replace(config, kappa=1.0)`` returns a changed,
    re-validated copy.
    """

    # Model dimensions
    input_dim: int = 39
    hidden_dim: int = 256
    rank: int = 16
    # Time
    time_step: float = 0.1
    # Plasticity
    forgetting_rate: float = 0.01
    base_plasticity: float = 0.1
    # Surprise
    base_threshold: float = 0.5
    entropy_influence: float = 0.2
    surprise_temperature: float = 0.1
    # Smoothing
    error_smoothing: float = 0.01
    surprise_smoothing: float = 0.01
    # Homeostasis
    target_norm: float = 2.0
    kappa: float = 0.5
    # Sleep consolidation
    sleep_rate: float = 0.005
    min_surprise_for_sleep: float = 0.2
    # Liquid time constants
    ltc_enabled: bool = True
    ltc_tau_sys: float = 10.0
    ltc_surprise_scale: float = 10.0
    # This project's options, after the seed's 18 fields
    ltc_tau_spread: float = 1.0
    # Ablations: True is the seed's cell
    fast_weights: bool = True
    surprise_gating: bool = True
    error_injection: bool = True

    def __post_init__(self) -> None:
        # frozen: normalised values are stored with object.__setattr__, the only write after __init__
        for name in ("input_dim", "hidden_dim", "rank"):
            value = getattr(self, name)
            # numbers.Integral admits numpy integers, which gym spaces hand out
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise DREAMError(f"{name} must be a positive integer (>= 1), got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.rank > self.hidden_dim:
            raise DREAMError(
                f"rank must be <= hidden_dim (the fast weights are hidden_dim x rank), "
                f"got rank={self.rank} > hidden_dim={self.hidden_dim}"
            )
        for name in _BOOL_FIELDS:
            if not isinstance(getattr(self, name), bool):
                raise DREAMError(f"{name} must be True or False, got {getattr(self, name)!r}")
        for name, low, high, low_open in _FLOAT_RANGES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise DREAMError(f"{name} must be a number, got {value!r}")
            try:
                value = float(value)
            except OverflowError:  # an int beyond float range (10**400)
                raise DREAMError(f"{name} must be in {_range_text(low, high, low_open)}, got an integer too "
                                 "large for a float") from None
            if not math.isfinite(value) or value < low or (low_open and value == low) or value > high:
                raise DREAMError(f"{name} must be in {_range_text(low, high, low_open)}, got {value!r}")
            _check_float32(name, value, low_open)
            object.__setattr__(self, name, value)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> DREAMConfig:
        """A configuration tuned for a use case (seed configuration guide), with ``overrides`` applied.

        >>> DREAMConfig.preset("fast_adaptation", input_dim=8).base_plasticity
        0.2

        Presets and why they are set as they are:

        - ``asr``: 39 inputs match 13 MFCC + deltas + delta-deltas; 256 hidden units give enough
          capacity; rank 16 balances expressivity and cost; standard integration and sensitivity.
        - ``fast_adaptation``: higher plasticity learns quickly, slower forgetting keeps what was
          learnt, a larger surprise scale makes time constants react fast to novelty.
        - ``long_term_memory``: a large hidden state stores more, slow integration keeps memories
          stable, very slow forgetting and a larger norm budget preserve long-term fast weights.
        - ``stability``: a smaller dt and a larger time constant integrate gently, a smaller norm
          bounds the fast weights, stronger smoothing reduces sensitivity to noise.
        - ``time_series``: slower integration and slow forgetting follow trends; moderate
          plasticity tracks drift.
        - ``anomaly_detection``: a low threshold makes surprise sensitive to novelty, a smoother
          gate grades it, fast plasticity re-adapts after an anomaly.
        - ``language_modeling``: 300-d embeddings in, a large state with slow integration and very
          slow forgetting for long-range dependencies.
        - ``online_learning``: high plasticity and adaptive time constants follow a changing
          stream; faster forgetting drops stale patterns; a lower threshold reacts sooner.
        """
        if name not in PRESETS:
            raise DREAMError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}")
        values = PRESETS[name]
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise DREAMError(f"unknown DREAMConfig field(s) {sorted(unknown)} in preset overrides")
        return cls(**{**values, **overrides})

    @staticmethod
    def preset_names() -> list[str]:
        """Names accepted by :meth:`preset`."""
        return sorted(PRESETS)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# switches (True or False, nothing else: a string "false" would be truthy)
_BOOL_FIELDS = ("ltc_enabled", "fast_weights", "surprise_gating", "error_injection")

# (field, low, high, low bound excluded)
_FLOAT_RANGES: tuple[tuple[str, float, float, bool], ...] = (
    ("time_step", 0.0, math.inf, True),
    ("forgetting_rate", 0.0, math.inf, False),
    ("base_plasticity", 0.0, math.inf, False),
    ("base_threshold", 0.0, math.inf, False),
    ("entropy_influence", 0.0, math.inf, False),
    ("surprise_temperature", 0.0, math.inf, True),
    ("error_smoothing", 0.0, 1.0, False),
    ("surprise_smoothing", 0.0, 1.0, False),
    ("target_norm", 0.0, math.inf, True),
    ("kappa", 0.0, 1.0, False),
    ("sleep_rate", 0.0, 1.0, False),
    ("min_surprise_for_sleep", 0.0, 1.0, False),
    # both are log-parameterised in the cell, so they must be strictly positive
    ("ltc_tau_sys", 0.0, math.inf, True),
    ("ltc_surprise_scale", 0.0, math.inf, True),
    ("ltc_tau_spread", 1.0, math.inf, False),
)


# float32 (the cell's default dtype): the largest finite value and the smallest normal one
_FLOAT32_MAX = 3.4028234663852886e38
_FLOAT32_TINY = 1.1754943508222875e-38


def _check_float32(name: str, value: float, strictly_positive: bool) -> None:
    """Reject a value the cell cannot compute with in float32 (it would be inf, or a divisor 0)."""
    if abs(value) > _FLOAT32_MAX:
        raise DREAMError(
            f"{name}={value!r} is outside what the cell can compute: it overflows float32 (the default "
            f"dtype) to inf, which makes every state non-finite; use a value <= {_FLOAT32_MAX:.4g}"
        )
    if strictly_positive and value < _FLOAT32_TINY:
        raise DREAMError(
            f"{name}={value!r} is outside what the cell can compute: it must be > 0 (it divides or is "
            f"log-parameterised) but rounds to 0 or a denormal in float32 (the default dtype); use a value "
            f">= {_FLOAT32_TINY:.4g}"
        )


def _range_text(low: float, high: float, low_open: bool) -> str:
    left = "(" if low_open else "["
    right = ")" if math.isinf(high) else "]"
    return f"{left}{low:g}, {'inf' if math.isinf(high) else f'{high:g}'}{right}"


# name -> field values, from the seed configuration guide (rationale: DREAMConfig.preset).
PRESETS: dict[str, dict[str, Any]] = {
    "asr": dict(input_dim=39, hidden_dim=256, rank=16, ltc_tau_sys=10.0, base_threshold=0.5,
                base_plasticity=0.1, forgetting_rate=0.01),
    "fast_adaptation": dict(input_dim=64, hidden_dim=128, rank=8, base_plasticity=0.2,
                            forgetting_rate=0.005, ltc_surprise_scale=20.0),
    "long_term_memory": dict(input_dim=64, hidden_dim=512, rank=32, ltc_tau_sys=20.0,
                             forgetting_rate=0.001, target_norm=3.0),
    "stability": dict(input_dim=64, hidden_dim=256, rank=16, time_step=0.05, ltc_tau_sys=15.0,
                      target_norm=1.5, error_smoothing=0.05),
    "time_series": dict(input_dim=10, hidden_dim=128, rank=8, ltc_tau_sys=15.0,
                        base_plasticity=0.15, forgetting_rate=0.005),
    "anomaly_detection": dict(input_dim=20, hidden_dim=128, rank=16, base_threshold=0.3,
                              surprise_temperature=0.15, base_plasticity=0.2),
    "language_modeling": dict(input_dim=300, hidden_dim=512, rank=32, ltc_tau_sys=20.0,
                              forgetting_rate=0.001, target_norm=3.0),
    "online_learning": dict(input_dim=64, hidden_dim=256, rank=16, ltc_surprise_scale=20.0,
                            base_plasticity=0.2, forgetting_rate=0.02, base_threshold=0.4),
}
