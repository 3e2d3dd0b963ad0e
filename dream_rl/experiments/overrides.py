"""Dotted overrides of a raw config: ``KEY.PATH=VALUE``, the value read as YAML.

Overrides are applied to the raw mapping before it is validated, so an overridden value is checked
like any other. ``train.total_timesteps=N`` (or ``train.eval_every=N``) applies to every env: it also
replaces the per-env values of an ``envs:`` list, unless an override sets the entry's own value
(``envs.1.total_timesteps=M``). ``env=null`` or ``envs=null`` removes that key.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from dream_rl.errors import ConfigError
from dream_rl.experiments.yamlio import load_yaml_text

__all__ = ["apply_overrides", "parse_override"]


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.seeds=[0,1]"`` -> (["train", "seeds"], [0, 1]). The value is read as YAML."""
    key, sep, value_text = text.partition("=")
    key = key.strip()
    path = key.split(".")
    if not sep or not key or any(not part or not part.strip() for part in path):
        raise ConfigError(f"bad override {text!r}: expected KEY.PATH=VALUE, e.g. train.total_timesteps=5000", key)
    if not value_text.strip(" \t\r\n"):  # YAML's white space (a lone U+00A0 is a value)
        raise ConfigError(f"bad override {text!r}: empty value (write null for None)", key)
    try:
        value = load_yaml_text(value_text)
    except yaml.YAMLError:
        raise ConfigError(f"bad override {text!r}: the value is not valid YAML (quote strings with brackets)", key) from None
    except ConfigError as error:
        raise ConfigError(f"bad override {text!r}: {error}", key) from None
    return [part.strip() for part in path], value


# An override of a train-level budget applies to every env: it replaces the per-env values of an
# `envs:` list (a smoke test `train.total_timesteps=2048` of a board with per-env budgets is one).
_PER_ENV_BUDGETS = ("total_timesteps", "eval_every")


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``raw`` with dotted overrides applied (missing mappings are created; a number
    indexes a list: ``envs.0.kwargs.corridor_length=50``).

    ``env=null`` or ``envs=null`` removes that key (to switch between the two forms). An override of
    ``train.total_timesteps`` or ``train.eval_every`` replaces that value in every entry of ``envs:``
    too, unless an override also sets it for the entry (``envs.2.total_timesteps=...``)."""
    result = _deep_copy(raw)
    paths: list[list[str]] = []
    for text in overrides:
        path, value = parse_override(text)
        paths.append(path)
        if len(path) == 1 and path[0] in ("env", "envs") and value is None:
            result.pop(path[0], None)
            continue
        node: Any = result
        for depth, part in enumerate(path):
            where = ".".join(path[: depth + 1])
            last = depth == len(path) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"bad override {text!r}: {where}: index out of range (0..{len(node) - 1})", where)
                index: Any = int(part)
            elif isinstance(node, dict):
                index = part
            else:
                parent = ".".join(path[:depth])
                raise ConfigError(f"bad override {text!r}: {parent} is not a mapping", parent)
            if last:
                node[index] = value
            else:
                if isinstance(node, dict) and node.get(index) is None:
                    node[index] = {}
                node = node[index]
    envs = result.get("envs")
    if isinstance(envs, list):
        for name in _PER_ENV_BUDGETS:
            if ["train", name] not in paths:
                continue
            for index, entry in enumerate(envs):
                if isinstance(entry, dict) and ["envs", str(index), name] not in paths:
                    entry.pop(name, None)
    return result


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
