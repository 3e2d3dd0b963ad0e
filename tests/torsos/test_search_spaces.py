"""Every torso's tuning search space (``RecurrentTorso.search_space``): well formed, in the format of
``dream-rl tune``, and every value in it builds a torso that runs."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from dream_rl.errors import DREAMError, TorsoError
from dream_rl.sb3.policies import TORSO_RL_DEFAULTS
from dream_rl.torsos import TORSOS, RecurrentTorso
from dream_rl.torsos.base import LEARNING_RATE_SCALE_SPACE

WIDTH = 64  # the boards' width
MAX_OPTIONS = 3


def corner_values(spec: dict[str, Any]) -> list[Any]:
    """The values a dimension must accept: both ends of a range, every choice of a categorical."""
    if spec["type"] == "categorical":
        return list(spec["choices"])
    cast = int if spec["type"] == "int" else float
    return [cast(spec["low"]), cast(spec["high"])]


def test_the_default_space_is_empty_and_the_shared_dimension_is_a_log_range_around_one():
    assert RecurrentTorso.search_space == {}
    assert LEARNING_RATE_SCALE_SPACE["type"] == "float" and LEARNING_RATE_SCALE_SPACE["log"] is True
    assert LEARNING_RATE_SCALE_SPACE["low"] < 1.0 < LEARNING_RATE_SCALE_SPACE["high"]


@pytest.mark.parametrize("name", list(TORSOS))
def test_space_is_small_and_in_the_tune_format(name):
    from dream_rl.experiments.tune import parse_tune_section

    space = TORSOS[name].search_space
    assert isinstance(space, dict) and len(space) <= MAX_OPTIONS, f"{name}: at most {MAX_OPTIONS} options"
    assert "learning_rate_scale" not in space, f"{name}: the learning-rate multiple is added by the protocol"
    if not space:
        return
    raw = {"name": "x", "policies": {name: {"policy": "MlpTorsoPolicy"}},
           "tune": {"space": {f"policies.{name}.policy_kwargs.torso_kwargs.{key}": spec for key, spec in space.items()}}}
    _, settings = parse_tune_section(raw)  # the distribution syntax tune accepts, each dimension checked
    assert len(settings.space) == len(space)
    for param in settings.space:
        if param.type != "categorical":
            assert param.low < param.high and (not param.log or param.low > 0)
        else:
            assert len(param.choices) >= 2 and len(set(map(repr, param.choices))) == len(param.choices)


@pytest.mark.parametrize("name", list(TORSOS))
def test_every_value_of_the_space_builds_a_torso_that_runs(name):
    """Every combination of the dimensions' ends and choices (tune samples anywhere in between), on top of
    the policies' RL defaults, at the boards' width: the torso builds and a sequence with a reset runs."""
    torch.manual_seed(0)
    space = TORSOS[name].search_space
    keys = list(space)
    combinations = list(itertools.product(*(corner_values(space[key]) for key in keys)))
    assert combinations
    for values in combinations:
        options = {**TORSO_RL_DEFAULTS.get(name, {}), **dict(zip(keys, values))}
        torso = TORSOS[name](3, WIDTH, 1, **options)
        features = torch.randn(5, 2, 3)
        starts = torch.zeros(5, 2)
        starts[2, 1] = 1
        out, state = torso(features, torso.initial_state(2), starts)
        assert out.shape == (5, 2, WIDTH) and state.shape == (2, torso.state_size), (name, options)
        assert torch.isfinite(out).all() and torch.isfinite(state).all(), (name, options)


@pytest.mark.parametrize(("name", "options"), [("mamba", {"d_state": 0}), ("framestack", {"k": 0}),
                                             ("dream", {"ltc_tau_spread": 0.5}), ("lru", {"no_such_option": 1})])
def test_a_value_or_name_its_torso_refuses_fails_to_build(name, options):
    """The check above means something: a value out of range, or an option the torso does not take, fails."""
    with pytest.raises((TorsoError, DREAMError, TypeError)):
        TORSOS[name](3, WIDTH, 1, **{**TORSO_RL_DEFAULTS.get(name, {}), **options})


def test_the_tuning_page_lists_every_torsos_options():
    """docs/tuning.md's table of the spaces names every torso and exactly the options its class declares."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "tuning.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| (.*) \|$", page, flags=re.M))
    assert set(rows) == set(TORSOS), "docs/tuning.md: one row per registered torso"
    for name, cell in rows.items():
        listed = re.findall(r"`(\w+)` ", cell + " ")
        assert listed == list(TORSOS[name].search_space), f"docs/tuning.md: the row of {name}"
