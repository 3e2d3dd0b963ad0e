"""Experiment configs: read a YAML file, apply dotted overrides, validate every key.

:func:`load_config` reads, overrides and validates a file and returns an :class:`ExperimentConfig`
in which every default is filled in (the "resolved" config that each run saves);
:func:`validate_config` does the last step for a raw mapping. Any problem raises
:class:`~dream_rl.errors.ConfigError` with a one-line message that names the key path and, for an
unknown key or name, the nearest valid one.

The work is split by concern, and every name stays importable from here:

==================  ===========================================================================
:mod:`.schema`      the sections as pydantic models (the schema, documented there), and :class:`Run`
:mod:`.fields`      the value types of fields, and the base of every section
:mod:`.checks`      values checked against RecurrentPPO, the policies, the torsos and the envs
:mod:`.names`       policy, torso and class names a config may use, and their classes
:mod:`.problems`    the one-line messages made of what the validators find
:mod:`.yamlio`      safe YAML reading (size, depth and alias-expansion limits) and writing
:mod:`.overrides`   ``KEY.PATH=VALUE`` overrides of a raw config
==================  ===========================================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dream_rl.errors import ConfigError
from dream_rl.experiments.checks import BUILD_ENVS, check_policy_space, constructor_parameters, observation_space
from dream_rl.experiments.fields import (
    Bool,
    Count,
    Device,
    FolderName,
    Fraction,
    Int,
    Kwargs,
    NonNegative,
    Number,
    Positive,
    Seed,
    Text,
)
from dream_rl.experiments.names import policy_names, resolve_class, resolve_policy
from dream_rl.experiments.overrides import apply_overrides, parse_override
from dream_rl.experiments.problems import Problem, config_error, from_validation_error, nearest
from dream_rl.experiments.schema import (
    EnvConfig,
    ExperimentConfig,
    PolicyConfig,
    ReportConfig,
    Run,
    SuiteEnvConfig,
    TrainConfig,
    default_env_label,
)
from dream_rl.experiments.yamlio import MAX_YAML_CHARS, MAX_YAML_DEPTH, MAX_YAML_VALUES, dump_yaml, read_yaml

__all__ = [
    "ConfigError",
    "EnvConfig",
    "ExperimentConfig",
    "PolicyConfig",
    "ReportConfig",
    "Run",
    "SuiteEnvConfig",
    "TrainConfig",
    "apply_overrides",
    "config_to_yaml",
    "dump_yaml",
    "load_config",
    "parse_override",
    "policy_names",
    "read_yaml",
    "resolve_class",
    "resolve_policy",
    "validate_config",
    # importable from this module before it was split by concern: re-exported for existing imports
    "Bool",
    "Count",
    "Device",
    "FolderName",
    "Fraction",
    "Int",
    "Kwargs",
    "MAX_YAML_CHARS",
    "MAX_YAML_DEPTH",
    "MAX_YAML_VALUES",
    "NonNegative",
    "Number",
    "Positive",
    "Seed",
    "Text",
    "constructor_parameters",
    "default_env_label",
]

def load_config(path: str | Path, overrides: Iterable[str] = (), *, build_envs: bool = True) -> ExperimentConfig:
    """Read ``path``, apply ``overrides`` and validate (see :func:`validate_config` for
    ``build_envs``). Raises :class:`ConfigError`."""
    return validate_config(apply_overrides(read_yaml(path), overrides), build_envs=build_envs)


def config_to_yaml(config: ExperimentConfig) -> str:
    """The resolved config as YAML (readable back by :func:`load_config`)."""
    return dump_yaml(config.to_dict())


def validate_config(raw: Any, *, build_envs: bool = True) -> ExperimentConfig:
    """Check every key of a raw config and fill in the defaults (see :mod:`.schema`).

    ``build_envs=True`` (a config to train) also builds each env once, from its registered id, to
    check its kwargs and its observation space against the policies. ``build_envs=False`` checks
    the config as data only (env ids must still be registered ids, but nothing is built or imported):
    what ``report`` and ``evaluate`` do with the ``config.yaml`` of a results folder."""
    token = BUILD_ENVS.set(build_envs)
    try:
        try:
            config = ExperimentConfig.model_validate(raw)
        except ValidationError as error:
            raise from_validation_error(error) from None
        except Problem as problem:  # raised before pydantic's own loop (a non-mapping config)
            raise config_error(("config",), problem) from None
        return _resolve(config, build_envs)
    finally:
        BUILD_ENVS.reset(token)


def _resolve(config: ExperimentConfig, build_envs: bool = True) -> ExperimentConfig:
    """Checks across sections, and the defaults that depend on other values."""
    if build_envs:
        spaces = [observation_space(env.id, env.kwargs, where) for where, env in _envs_with_paths(config)]
        for (_where, env), space in zip(_envs_with_paths(config), spaces):
            for label, spec in config.policies.items():
                check_policy_space(spec.policy, space, f"policies.{label}.policy", env.id)

    envs = config.envs
    if envs is not None:
        envs = [env if env.label else env.model_copy(update={"label": default_env_label(env.id)}) for env in envs]
        seen: dict[str, int] = {}
        for index, env in enumerate(envs):
            if env.label in seen:
                raise ConfigError(
                    f"envs.{index}.label: envs {seen[env.label]} and {index} are both labelled {env.label!r} "
                    "(the output folder): give each a distinct label", f"envs.{index}.label")
            seen[env.label] = index  # type: ignore[index]

    n_envs = config.env_list[0].n_envs
    train = config.train
    eval_every = train.eval_every or max(train.total_timesteps // 10, n_envs)
    train = train.model_copy(update={"eval_every": eval_every, "checkpoint_every": train.checkpoint_every or eval_every})

    baseline = config.report.baseline
    if baseline is None:
        baseline = "lstm" if "lstm" in config.policies else None
    elif baseline not in config.policies:
        near = nearest(baseline, config.policies)
        hint = f"did you mean '{near}'?" if near else f"policies: {', '.join(config.policies)}"
        raise ConfigError(f"report.baseline: {baseline!r} is not a policy label ({hint})", "report.baseline", near)
    return config.model_copy(update={"envs": envs, "train": train, "report": ReportConfig(baseline=baseline)})


def _envs_with_paths(config: ExperimentConfig) -> list[tuple[str, EnvConfig]]:
    if config.envs is None:
        return [("env", config.env)]  # type: ignore[list-item]
    return [(f"envs.{index}", env) for index, env in enumerate(config.envs)]
