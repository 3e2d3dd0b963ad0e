"""Property tests of the config loader against hostile input (hypothesis, with a one-second
deadline per example): generated YAML documents (random text, random values written as YAML,
nested aliases, deep nesting, tags) and override strings either load or raise one ConfigError
line: never another exception, never a hang."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dream_rl.experiments.config import (
    ConfigError,
    apply_overrides,
    parse_override,
    read_yaml,
    validate_config,
)
from tests.experiments.test_experiments import base_config

FAST = settings(max_examples=150, deadline=timedelta(seconds=1),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

KEYS = ["name", "env", "envs", "id", "kwargs", "algo", "policies", "policy", "policy_kwargs", "train",
        "total_timesteps", "seeds", "eval_every", "output_dir", "<<", "x"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
                    st.sampled_from(["dream_rl/RL2-v0", "os:system", "MlpGruPolicy", "1e5", "~", "null"]))
values = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=5)), children, max_size=4)),
    max_leaves=30)
# YAML's syntax characters, so that random text reaches the parser's corners
yaml_text = st.lists(st.one_of(st.sampled_from(list("[]{}&*!|>:-?,#'\"%@`\n\t ") + ["!!python/", "<<:", "&a", "*a", "---"]),
                               st.characters(blacklist_categories=("Cs",))), max_size=150).map("".join)


def loads_or_config_error(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    try:
        raw = read_yaml(path)
        validate_config(raw, build_envs=False)
    except ConfigError as error:
        assert str(error) and "\n" not in str(error)


@st.composite
def alias_documents(draw: st.DrawFn) -> str:
    """Anchors whose lists repeat the previous anchor ``width`` times, ``levels`` deep: from a few
    values to width**levels (the "billion laughs")."""
    levels, width = draw(st.integers(1, 14)), draw(st.integers(1, 12))
    flow = draw(st.booleans())
    lines = [f"a0: &a0 {draw(scalars)!r}" if draw(st.booleans()) else "a0: &a0 [x, y]"]
    for level in range(1, levels):
        items = [f"*a{level - 1}"] * width
        if flow:
            lines.append(f"a{level}: &a{level} [" + ",".join(items) + "]")
        else:
            lines.append(f"a{level}: &a{level}\n" + "".join(f"  - {item}\n" for item in items).rstrip("\n"))
    return "\n".join(lines) + f"\nname: {draw(st.sampled_from(['x', '*a1', '*a0']))}\n"


@FAST
@given(yaml_text)
def test_random_text_loads_or_is_one_config_error(tmp_path, text):
    loads_or_config_error(tmp_path / "c.yaml", text)


@FAST
@given(st.one_of(values, st.dictionaries(st.sampled_from(KEYS), values, max_size=6)))
def test_random_values_written_as_yaml_load_or_are_one_config_error(tmp_path, value):
    loads_or_config_error(tmp_path / "c.yaml", yaml.safe_dump(value, allow_unicode=True))


@FAST
@given(alias_documents())
def test_nested_aliases_answer_within_a_second(tmp_path, text):
    loads_or_config_error(tmp_path / "c.yaml", text)


@FAST
@given(st.integers(1, 20_000), st.sampled_from(["[", "{a: ", "- "]))
def test_deep_nesting_answers_within_a_second(tmp_path, depth, opener):
    if opener == "- ":  # block sequences: one level per line, indented
        text = "".join("  " * i + "-\n" for i in range(min(depth, 2000))) + "  " * min(depth, 2000) + "1\n"
    else:
        text = "x: " + opener * depth + "1" + ("]" if opener == "[" else "}") * depth + "\n"
    loads_or_config_error(tmp_path / "c.yaml", text)


override_text = st.one_of(
    st.text(max_size=60),
    st.builds(lambda key, value: f"{key}={value}",
              st.sampled_from(["train.total_timesteps", "env", "envs", "env.kwargs", "algo.gamma", "a..b", "", ".", "envs.0.x",
                               "policies.gru.policy_kwargs.activation_fn", "train.seeds.0"]),
              yaml_text),
)


@FAST
@given(st.lists(override_text, max_size=4))
def test_override_strings_apply_or_are_one_config_error(overrides: list[str]):
    try:
        raw = apply_overrides(base_config(), overrides)
        validate_config(raw, build_envs=False)
    except ConfigError as error:
        assert str(error) and "\n" not in str(error)


@FAST
@given(alias_documents())
def test_an_alias_bomb_in_an_override_answers_within_a_second(text):
    flow = "{" + ", ".join(line for line in text.splitlines() if line.strip() and not line.startswith(" ")) + "}"
    try:
        parse_override("train.seeds=" + flow)
    except ConfigError as error:
        assert "\n" not in str(error)


def test_the_loader_refuses_what_no_config_needs(tmp_path):
    """The limits the properties rely on, each hit on purpose."""
    checks: dict[str, Any] = {
        "expands to more than": "a0: &a0 [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
            f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 6)),
        "nests more than 100 levels": "x: " + "[" * 101 + "]" * 101,
        "characters long": "x: '" + "a" * 1_000_001 + "'\n",
        "recursive YAML anchor": "x: &x [*x]\n",
        "YAML tag !!python/object": "x: !!python/object:os.system {}\n",
    }
    for message, text in checks.items():
        path = tmp_path / "c.yaml"
        path.write_text(text)
        try:
            read_yaml(path)
        except ConfigError as error:
            assert message in str(error), (message, str(error))
        else:
            raise AssertionError(f"accepted: {message}")
