"""Property-based tests of config validation, override parsing and the command line (hypothesis):
whatever a user writes, the answer is a valid config or one ConfigError line, never a traceback."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dream_rl.cli import main
from dream_rl.experiments.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    dump_yaml,
    load_config,
    parse_override,
    validate_config,
)
from tests.experiments.test_experiments import base_config

# Real key names make random mappings reach deep into the schema instead of failing at the top.
KEYS = [
    "name", "env", "envs", "id", "kwargs", "n_envs", "vec_env", "label", "algo", "n_steps", "batch_size", "gamma",
    "learning_rate", "device", "policies", "policy", "policy_kwargs", "lstm_hidden_size", "net_arch", "pi",
    "dream_kwargs", "rank", "torso", "torso_kwargs", "activation_fn", "train", "total_timesteps", "seeds",
    "eval_every", "torch_threads", "report", "baseline", "output_dir", "length", "corridor_length", "lstm", "gru",
]
WORDS = ["dream_rl/RepeatFirst-v0", "dream_rl/TMaze-v0", "MlpGruPolicy", "MlpTorsoPolicy", "MlpDreamPolicy",
         "gru", "dream", "ReLU", "subproc", "cpu", "lstm", "x", ""]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WORDS),
    st.text(max_size=8),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=6), st.integers(-3, 3), st.booleans())
values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)),
    max_leaves=25,
)


@st.composite
def mutations(draw: st.DrawFn) -> dict[str, Any]:
    """The tiny valid config with one value somewhere replaced (or one key added)."""
    raw = copy.deepcopy(base_config())
    node: Any = raw
    while node and draw(st.booleans()):  # walk down a random path of mappings
        child = node[draw(st.sampled_from(sorted(node, key=str)))]
        if not isinstance(child, dict) or not child:
            break
        node = child
    node[draw(st.one_of(st.sampled_from(sorted(node, key=str)), keys))] = draw(values)
    return raw


def validates_or_config_error(raw: Any) -> None:
    try:
        config = validate_config(raw)
    except ConfigError as error:
        assert "\n" not in str(error) and str(error)
        return
    assert isinstance(config, ExperimentConfig)
    assert validate_config(config.to_dict()) == config  # a resolved config resolves to itself


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(values, st.dictionaries(keys, values, max_size=8)))
def test_any_mapping_validates_or_raises_config_error(raw):
    validates_or_config_error(raw)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_change_to_a_valid_config_validates_or_raises_config_error(data):
    validates_or_config_error(data.draw(mutations()))


# printable text: PyYAML itself does not round-trip control characters such as NEL (U+0085)
printable = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=10)
yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), printable)
yaml_values = st.recursive(
    yaml_scalars,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(printable, children, max_size=3)),
    max_leaves=8,
)
segments = st.text(st.characters(blacklist_characters=".=", blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=8).filter(
    lambda s: s.strip() == s and s != ""
)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isinf(a) and a == b)
    return a == b


@settings(max_examples=300, deadline=None)
@given(st.lists(segments, min_size=1, max_size=4), yaml_values)
def test_overrides_round_trip(path, value):
    text = dump_yaml(value, flow=True).removesuffix("\n...\n").rstrip("\n")
    parsed_path, parsed = parse_override(".".join(path) + "=" + text)
    assert parsed_path == path and same(parsed, value)
    node = apply_overrides({}, [".".join(path) + "=" + text])
    for part in path:
        node = node[part]
    assert same(node, value)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a valid random config must not find or write runs elsewhere
    return tmp_path


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    status = main(argv)
    err = capsys.readouterr().err
    assert status in (0, 2), err
    assert "Traceback" not in err
    if status == 2:
        assert err.count("\n") == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_cli_on_random_bytes(in_tmp, capsys, content):
    path = in_tmp / "config.yaml"
    path.write_bytes(content)
    run_cli(["train", str(path), "--dry-run"], capsys)
    run_cli(["report", str(path)], capsys)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.data())
def test_cli_on_random_yaml(in_tmp, capsys, data):
    raw = data.draw(st.one_of(st.dictionaries(st.sampled_from(KEYS), values, max_size=6), mutations()))
    path = in_tmp / "config.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    run_cli(["train", str(path), "--dry-run"], capsys)
    run_cli(["report", str(path)], capsys)


def test_recursive_values_are_config_errors(tmp_path: Path):
    path = tmp_path / "config.yaml"
    path.write_text("name: &n [*n]\n")
    with pytest.raises(ConfigError, match="recursive YAML anchor"):
        load_config(path)
