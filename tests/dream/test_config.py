"""DREAMConfig: the 18 fields and their seed defaults, validation, presets (seed configuration guide)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from dream_rl import DREAM, DREAMCell, DREAMConfig, DREAMError

# The API reference (seed 000), in its order: field -> default.
SEED_DEFAULTS = {
    "input_dim": 39,
    "hidden_dim": 256,
    "rank": 16,
    "time_step": 0.1,
    "forgetting_rate": 0.01,
    "base_plasticity": 0.1,
    "base_threshold": 0.5,
    "entropy_influence": 0.2,
    "surprise_temperature": 0.1,
    "error_smoothing": 0.01,
    "surprise_smoothing": 0.01,
    "target_norm": 2.0,
    "kappa": 0.5,
    "sleep_rate": 0.005,
    "min_surprise_for_sleep": 0.2,
    "ltc_enabled": True,
    "ltc_tau_sys": 10.0,
    "ltc_surprise_scale": 10.0,
}
SEED_TYPES = {"input_dim": int, "hidden_dim": int, "rank": int, "ltc_enabled": bool}
# This project's options come after the seed's fields, each defaulting to the specified behaviour.
PROJECT_DEFAULTS = {"ltc_tau_spread": 1.0, "fast_weights": True, "surprise_gating": True, "error_injection": True}

# The configuration guide (seed 002), written out independently of dream_rl.dream.config.PRESETS.
# ASR merges the "Quick presets" block with the "Speech Recognition" task block (they agree).
SEED_PRESETS = {
    "asr": dict(input_dim=39, hidden_dim=256, rank=16, ltc_enabled=True, ltc_tau_sys=10.0,
                base_threshold=0.5, base_plasticity=0.1, forgetting_rate=0.01),
    "fast_adaptation": dict(input_dim=64, hidden_dim=128, rank=8, base_plasticity=0.2,
                            forgetting_rate=0.005, ltc_surprise_scale=20.0),
    "long_term_memory": dict(input_dim=64, hidden_dim=512, rank=32, ltc_tau_sys=20.0,
                             forgetting_rate=0.001, target_norm=3.0),
    "stability": dict(input_dim=64, hidden_dim=256, rank=16, time_step=0.05, ltc_tau_sys=15.0,
                      target_norm=1.5, error_smoothing=0.05),
    "time_series": dict(input_dim=10, hidden_dim=128, rank=8, ltc_enabled=True, ltc_tau_sys=15.0,
                        base_plasticity=0.15, forgetting_rate=0.005),
    "anomaly_detection": dict(input_dim=20, hidden_dim=128, rank=16, ltc_enabled=True,
                              base_threshold=0.3, surprise_temperature=0.15, base_plasticity=0.2),
    "language_modeling": dict(input_dim=300, hidden_dim=512, rank=32, ltc_enabled=True,
                              ltc_tau_sys=20.0, forgetting_rate=0.001, target_norm=3.0),
    "online_learning": dict(input_dim=64, hidden_dim=256, rank=16, ltc_enabled=True,
                            ltc_surprise_scale=20.0, base_plasticity=0.2, forgetting_rate=0.02,
                            base_threshold=0.4),
}


# ---------------------------------------------------------------------------- fields and defaults
def test_is_a_dataclass_with_the_18_seed_fields_in_order():
    assert dataclasses.is_dataclass(DREAMConfig)
    assert [f.name for f in dataclasses.fields(DREAMConfig)] == [*SEED_DEFAULTS, *PROJECT_DEFAULTS]
    assert {name: getattr(DREAMConfig(), name) for name in PROJECT_DEFAULTS} == PROJECT_DEFAULTS


def test_tau_spread_log_spaces_the_initial_time_constants():
    import torch

    from dream_rl import DREAMCell

    same = DREAMCell(DREAMConfig(input_dim=3, hidden_dim=5, rank=2, ltc_tau_sys=2.0))
    assert torch.allclose(same.log_tau_sys.exp(), torch.full((5,), 2.0))  # the specified behaviour
    spread = DREAMCell(DREAMConfig(input_dim=3, hidden_dim=5, rank=2, ltc_tau_sys=2.0, ltc_tau_spread=4.0))
    assert torch.allclose(spread.log_tau_sys.exp(), torch.tensor([0.5, 1.0, 2.0, 4.0, 8.0]))
    one_unit = DREAMCell(DREAMConfig(input_dim=3, hidden_dim=1, rank=1, ltc_tau_sys=2.0, ltc_tau_spread=4.0))
    assert torch.allclose(one_unit.log_tau_sys.exp(), torch.tensor([2.0]))


def test_defaults_are_exactly_the_seed_defaults():
    config = DREAMConfig()
    for name, default in SEED_DEFAULTS.items():
        value = getattr(config, name)
        assert value == default, name
        assert type(value) is SEED_TYPES.get(name, float), name
    assert config.to_dict() == {**SEED_DEFAULTS, **PROJECT_DEFAULTS}


def test_seed_example_config():
    config = DREAMConfig(input_dim=64, hidden_dim=256, rank=16, ltc_enabled=True, base_plasticity=0.15)
    assert (config.input_dim, config.hidden_dim, config.rank) == (64, 256, 16)
    assert config.base_plasticity == 0.15
    assert config.kappa == SEED_DEFAULTS["kappa"]


def test_to_dict_round_trips():
    config = DREAMConfig(input_dim=3, hidden_dim=7, rank=2, kappa=1.0, ltc_enabled=False)
    assert DREAMConfig(**config.to_dict()) == config


# ---------------------------------------------------------------------------- accepted values
@pytest.mark.parametrize(
    "overrides",
    [
        dict(rank=8, hidden_dim=8),  # rank == hidden_dim is allowed
        dict(rank=8, input_dim=2, hidden_dim=16),  # rank > input_dim is allowed (V has orthonormal rows)
        dict(forgetting_rate=0.0, base_plasticity=0.0, base_threshold=0.0, entropy_influence=0.0),
        dict(error_smoothing=0.0, surprise_smoothing=0.0, kappa=0.0, sleep_rate=0.0, min_surprise_for_sleep=0.0),
        dict(error_smoothing=1.0, surprise_smoothing=1.0, kappa=1.0, sleep_rate=1.0, min_surprise_for_sleep=1.0),
        dict(ltc_enabled=False),
        dict(time_step=1e-6, surprise_temperature=1e-6, target_norm=1e-6, ltc_tau_sys=1e-3, ltc_surprise_scale=1e-3),
    ],
)
def test_boundary_values_are_accepted(overrides):
    base = dict(input_dim=4, hidden_dim=16, rank=4)
    config = DREAMConfig(**{**base, **overrides})
    for name, value in overrides.items():
        assert getattr(config, name) == value
    DREAMCell(config)  # and a cell builds from it


def test_integer_like_values_are_normalised():
    config = DREAMConfig(input_dim=np.int64(5), hidden_dim=np.int32(9), rank=np.int16(3), time_step=1, kappa=np.float32(0.25))
    assert (config.input_dim, config.hidden_dim, config.rank) == (5, 9, 3)
    assert all(type(getattr(config, n)) is int for n in ("input_dim", "hidden_dim", "rank"))
    assert config.time_step == 1.0 and type(config.time_step) is float
    assert config.kappa == 0.25 and type(config.kappa) is float


# ---------------------------------------------------------------------------- validation
NAN, INF = math.nan, math.inf
POS = "(0, inf)"  # strictly positive
NONNEG = "[0, inf)"
UNIT = "[0, 1]"
INT = ">= 1"

INVALID = [
    # non-positive / non-integer dimensions
    ("input_dim", 0, INT), ("input_dim", -1, INT), ("input_dim", 2.0, INT), ("input_dim", True, INT),
    ("input_dim", "4", INT), ("input_dim", None, INT),
    ("hidden_dim", 0, INT), ("hidden_dim", -16, INT), ("hidden_dim", 16.0, INT), ("hidden_dim", False, INT),
    ("rank", 0, INT), ("rank", -2, INT), ("rank", 1.5, INT), ("rank", True, INT),
    # non-positive time step / temperature / norm / time constants
    ("time_step", 0.0, POS), ("time_step", -0.1, POS), ("time_step", NAN, POS), ("time_step", INF, POS),
    ("surprise_temperature", 0.0, POS), ("surprise_temperature", -0.1, POS), ("surprise_temperature", NAN, POS),
    ("target_norm", 0.0, POS), ("target_norm", -1.0, POS),
    ("ltc_tau_sys", 0.0, POS), ("ltc_tau_sys", -10.0, POS), ("ltc_tau_sys", NAN, POS),
    ("ltc_surprise_scale", 0.0, POS), ("ltc_surprise_scale", -1.0, POS),
    ("ltc_tau_spread", 0.5, "[1, inf)"), ("ltc_tau_spread", NAN, "[1, inf)"),
    # negative rates and coefficients
    ("forgetting_rate", -0.01, NONNEG), ("forgetting_rate", NAN, NONNEG),
    ("base_plasticity", -0.1, NONNEG), ("base_threshold", -0.5, NONNEG), ("entropy_influence", -0.2, NONNEG),
    # rates in [0, 1]
    ("error_smoothing", -0.01, UNIT), ("error_smoothing", 1.01, UNIT), ("error_smoothing", NAN, UNIT),
    ("surprise_smoothing", -0.01, UNIT), ("surprise_smoothing", 1.5, UNIT),
    ("kappa", -0.1, UNIT), ("kappa", 1.1, UNIT),
    ("sleep_rate", -0.005, UNIT), ("sleep_rate", 1.2, UNIT),
    ("min_surprise_for_sleep", -0.1, UNIT), ("min_surprise_for_sleep", 1.1, UNIT),
]
WRONG_TYPE = [
    ("time_step", "0.1"), ("time_step", None), ("time_step", True), ("kappa", [0.5]),
    ("forgetting_rate", "fast"), ("target_norm", complex(1, 0)),
    ("ltc_enabled", 1), ("ltc_enabled", "yes"), ("ltc_enabled", None),
]


@pytest.mark.parametrize("field, value, allowed", INVALID, ids=[f"{f}={v!r}" for f, v, _ in INVALID])
def test_invalid_value_raises_naming_field_and_range(field, value, allowed):
    with pytest.raises(DREAMError) as info:
        DREAMConfig(**{field: value})
    message = str(info.value)
    assert field in message
    assert allowed in message


@pytest.mark.parametrize("field, value", WRONG_TYPE, ids=[f"{f}={v!r}" for f, v in WRONG_TYPE])
def test_wrong_type_raises_naming_field(field, value):
    with pytest.raises(DREAMError, match=field):
        DREAMConfig(**{field: value})


@pytest.mark.parametrize("hidden_dim, rank", [(4, 5), (16, 17), (1, 2)])
def test_rank_above_hidden_dim_raises(hidden_dim, rank):
    with pytest.raises(DREAMError, match="rank") as info:
        DREAMConfig(input_dim=4, hidden_dim=hidden_dim, rank=rank)
    assert "hidden_dim" in str(info.value)


def test_dream_error_is_a_value_error():
    assert issubclass(DREAMError, ValueError)
    with pytest.raises(ValueError):
        DREAMConfig(hidden_dim=0)


def test_model_constructors_validate_through_the_config():
    with pytest.raises(DREAMError, match="input_dim"):
        DREAM(input_dim=-1)
    with pytest.raises(DREAMError, match="surprise_temperature"):
        DREAM(input_dim=4, hidden_dim=8, rank=2, surprise_temperature=0.0)
    with pytest.raises(DREAMError, match="DREAMConfig"):
        DREAMCell({"input_dim": 4})  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- presets
def test_there_are_exactly_the_eight_seed_presets():
    assert sorted(DREAMConfig.preset_names()) == sorted(SEED_PRESETS)


@pytest.mark.parametrize("name", sorted(SEED_PRESETS))
def test_preset_has_the_seed_values_and_defaults_elsewhere(name):
    config = DREAMConfig.preset(name)
    assert isinstance(config, DREAMConfig)
    expected = {**SEED_DEFAULTS, **PROJECT_DEFAULTS, **SEED_PRESETS[name]}
    assert config.to_dict() == expected


@pytest.mark.parametrize("name", sorted(SEED_PRESETS))
def test_preset_overrides_apply(name):
    config = DREAMConfig.preset(name, input_dim=7, kappa=1.0, ltc_enabled=False)
    assert (config.input_dim, config.kappa, config.ltc_enabled) == (7, 1.0, False)
    for field, value in SEED_PRESETS[name].items():
        if field not in ("input_dim", "ltc_enabled"):
            assert getattr(config, field) == value, field


def test_preset_docstring_mentions_every_preset():
    doc = DREAMConfig.preset.__doc__
    assert doc
    for name in SEED_PRESETS:
        assert name in doc, name


def test_unknown_preset_raises_listing_the_choices():
    with pytest.raises(DREAMError, match="unknown preset") as info:
        DREAMConfig.preset("speech")
    for name in SEED_PRESETS:
        assert name in str(info.value)


def test_preset_override_errors():
    with pytest.raises(DREAMError, match="hidden_size"):
        DREAMConfig.preset("asr", hidden_size=32)  # not a field
    with pytest.raises(DREAMError, match="kappa"):
        DREAMConfig.preset("stability", kappa=2.0)
    with pytest.raises(DREAMError, match="rank"):
        DREAMConfig.preset("long_term_memory", hidden_dim=16)  # rank 32 > 16


def test_preset_returns_independent_configs():
    first = DREAMConfig.preset("asr", input_dim=3)
    assert first.input_dim == 3
    assert DREAMConfig.preset("asr").input_dim == 39  # the overrides did not leak into the table


# ---------------------------------------------------------------------------- immutability (issue 9, item 4)
@pytest.mark.parametrize("field, value", [("kappa", 7.0), ("rank", 100), ("kappa", 0.9), ("ltc_enabled", False)])
def test_config_cannot_be_changed_after_construction(field, value):
    """The kernels read the config on every call: an assignment, even a valid one, would bypass the
    validation (kappa=7 and rank > hidden_dim were accepted before)."""
    cfg = DREAMConfig(input_dim=4, hidden_dim=8, rank=2)
    before = cfg.to_dict()
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(cfg, field, value)
    assert cfg.to_dict() == before


def test_replace_returns_a_validated_copy():
    cfg = DREAMConfig(input_dim=4, hidden_dim=8, rank=2)
    changed = dataclasses.replace(cfg, kappa=1.0, rank=4)
    assert (changed.kappa, changed.rank, cfg.kappa, cfg.rank) == (1.0, 4, 0.5, 2)
    assert isinstance(changed.rank, int) and isinstance(changed.kappa, float)
    with pytest.raises(DREAMError, match="kappa"):
        dataclasses.replace(cfg, kappa=7.0)
    with pytest.raises(DREAMError, match="rank must be <= hidden_dim"):
        dataclasses.replace(cfg, rank=100)


def test_config_is_hashable_and_compares_by_value():
    a, b = DREAMConfig(input_dim=4), DREAMConfig(input_dim=4)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1


def test_cell_config_can_only_be_replaced_with_the_same_dimensions():
    cell = DREAMCell(DREAMConfig(input_dim=4, hidden_dim=8, rank=2))
    cell.config = dataclasses.replace(cell.config, kappa=1.0)
    assert cell.config.kappa == 1.0
    for field, value in (("rank", 4), ("input_dim", 5), ("hidden_dim", 16)):
        with pytest.raises(DREAMError, match=f"{field} is fixed by its weights"):
            cell.config = dataclasses.replace(cell.config, **{field: value})
    with pytest.raises(DREAMError, match="DREAMConfig"):
        cell.config = {"kappa": 1.0}
    assert cell.config.rank == 2


# ---------------------------------------------------------------------------- computable values (item 8)
@pytest.mark.parametrize("field, value, reason", [
    ("time_step", 1e300, "overflows float32"),
    ("time_step", 1e39, "overflows float32"),
    ("target_norm", 1e-300, "rounds to 0"),
    ("surprise_temperature", 1e-45, "rounds to 0"),
    ("ltc_tau_sys", 1e-300, "rounds to 0"),
    ("ltc_surprise_scale", 1e300, "overflows float32"),
    ("base_plasticity", 1e300, "overflows float32"),
    ("forgetting_rate", 1e300, "overflows float32"),
    ("base_threshold", 1e40, "overflows float32"),
    ("entropy_influence", 1e300, "overflows float32"),
])
def test_values_the_cell_cannot_compute_are_rejected_with_the_reason(field, value, reason):
    with pytest.raises(DREAMError, match=rf"{field}=.*outside what the cell can compute.*{reason}"):
        DREAMConfig(**{field: value})


@pytest.mark.parametrize("field, value", [
    ("time_step", 1e30), ("target_norm", 1e-30), ("surprise_temperature", 1e-30), ("forgetting_rate", 1e-300),
    ("base_plasticity", 0.0), ("ltc_tau_sys", 1e-3), ("ltc_surprise_scale", 1e30),
])
def test_extreme_but_computable_values_are_accepted(field, value):
    assert getattr(DREAMConfig(**{field: value}), field) == value


def test_rejected_extremes_made_the_first_step_non_finite():
    """What the float32 rule prevents: the first step of the cell is NaN with dt = 1e300."""
    import torch

    ok = DREAMCell(DREAMConfig(input_dim=3, hidden_dim=8, rank=2, time_step=1e30))
    with torch.no_grad():
        out, _ = ok.forward_sequence(torch.randn(2, 1, 3), ok.init_state(2))
    assert torch.isfinite(out).all()
    bad = object.__new__(DREAMConfig)  # bypass the validation to show the failure it prevents
    for field in dataclasses.fields(DREAMConfig):
        object.__setattr__(bad, field.name, getattr(ok.config, field.name))
    object.__setattr__(bad, "time_step", 1e300)
    ok.config = bad
    ok.sequence_backend = "reference"
    with torch.no_grad():
        out, _ = ok.forward_sequence(torch.randn(2, 1, 3), ok.init_state(2))
    assert not torch.isfinite(out).any()
