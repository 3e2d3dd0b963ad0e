"""Experiment configs: read a YAML file, apply dotted overrides, validate every key.

A config describes one experiment: one environment, one set of RecurrentPPO hyper-parameters,
several policies and several seeds. Every policy is trained once per seed with the same budget.

Schema (``[default]``; keys without a default are required)::

    name: str                      experiment name; outputs go to <output_dir>/<name>/
                                   (letters, digits, '_', '-', '.')
    env:
      id: str                      a registered gymnasium id, e.g. dream_rl/TMaze-v0
      kwargs: {str: any}           [{}] passed to gymnasium.make; checked against the env's
                                   constructor
      n_envs: int >= 1             [8] parallel training environments
      vec_env: dummy | subproc     [dummy] DummyVecEnv (one process) or SubprocVecEnv
    algo:                          [{}] RecurrentPPO constructor arguments (n_steps, batch_size,
                                   learning_rate, gamma, ...). Missing ones get RecurrentPPO's
                                   defaults, except device, which defaults to "cpu". policy, env,
                                   seed, verbose, tensorboard_log and policy_kwargs are set by the
                                   runner and may not appear here.
    policies:                      one entry per policy to compare; the label names the output
      <label>:                     folder (letters, digits, '_', '-', '.')
        policy: str                a policy class name: dream-rl's (dream_rl.POLICIES, e.g.
                                   MlpDreamPolicy, MlpGruPolicy) or sb3-contrib's (MlpLstmPolicy,
                                   CnnLstmPolicy, MultiInputLstmPolicy)
        policy_kwargs: {str: any}  [{}] the policy's constructor arguments (lstm_hidden_size,
                                   n_lstm_layers, net_arch, dream_kwargs, ...). Classes are given
                                   by name: activation_fn: ReLU, optimizer_class: AdamW,
                                   features_extractor_class: NatureCNN.
      <label>: PolicyName          short for {policy: PolicyName}
    train:
      total_timesteps: int >= 1    environment steps per run (all n_envs together)
      seeds: [int >= 0, ...]       [[0]] one run per policy per seed; distinct
      eval_every: int >= 1         [total_timesteps // 10] steps between evaluations
      eval_episodes: int >= 1      [20] episodes per evaluation
      eval_deterministic: bool     [true] greedy actions during evaluation
      checkpoint_every: int >= 1   [eval_every] steps between checkpoints
      keep_checkpoints: int >= 1   [3] most recent checkpoints kept per run
      progress_bar: bool           [true] a progress bar per run (tqdm + rich)
      torch_threads: int >= 1      [1] torch.set_num_threads during training
    output_dir: str                [runs] root of all outputs

A relative output_dir is relative to the working directory. Numbers may be written ``3e-4`` or
``1e5`` (YAML 1.1 would read those as strings); an integer key accepts a float with an integral
value (``1e5``).

:func:`load_config` reads, overrides and validates a file and returns an
:class:`ExperimentConfig` in which every default is filled in (the "resolved" config that each run
saves). Any problem raises :class:`ConfigError` with a one-line message that names the key path
and, for an unknown key or name, the nearest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import numbers
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ConfigError",
    "EnvConfig",
    "ExperimentConfig",
    "PolicyConfig",
    "TrainConfig",
    "apply_overrides",
    "config_to_yaml",
    "load_config",
    "parse_override",
    "policy_names",
    "read_yaml",
    "resolve_class",
    "resolve_policy",
    "validate_config",
]


class ConfigError(ValueError):
    """An invalid experiment config or override. The message is one line naming the key path.

    Attributes:
        key: the dotted key path at fault ("" when the problem is not about one key).
        suggestion: the nearest valid key or name, when there is one.
    """

    def __init__(self, message: str, key: str = "", suggestion: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.suggestion = suggestion


# --------------------------------------------------------------------------------------------
# Resolved config


@dataclass(frozen=True)
class EnvConfig:
    id: str
    kwargs: dict[str, Any]
    n_envs: int = 8
    vec_env: str = "dummy"


@dataclass(frozen=True)
class PolicyConfig:
    policy: str
    policy_kwargs: dict[str, Any]


@dataclass(frozen=True)
class TrainConfig:
    total_timesteps: int
    seeds: list[int]
    eval_every: int
    eval_episodes: int = 20
    eval_deterministic: bool = True
    checkpoint_every: int = 0
    keep_checkpoints: int = 3
    progress_bar: bool = True
    torch_threads: int = 1


@dataclass(frozen=True)
class ExperimentConfig:
    """A validated config with every default filled in."""

    name: str
    env: EnvConfig
    algo: dict[str, Any]
    policies: dict[str, PolicyConfig]
    train: TrainConfig
    output_dir: str = "runs"

    @property
    def experiment_dir(self) -> Path:
        """``<output_dir>/<name>``: holds the comparison and one folder per policy."""
        return Path(self.output_dir) / self.name

    def run_dir(self, label: str, seed: int) -> Path:
        """``<output_dir>/<name>/<label>/seed_<seed>``: everything one run leaves behind."""
        return self.experiment_dir / label / f"seed_{seed}"

    def runs(self) -> list[tuple[str, int]]:
        """(policy label, seed) of every run, policy by policy."""
        return [(label, seed) for label in self.policies for seed in self.train.seeds]

    def for_run(self, label: str, seed: int) -> ExperimentConfig:
        """This config narrowed to one policy and one seed (what a run saves as config.yaml)."""
        train = dataclasses.replace(self.train, seeds=[seed])
        return dataclasses.replace(self, policies={label: self.policies[label]}, train=train)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict in schema order (a valid config again)."""
        return {
            "name": self.name,
            "env": dataclasses.asdict(self.env),
            "algo": dict(self.algo),
            "policies": {label: dataclasses.asdict(p) for label, p in self.policies.items()},
            "train": dataclasses.asdict(self.train),
            "output_dir": self.output_dir,
        }


# --------------------------------------------------------------------------------------------
# Reading YAML and overrides


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads 3e-4 as a float and rejects duplicate keys."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})", str(key))
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The raw mapping in a YAML file (not validated)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = _yaml_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping (name: ..., env: ..., ...)")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.seeds=[0,1]"`` -> (["train", "seeds"], [0, 1]). The value is read as YAML."""
    key, sep, value_text = text.partition("=")
    key = key.strip()
    path = key.split(".")
    if not sep or not key or any(not part or not part.strip() for part in path):
        raise ConfigError(f"bad override {text!r}: expected KEY.PATH=VALUE, e.g. train.total_timesteps=5000", key)
    if not value_text.strip():
        raise ConfigError(f"bad override {text!r}: empty value (write null for None)", key)
    try:
        value = _yaml_load(value_text)
    except yaml.YAMLError:
        raise ConfigError(f"bad override {text!r}: the value is not valid YAML (quote strings with brackets)", key) from None
    return [part.strip() for part in path], value


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``raw`` with dotted overrides applied (missing mappings are created)."""
    result = _deep_copy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for depth, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                where = ".".join(path[: depth + 1])
                raise ConfigError(f"bad override {text!r}: {where} is not a mapping", where)
            node = child
        node[path[-1]] = value
    return result


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Read ``path``, apply ``overrides`` and validate. Raises :class:`ConfigError`."""
    return validate_config(apply_overrides(read_yaml(path), overrides))


class _Dumper(yaml.SafeDumper):
    """Block-style mappings, flow-style lists (seeds: [0, 1], net_arch: [64, 64])."""


_Dumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)


def config_to_yaml(config: ExperimentConfig) -> str:
    """The resolved config as YAML (readable back by :func:`load_config`)."""
    return yaml.dump(config.to_dict(), Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# Checks on single values. Each returns the (normalised) value or raises ConfigError.

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _check_int(value: Any, key: str, low: int | None = None) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    wanted = "an integer" + (f" >= {low}" if low is not None else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{key}: expected {wanted}, got {_describe(value)}", key)
    if low is not None and value < low:
        raise ConfigError(f"{key}: must be >= {low}, got {value}", key)
    return int(value)


def _check_float(
    value: Any, key: str, low: float = -math.inf, high: float = math.inf, low_open: bool = False
) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{key}: expected a number, got {_describe(value)}", key)
    value = float(value)
    too_low = value < low or (low_open and value == low)
    if not math.isfinite(value) or too_low or value > high:
        left = "(" if low_open else "["
        right = ")" if math.isinf(high) else "]"
        bounds = f"{left}{low:g}, {high:g}{right}"
        raise ConfigError(f"{key}: must be in {bounds}, got {value!r}", key)
    return value


def _check_bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {_describe(value)}", key)
    return value


def _check_str(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: expected a non-empty string, got {_describe(value)}", key)
    return value


def _check_choice(value: Any, key: str, choices: Sequence[str]) -> str:
    value = _check_str(value, key)
    if value not in choices:
        raise ConfigError(f"{key}: must be one of {', '.join(choices)}, got {value!r}", key, _nearest(value, choices))
    return value


def _check_mapping(value: Any, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping (key: value, ...), got {_describe(value)}", key)
    for name in value:
        if not isinstance(name, str):
            raise ConfigError(f"{key}: keys must be strings, got {name!r}", key)
    return value


def _check_safe_name(value: Any, key: str) -> str:
    value = _check_str(value, key)
    if not _SAFE_NAME.match(value) or value in (".", ".."):
        raise ConfigError(f"{key}: {value!r} is used as a folder name: use letters, digits, '_', '-', '.'", key)
    return value


def _nearest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``word`` (case-insensitively), or None if none is close."""
    by_lower = {str(c).lower(): str(c) for c in candidates}
    matches = difflib.get_close_matches(str(word).lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[matches[0]] if matches else None


def _check_keys(mapping: dict[str, Any], valid: Iterable[str], prefix: str, required: Iterable[str] = ()) -> None:
    """Unknown keys (with the nearest valid one) and missing required keys."""
    valid = list(valid)
    for key in mapping:
        if key not in valid:
            path = f"{prefix}.{key}" if prefix else str(key)
            near = _nearest(key, valid)
            if near is not None:
                hint = f"did you mean '{prefix + '.' if prefix else ''}{near}'?"
            else:
                hint = f"valid keys: {', '.join(valid)}"
            raise ConfigError(f"unknown key '{path}' ({hint})", path, near)
    for key in required:
        if key not in mapping:
            path = f"{prefix}.{key}" if prefix else key
            raise ConfigError(f"missing required key '{path}'", path)


# --------------------------------------------------------------------------------------------
# Policies and classes given by name


def policy_names() -> dict[str, type]:
    """Every policy name a config may use: dream-rl's, then sb3-contrib's stock ones."""
    from sb3_contrib import RecurrentPPO

    from dream_rl import POLICIES

    names: dict[str, type] = dict(POLICIES)
    for name, cls in RecurrentPPO.policy_aliases.items():
        names.setdefault(name, cls)
    return names


def resolve_policy(name: str, key: str = "policy") -> type:
    """The policy class called ``name``, or ConfigError with the nearest name."""
    names = policy_names()
    if name not in names:
        near = _nearest(name, names)
        hint = f"did you mean '{near}'?" if near else f"choose one of {', '.join(names)}"
        raise ConfigError(f"{key}: unknown policy {name!r} ({hint})", key, near)
    return names[name]


def _class_tables() -> dict[str, dict[str, type]]:
    """policy_kwargs that take a class, and the names they accept."""
    import torch as th
    from stable_baselines3.common import torch_layers
    from torch import nn

    activations = {
        name: cls
        for name, cls in vars(nn.modules.activation).items()
        if isinstance(cls, type)
        and issubclass(cls, nn.Module)
        and cls.__module__ == nn.modules.activation.__name__
        and name not in ("MultiheadAttention", "NonDynamicallyQuantizableLinear")
    }
    optimizers = {
        name: cls
        for name, cls in vars(th.optim).items()
        if isinstance(cls, type) and issubclass(cls, th.optim.Optimizer) and cls is not th.optim.Optimizer
    }
    extractors = {
        name: cls
        for name, cls in vars(torch_layers).items()
        if isinstance(cls, type)
        and issubclass(cls, torch_layers.BaseFeaturesExtractor)
        and cls is not torch_layers.BaseFeaturesExtractor
    }
    return {"activation_fn": activations, "optimizer_class": optimizers, "features_extractor_class": extractors}


def resolve_class(kwarg: str, name: str, key: str | None = None) -> type:
    """The class named ``name`` for the policy argument ``kwarg`` (e.g. activation_fn: ReLU)."""
    key = key or kwarg
    table = _class_tables()[kwarg]
    if not isinstance(name, str) or name not in table:
        near = _nearest(str(name), table)
        examples = {"activation_fn": "Tanh, ReLU, ELU, GELU, SiLU", "optimizer_class": "Adam, AdamW, SGD, RMSprop",
                    "features_extractor_class": ", ".join(table)}[kwarg]
        hint = f"did you mean '{near}'?" if near else f"e.g. {examples}"
        raise ConfigError(f"{key}: unknown class {name!r} ({hint})", key, near)
    return table[name]


def constructor_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """Keyword parameters of ``cls.__init__``, following ``**kwargs`` up the class hierarchy."""
    params: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        forwards_kwargs = False
        for name, param in inspect.signature(vars(klass)["__init__"]).parameters.items():
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                forwards_kwargs = True
            elif param.kind is not inspect.Parameter.VAR_POSITIONAL and name != "self":
                params.setdefault(name, param)
        if not forwards_kwargs:
            break
    return params


# --------------------------------------------------------------------------------------------
# Sections

_TOP_KEYS = ("name", "env", "algo", "policies", "train", "output_dir")
_ENV_KEYS = ("id", "kwargs", "n_envs", "vec_env")
_POLICY_KEYS = ("policy", "policy_kwargs")
_TRAIN_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig))

# RecurrentPPO arguments the runner sets itself, and where their value comes from.
_ALGO_RESERVED = {
    "policy": "set per run from policies.<label>.policy",
    "env": "built from the env section",
    "seed": "set per run from train.seeds",
    "verbose": "the runner prints its own progress",
    "tensorboard_log": "every run logs to <run dir>/tb",
    "policy_kwargs": "goes under policies.<label>.policy_kwargs",
    "_init_setup_model": "internal to stable-baselines3",
}
# Policy arguments RecurrentPPO sets itself.
_POLICY_RESERVED = ("observation_space", "action_space", "lr_schedule", "use_sde")


def validate_config(raw: dict[str, Any]) -> ExperimentConfig:
    """Check every key of a raw config and fill in the defaults (see the module docstring)."""
    import dream_rl  # noqa: F401  (registers the env suite and exposes the policies)

    raw = _check_mapping(raw, "config")
    _check_keys(raw, _TOP_KEYS, "", required=("name", "env", "policies", "train"))
    name = _check_safe_name(raw["name"], "name")
    output_dir = _check_str(raw.get("output_dir", "runs"), "output_dir")
    env, observation_space = _validate_env(raw["env"])
    algo = _validate_algo(raw.get("algo"))
    policies = _validate_policies(raw["policies"], observation_space)
    train = _validate_train(raw["train"], env.n_envs)
    return ExperimentConfig(name=name, env=env, algo=algo, policies=policies, train=train, output_dir=output_dir)


def _validate_env(value: Any) -> tuple[EnvConfig, Any]:
    """The env section, and the observation space of one instance (to check policies against)."""
    import gymnasium as gym

    section = _check_mapping(value, "env")
    _check_keys(section, _ENV_KEYS, "env", required=("id",))
    env_id = _check_str(section["id"], "env.id")
    if env_id not in gym.registry:
        near = _nearest(env_id, gym.registry)
        hint = f"did you mean '{near}'?" if near else "`dream-rl envs` lists the suite"
        raise ConfigError(f"env.id: {env_id!r} is not a registered gymnasium environment ({hint})", "env.id", near)
    kwargs = dict(_check_mapping(section.get("kwargs"), "env.kwargs"))
    _check_env_kwargs(env_id, kwargs)
    n_envs = _check_int(section.get("n_envs", 8), "env.n_envs", low=1)
    vec_env = _check_choice(section.get("vec_env", "dummy"), "env.vec_env", ("dummy", "subproc"))
    try:
        probe = gym.make(env_id, **kwargs)
    except (TypeError, ValueError, AssertionError) as error:  # a bad kwargs value
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"env.kwargs: {env_id} could not be created with {kwargs}: {message}", "env.kwargs") from None
    observation_space = probe.observation_space
    probe.close()
    return EnvConfig(id=env_id, kwargs=kwargs, n_envs=n_envs, vec_env=vec_env), observation_space


def _check_env_kwargs(env_id: str, kwargs: dict[str, Any]) -> None:
    """Unknown env kwargs, when the env's constructor does not take ``**kwargs``."""
    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    if not kwargs:
        return
    entry_point = gym.spec(env_id).entry_point
    try:
        creator = load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
        params = inspect.signature(creator).parameters
    except (ValueError, TypeError, ImportError, AttributeError):
        return  # no inspectable signature: gym.make will tell
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL and n != "self"]
    _check_keys(kwargs, valid, "env.kwargs")


def _validate_algo(value: Any) -> dict[str, Any]:
    from sb3_contrib import RecurrentPPO

    section = _check_mapping(value, "algo")
    params = {
        name: p
        for name, p in inspect.signature(RecurrentPPO.__init__).parameters.items()
        if name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD
    }
    for key in section:
        if key in _ALGO_RESERVED:
            raise ConfigError(f"algo.{key} may not be set here: {_ALGO_RESERVED[key]}", f"algo.{key}")
    allowed = [name for name in params if name not in _ALGO_RESERVED]
    _check_keys(section, allowed, "algo")

    algo: dict[str, Any] = {}
    for name in allowed:
        default = params[name].default
        if name == "device":
            default = "cpu"  # small recurrent nets: the CPU is faster than a GPU round trip
        value = section.get(name, default)
        if callable(value):  # a schedule default (none today): leave it to RecurrentPPO
            continue
        algo[name] = _check_algo_value(name, value, default)
    return algo


def _check_algo_value(name: str, value: Any, default: Any) -> Any:
    key = f"algo.{name}"
    if name in ("n_steps", "n_epochs", "stats_window_size"):
        return _check_int(value, key, low=1)
    if name == "batch_size":
        return _check_int(value, key, low=2)  # RecurrentPPO asserts batch_size > 1
    if name == "sde_sample_freq":
        return _check_int(value, key, low=-1)
    if name in ("learning_rate", "clip_range", "max_grad_norm"):
        return _check_float(value, key, low=0.0, low_open=True)
    if name in ("gamma", "gae_lambda"):
        return _check_float(value, key, low=0.0, high=1.0)
    if name in ("ent_coef", "vf_coef"):
        return _check_float(value, key, low=0.0)
    if name in ("clip_range_vf", "target_kl"):
        return None if value is None else _check_float(value, key, low=0.0, low_open=True)
    if name == "device":
        value = _check_str(value, key)
        if not re.match(r"^(auto|cpu|mps|cuda(:\d+)?)$", value):
            raise ConfigError(f"{key}: expected auto, cpu, cuda, cuda:N or mps, got {value!r}", key)
        return value
    return _check_like_default(value, default, key)


def _check_like_default(value: Any, default: Any, key: str) -> Any:
    """A value of the same kind as the parameter's default (any value when the default is None)."""
    if isinstance(default, bool):
        return _check_bool(value, key)
    if isinstance(default, int):
        return _check_int(value, key)
    if isinstance(default, float):
        return _check_float(value, key)
    if isinstance(default, str):
        return _check_str(value, key)
    return value


def _validate_policies(value: Any, observation_space: Any) -> dict[str, PolicyConfig]:
    section = _check_mapping(value, "policies")
    if not section:
        raise ConfigError("policies: at least one policy is needed, e.g. lstm: {policy: MlpLstmPolicy}", "policies")
    policies = {}
    for label, spec in section.items():
        prefix = f"policies.{label}"
        _check_safe_name(label, prefix)
        if isinstance(spec, str):  # shorthand: `lstm: MlpLstmPolicy`
            spec = {"policy": spec}
        spec = _check_mapping(spec, prefix)
        _check_keys(spec, _POLICY_KEYS, prefix, required=("policy",))
        policy_name = _check_str(spec["policy"], f"{prefix}.policy")
        policy_class = resolve_policy(policy_name, f"{prefix}.policy")
        _check_policy_space(policy_name, observation_space, f"{prefix}.policy")
        kwargs = _validate_policy_kwargs(policy_class, spec.get("policy_kwargs"), f"{prefix}.policy_kwargs")
        policies[label] = PolicyConfig(policy=policy_name, policy_kwargs=kwargs)
    return policies


def _check_policy_space(policy_name: str, observation_space: Any, key: str) -> None:
    from gymnasium import spaces

    if isinstance(observation_space, spaces.Dict) and not policy_name.startswith("MultiInput"):
        wanted = "MultiInput" + policy_name.removeprefix("Mlp").removeprefix("Cnn")
        raise ConfigError(f"{key}: the env has Dict observations: use {wanted}", key, wanted)
    if not isinstance(observation_space, spaces.Dict) and policy_name.startswith("MultiInput"):
        wanted = "Mlp" + policy_name.removeprefix("MultiInput")
        raise ConfigError(f"{key}: {policy_name} needs Dict observations; this env's are not: use {wanted}", key, wanted)


def _validate_policy_kwargs(policy_class: type, value: Any, prefix: str) -> dict[str, Any]:
    kwargs = dict(_check_mapping(value, prefix))
    params = {n: p for n, p in constructor_parameters(policy_class).items() if n not in _POLICY_RESERVED}
    for name in kwargs:
        if name in _POLICY_RESERVED:
            raise ConfigError(f"{prefix}.{name} is set by RecurrentPPO and may not appear here", f"{prefix}.{name}")
    _check_keys(kwargs, params, prefix)

    for name, item in kwargs.items():
        key = f"{prefix}.{name}"
        if name in ("lstm_hidden_size", "n_lstm_layers"):
            kwargs[name] = _check_int(item, key, low=1)
        elif name == "net_arch":
            kwargs[name] = _check_net_arch(item, key)
        elif name in _class_tables():
            resolve_class(name, item, key)
        elif name in ("lstm_kwargs", "features_extractor_kwargs", "optimizer_kwargs"):
            kwargs[name] = dict(_check_mapping(item, key))
        elif name != "dream_kwargs":
            kwargs[name] = _check_like_default(item, params[name].default, key)
    if kwargs.get("shared_lstm") and kwargs.get("enable_critic_lstm", True):
        key = f"{prefix}.shared_lstm"
        raise ConfigError(f"{key}: shared_lstm: true needs enable_critic_lstm: false", key)
    if "dream_kwargs" in kwargs:
        hidden = kwargs.get("lstm_hidden_size", params["lstm_hidden_size"].default if "lstm_hidden_size" in params else 256)
        kwargs["dream_kwargs"] = _check_dream_kwargs(kwargs["dream_kwargs"], hidden, f"{prefix}.dream_kwargs")
    return kwargs


def _check_net_arch(value: Any, key: str) -> Any:
    def layers(item: Any, where: str) -> list[int]:
        if not isinstance(item, list):
            raise ConfigError(f"{where}: expected a list of layer sizes, e.g. [64, 64], got {_describe(item)}", where)
        return [_check_int(size, where, low=1) for size in item]

    if value is None:
        return None
    if isinstance(value, dict):
        _check_keys(value, ("pi", "vf"), key)
        return {head: layers(sizes, f"{key}.{head}") for head, sizes in value.items()}
    return layers(value, key)


def _check_dream_kwargs(value: Any, hidden_size: int, key: str) -> dict[str, Any]:
    """DREAMConfig fields except input_dim and hidden_dim; values checked by DREAMConfig itself."""
    from dream_rl.config import DREAMConfig
    from dream_rl.errors import DREAMError

    kwargs = dict(_check_mapping(value, key))
    fields = [f.name for f in dataclasses.fields(DREAMConfig) if f.name not in ("input_dim", "hidden_dim")]
    for name in kwargs:
        if name in ("input_dim", "hidden_dim"):
            hint = "the features width" if name == "input_dim" else "lstm_hidden_size"
            raise ConfigError(f"{key}.{name} is set from {hint}", f"{key}.{name}")
    _check_keys(kwargs, fields, key)
    try:
        DREAMConfig(input_dim=1, hidden_dim=hidden_size, **{"rank": min(16, hidden_size), **kwargs})
    except DREAMError as error:
        raise ConfigError(f"{key}: {error}", key) from None
    return kwargs


def _validate_train(value: Any, n_envs: int) -> TrainConfig:
    section = _check_mapping(value, "train")
    _check_keys(section, _TRAIN_KEYS, "train", required=("total_timesteps",))
    total = _check_int(section["total_timesteps"], "train.total_timesteps", low=1)

    seeds = section.get("seeds", [0])
    if isinstance(seeds, bool) or not isinstance(seeds, list) or not seeds:
        raise ConfigError(f"train.seeds: expected a non-empty list of integers, e.g. [0, 1, 2], got {_describe(seeds)}", "train.seeds")
    seeds = [_check_int(s, "train.seeds", low=0) for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"train.seeds: seeds must be distinct, got {seeds}", "train.seeds")

    eval_every = _check_int(section.get("eval_every", max(total // 10, n_envs)), "train.eval_every", low=1)
    return TrainConfig(
        total_timesteps=total,
        seeds=seeds,
        eval_every=eval_every,
        eval_episodes=_check_int(section.get("eval_episodes", 20), "train.eval_episodes", low=1),
        eval_deterministic=_check_bool(section.get("eval_deterministic", True), "train.eval_deterministic"),
        checkpoint_every=_check_int(section.get("checkpoint_every", eval_every), "train.checkpoint_every", low=1),
        keep_checkpoints=_check_int(section.get("keep_checkpoints", 3), "train.keep_checkpoints", low=1),
        progress_bar=_check_bool(section.get("progress_bar", True), "train.progress_bar"),
        torch_threads=_check_int(section.get("torch_threads", 1), "train.torch_threads", low=1),
    )
