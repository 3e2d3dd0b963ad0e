"""Experiment configs: read a YAML file, apply dotted overrides, validate every key.

A config describes one experiment: one or several environments, one set of RecurrentPPO
hyper-parameters, several policies and several seeds. Every policy is trained once per seed on
every environment with the same budget: the runs are env x policy x seed.

Schema (``[default]``; keys without a default are required)::

    name: str                      experiment name; outputs go to <output_dir>/<name>/
                                   (letters, digits, '_', '-', '.')
    env:                           one environment (or `envs:` below, not both)
      id: str                      a registered gymnasium id, e.g. dream_rl/TMaze-v0
      kwargs: {str: any}           [{}] passed to gymnasium.make; checked against the env's
                                   constructor
      n_envs: int >= 1             [8] parallel training environments
      vec_env: dummy | subproc     [dummy] DummyVecEnv (one process) or SubprocVecEnv
    envs:                          several environments: a list of env entries as above, plus
      - id: ...                    label: str            [the id's last part, e.g. TMaze-v0] the
        label: str                                       env's output folder; required when two
        total_timesteps: int >= 1                        entries share an id
        eval_every: int >= 1       total_timesteps, eval_every  [train's] this env's budget
        algo: {str: any}           algo                  [{}] RecurrentPPO arguments for this
                                                         env only, over the top-level algo
    algo:                          [{}] RecurrentPPO constructor arguments (n_steps, batch_size,
                                   learning_rate, gamma, ...). Missing ones get RecurrentPPO's
                                   defaults, except device, which defaults to "cpu". policy, env,
                                   seed, verbose, tensorboard_log and policy_kwargs are set by the
                                   runner and may not appear here.
    policies:                      one entry per policy to compare; the label names the output
      <label>:                     folder (letters, digits, '_', '-', '.')
        policy: str                a policy class name: dream-rl's (dream_rl.POLICIES, e.g.
                                   MlpDreamPolicy, MlpGruPolicy, MlpTorsoPolicy) or sb3-contrib's
                                   (MlpLstmPolicy, CnnLstmPolicy, MultiInputLstmPolicy)
        policy_kwargs: {str: any}  [{}] the policy's constructor arguments (lstm_hidden_size,
                                   n_lstm_layers, net_arch, dream_kwargs, ...; for MlpTorsoPolicy
                                   torso: a name in dream_rl.TORSOS and torso_kwargs). Classes are
                                   given by name: activation_fn: ReLU, optimizer_class: AdamW,
                                   features_extractor_class: NatureCNN.
      <label>: PolicyName          short for {policy: PolicyName}
    train:
      total_timesteps: int >= 1    environment steps per run (all n_envs together)
      seeds: [int >= 0, ...]       [[0]] one run per env, policy and seed; distinct
      eval_every: int >= 1         [max(total_timesteps // 10, n_envs)] steps between evaluations
      eval_episodes: int >= 1      [20] episodes per evaluation
      eval_deterministic: bool     [true] greedy actions during evaluation
      checkpoint_every: int >= 1   [eval_every] steps between checkpoints
      keep_checkpoints: int >= 1   [3] most recent checkpoints kept per run
      progress_bar: bool           [true] a progress bar per run (tqdm + rich; only with one worker)
      torch_threads: int >= 1      [1] torch.set_num_threads during training (and the CPUs a
                                   parallel worker or a Ray task asks for)
    report:
      baseline: str                [lstm if there is such a policy] the policy label the others
                                   are compared with (probability of improvement) in the
                                   aggregate over envs
    output_dir: str                [runs] root of all outputs

Overrides (``KEY.PATH=VALUE``, the value read as YAML) are applied to the raw config before it is
validated. ``train.total_timesteps=N`` (or ``train.eval_every=N``) applies to every env: it also
replaces the per-env values of an ``envs:`` list, unless an override sets the entry's own value
(``envs.1.total_timesteps=M``). ``env=null`` or ``envs=null`` removes that key.

What a config may name is closed: an env is a registered gymnasium id (never a ``module:callable``
entry point), a policy is one of :func:`policy_names`, and classes in policy_kwargs are names in
fixed tables (:func:`resolve_class`); YAML tags (``!!python/...``) are refused by the loader. See
docs/security.md.

A relative output_dir is relative to the working directory. Numbers may be written ``3e-4`` or
``1e5`` (YAML 1.1 would read those as strings); an integer key accepts a float with an integral
value (``1e5``).

The static sections are pydantic models (unknown keys forbidden, typed ranges); ``algo`` is a
pydantic model built from RecurrentPPO's signature; policy and env kwargs are checked against the
constructors they go to. :func:`load_config` reads, overrides and validates a file and returns an
:class:`ExperimentConfig` in which every default is filled in (the "resolved" config that each run
saves). Any problem raises :class:`ConfigError` with a one-line message that names the key path
and, for an unknown key or name, the nearest valid one.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import re
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from dream_rl.errors import ConfigError

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
]


# --------------------------------------------------------------------------------------------
# Reading YAML and overrides


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads 3e-4 as a float and rejects duplicate keys."""


_FLOAT_WITHOUT_DOT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_WITHOUT_DOT, list("-+0123456789."))


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: merged keys may be overridden
            continue
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # an unhashable key: yaml reports it below
            continue
        if duplicate:
            raise ConfigError(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})", str(key))
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


# A config is small: the resolved leaderboard config holds about 2,000 values. A document whose
# aliases expand to far more (aliases of aliases of aliases: the "billion laughs" document, 400 bytes
# for 9**9 values) would make every later step (overrides, validation, copies) walk that many values.
MAX_YAML_VALUES = 100_000
# PyYAML's scanner takes time quadratic in the depth of nested [ and { (5,000 levels: many seconds),
# and its composer recurses once per level; a config nests a few levels. Checked on the text first.
MAX_YAML_DEPTH = 100
MAX_YAML_CHARS = 1_000_000


def _flow_depth(text: str) -> int:
    """The deepest run of unclosed ``[`` / ``{`` in ``text`` (brackets in strings count too: an upper
    bound of the flow nesting, found in one linear pass)."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}" and depth:
            depth -= 1
    return deepest


def _yaml_load(text: str) -> Any:
    """The value of a YAML document (safe loader: plain values only), refused when it is longer than
    :data:`MAX_YAML_CHARS`, nests deeper than :data:`MAX_YAML_DEPTH`, is recursive or expands to more
    than :data:`MAX_YAML_VALUES` values."""
    if len(text) > MAX_YAML_CHARS:
        raise ConfigError(f"the YAML is {len(text):,} characters long: a config is a few KB (at most {MAX_YAML_CHARS:,})")
    if _flow_depth(text) > MAX_YAML_DEPTH:
        raise ConfigError(f"the YAML nests more than {MAX_YAML_DEPTH} levels of [ or {{: a config is a few levels deep")
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except RecursionError:
        raise ConfigError("the YAML nests too deeply to read: a config is a few levels deep") from None
    except yaml.constructor.ConstructorError as error:
        tag = re.search(r"constructor for the tag '([^']*)'", str(error.problem))
        if tag:
            shown = tag.group(1).replace("tag:yaml.org,2002:", "!!")
            raise ConfigError(
                f"YAML tag {shown} is not allowed: a config holds plain values only (numbers, strings, true/false, "
                "null, lists, mappings), and classes are given by name (activation_fn: ReLU)"
            ) from None
        raise
    _check_expansion(data)
    return data


def _check_expansion(value: Any) -> None:
    """Refuse a value that contains itself (``a: &a [*a]``) or whose aliases expand to more than
    MAX_YAML_VALUES values. Each container is visited once (aliases share one object), so this
    takes time linear in the document, however many times its aliases are used."""
    sizes: dict[int, int] = {}  # id -> expanded size of a finished container
    open_ids: set[int] = set()  # containers on the current path
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        node, children_done = stack.pop()
        if not isinstance(node, (dict, list)):
            continue
        key = id(node)
        items = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        if children_done:
            open_ids.discard(key)
            size = 1 + sum(sizes.get(id(item), 1) for item in items)
            if size > MAX_YAML_VALUES:
                raise ConfigError(
                    f"the YAML expands to more than {MAX_YAML_VALUES:,} values (aliases of aliases): "
                    "a config is a few hundred values; write it without nested aliases"
                )
            sizes[key] = size
            continue
        if key in sizes:
            continue
        if key in open_ids:
            raise ConfigError("recursive YAML anchor (a value that contains itself, like `a: &a [*a]`)")
        open_ids.add(key)
        stack.append((node, True))
        for item in items:
            if isinstance(item, (dict, list)):
                if id(item) in open_ids:
                    raise ConfigError("recursive YAML anchor (a value that contains itself, like `a: &a [*a]`)")
                if id(item) not in sizes:
                    stack.append((item, False))


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The raw mapping in a YAML file (not validated)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(
            f"{path} is a directory, not a config file: give a YAML file (an experiment directory keeps its "
            f"resolved config in {path / 'config.yaml'})"
        )
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    if not path.is_file():
        raise ConfigError(f"{path} is not a regular file: give a YAML config file")
    try:
        if path.stat().st_size > 4 * MAX_YAML_CHARS:  # refused before it is read into memory
            raise ConfigError(f"{path}: {path.stat().st_size:,} bytes: a config is a few KB (at most {MAX_YAML_CHARS:,} characters)")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {error.start}): a config is YAML text") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read ({error.strerror or type(error).__name__})") from None
    try:
        data = _yaml_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}", error.key) from None
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
    if not value_text.strip(" \t\r\n"):  # YAML's white space (a lone U+00A0 is a value)
        raise ConfigError(f"bad override {text!r}: empty value (write null for None)", key)
    try:
        value = _yaml_load(value_text)
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


def load_config(path: str | Path, overrides: Iterable[str] = (), *, build_envs: bool = True) -> ExperimentConfig:
    """Read ``path``, apply ``overrides`` and validate (see :func:`validate_config` for
    ``build_envs``). Raises :class:`ConfigError`."""
    return validate_config(apply_overrides(read_yaml(path), overrides), build_envs=build_envs)


class _Dumper(yaml.SafeDumper):
    """Block-style mappings, flow-style lists of scalars (seeds: [0, 1], net_arch: [64, 64]);
    quotes the strings that _Loader would read as floats ('1e5')."""


_Dumper.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_WITHOUT_DOT, list("-+0123456789."))

_Dumper.add_representer(
    list,
    lambda dumper, data: dumper.represent_sequence(
        "tag:yaml.org,2002:seq", data, flow_style=not any(isinstance(item, (dict, list)) for item in data)
    ),
)


def config_to_yaml(config: ExperimentConfig) -> str:
    """The resolved config as YAML (readable back by :func:`load_config`)."""
    return dump_yaml(config.to_dict())


def dump_yaml(value: Any, flow: bool = False) -> str:
    """``value`` as YAML that :func:`read_yaml` and overrides read back as the same value."""
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, default_flow_style=flow, allow_unicode=True, width=10**9)


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# Problems found by validators, and the one-line messages made of them


class _Problem(ValueError):
    """A problem at ``path`` below the value being validated (pydantic adds where that value is).

    ``unknown`` with ``valid`` keys makes the message "unknown key '<path>' (did you mean ...)".
    """

    def __init__(
        self, path: tuple[Any, ...], message: str, suggestion: str | None = None, valid: Iterable[str] | None = None
    ) -> None:
        super().__init__(message)
        self.path, self.message, self.suggestion = tuple(path), message, suggestion
        self.valid = list(valid) if valid is not None else None


def _dotted(path: Iterable[Any]) -> str:
    """``train.seeds``; a key that would break the one-line message is shown as its repr."""
    return ".".join(str(part) if str(part).isprintable() else repr(part) for part in path)


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _nearest(word: Any, candidates: Iterable[Any]) -> str | None:
    """The candidate closest to ``word`` (case-insensitively), or None if none is close."""
    by_lower = {str(c).lower(): str(c) for c in candidates}
    matches = difflib.get_close_matches(str(word).lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[matches[0]] if matches else None


def _config_error(path: tuple[Any, ...], problem: _Problem) -> ConfigError:
    key = _dotted(path)
    if problem.valid is not None:  # an unknown key
        near = _nearest(path[-1], problem.valid)
        parent = _dotted(path[:-1])
        if near is not None:
            hint = f"did you mean '{parent + '.' if parent else ''}{near}'?"
        else:
            hint = f"valid keys: {', '.join(problem.valid)}" if problem.valid else "no keys are allowed here"
        return ConfigError(f"unknown key '{key}' ({hint})", key, near)
    if problem.message == "missing":
        return ConfigError(f"missing required key '{key}'", key)
    return ConfigError(f"{key}: {problem.message}" if key else problem.message, key, problem.suggestion)


# pydantic error types -> our wording (ctx values fill the braces)
_MESSAGES = {
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "finite_number": "expected a finite number",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "string_too_short": "expected a non-empty string",
    "list_type": "expected a list",
    "dict_type": "expected a mapping (key: value, ...)",
    "model_type": "expected a mapping (key: value, ...)",
    "model_attributes_type": "expected a mapping (key: value, ...)",
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
    "literal_error": "must be one of {expected}",
    "none_required": "expected null",
}


def _first_problem(error: ValidationError) -> tuple[tuple[Any, ...], _Problem]:
    """The full path and the problem of the first error of a pydantic ValidationError."""
    first = error.errors(include_url=False)[0]
    path = tuple(first["loc"])
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, _Problem):
        return path + cause.path, cause
    if isinstance(cause, ValidationError):
        inner_path, problem = _first_problem(cause)
        return path + inner_path, problem
    kind = first["type"]
    if kind == "missing":
        return path, _Problem((), "missing")
    if kind == "extra_forbidden":
        return path, _Problem((), "", valid=[])
    wording = _MESSAGES.get(kind)
    message = wording.format(**(first.get("ctx") or {})) if wording else first["msg"]
    return path, _Problem((), f"{message}, got {_describe(first['input'])}" if "input" in first else message)


def _from_validation_error(error: ValidationError, prefix: tuple[Any, ...] = ()) -> ConfigError:
    """The first error of a pydantic ValidationError as a one-line ConfigError."""
    path, problem = _first_problem(error)
    return _config_error(prefix + path, problem)


# --------------------------------------------------------------------------------------------
# Value types


def _integral(value: Any) -> Any:
    """1e5 (read as a float) is fine where an integer is expected."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _safe_name(value: str) -> str:
    if not _SAFE_NAME.match(value) or value in (".", ".."):
        raise _Problem((), f"{value!r} is used as a folder name: use letters, digits, '_', '-', '.'")
    return value


def _none_is_empty(value: Any) -> Any:
    return {} if value is None else value


def _string_keys(value: Any) -> Any:
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise _Problem((), f"keys must be strings, got {key!r}")
    return value


Int = Annotated[int, Strict(), BeforeValidator(_integral)]
Count = Annotated[Int, Field(ge=1)]
Seed = Annotated[Int, Field(ge=0)]
Bool = Annotated[bool, Strict()]
Text = Annotated[str, Strict(), Field(min_length=1)]
FolderName = Annotated[Text, AfterValidator(_safe_name)]
Kwargs = Annotated[dict[str, Any], Strict(), BeforeValidator(_string_keys), BeforeValidator(_none_is_empty)]
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Positive = Annotated[Number, Field(gt=0)]
NonNegative = Annotated[Number, Field(ge=0)]
Fraction = Annotated[Number, Field(ge=0, le=1)]


class _Section(BaseModel):
    """A config section: unknown keys are an error naming the nearest valid key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise _Problem((), f"expected a mapping (key: value, ...), got {_describe(data)}")
        _string_keys(data)
        for key in data:
            if key not in cls.model_fields:
                raise _Problem((key,), "", valid=cls.model_fields)
        for name, field in cls.model_fields.items():
            if field.is_required() and name not in data:
                raise _Problem((name,), "missing")
        return data


# --------------------------------------------------------------------------------------------
# Sections


def _registered_env(env_id: str) -> str:
    """``env_id`` if it is a key of gymnasium's registry. Only the exact key counts: gymnasium's own
    ``make("module:Name-v0")`` would import ``module`` first, so an id with ``:`` that is not
    registered is refused like any other unknown id."""
    import gymnasium as gym

    import dream_rl  # noqa: F401  (registers the suite)
    from dream_rl.envs.wrappers import BUILDS_ENV_BY_NAME

    if env_id not in gym.registry:
        near = _nearest(env_id, gym.registry)
        hint = f"did you mean '{near}'?" if near else "`dream-rl envs` lists the suite; an env of your own must be registered"
        entry_point = " (a 'module:callable' entry point is not accepted: register it with gymnasium.register)" if ":" in env_id else ""
        raise _Problem((), f"{env_id!r} is not a registered gymnasium environment{entry_point} ({hint})", near)
    if env_id in BUILDS_ENV_BY_NAME:
        raise _Problem((), f"{env_id!r} builds an env named in its kwargs through the old gym package, which imports any "
                           "module it is given: give the env's own registered id instead")
    return env_id


class EnvConfig(_Section):
    """One environment (the ``env:`` form)."""

    id: Annotated[Text, AfterValidator(_registered_env)]
    kwargs: Kwargs = {}
    n_envs: Count = 8
    vec_env: Literal["dummy", "subproc"] = "dummy"

    @model_validator(mode="after")
    def _kwargs_fit_the_constructor(self) -> EnvConfig:
        if _BUILD_ENVS.get():  # reading a results folder imports nothing, not even a registered env's module
            _check_env_kwargs(self.id, self.kwargs)
        return self


class SuiteEnvConfig(EnvConfig):
    """One entry of ``envs:``: an env with its output folder and its own budget or algo values."""

    label: FolderName | None = None
    total_timesteps: Count | None = None
    eval_every: Count | None = None
    algo: Kwargs = {}

    @field_validator("algo")
    @classmethod
    def _partial_algo(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _validate_algo(value, fill_defaults=False)


def default_env_label(env_id: str) -> str:
    """A folder name for an env id: its last part with unsafe characters replaced (TMaze-v0)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", env_id.rsplit("/", 1)[-1]) or "env"


class PolicyConfig(_Section):
    """One policy to compare: a class name and its constructor arguments."""

    policy: Text
    policy_kwargs: Kwargs = {}

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"policy": data} if isinstance(data, str) else data  # `lstm: MlpLstmPolicy`

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, name: str) -> str:
        resolve_policy(name, "")
        return name

    @field_validator("policy_kwargs")
    @classmethod
    def _fit_the_policy(cls, kwargs: dict[str, Any], info: Any) -> dict[str, Any]:
        if "policy" not in info.data:  # the policy name failed: reported already
            return kwargs
        return _validate_policy_kwargs(resolve_policy(info.data["policy"]), kwargs)


def _distinct_seeds(seeds: Any) -> Any:
    if isinstance(seeds, bool) or not isinstance(seeds, list) or not seeds:
        raise _Problem((), f"expected a non-empty list of integers, e.g. [0, 1, 2], got {_describe(seeds)}")
    return seeds


class TrainConfig(_Section):
    total_timesteps: Count
    seeds: Annotated[list[Seed], BeforeValidator(_distinct_seeds)] = [0]
    eval_every: Count | None = None  # resolved: max(total_timesteps // 10, n_envs)
    eval_episodes: Count = 20
    eval_deterministic: Bool = True
    checkpoint_every: Count | None = None  # resolved: eval_every
    keep_checkpoints: Count = 3
    progress_bar: Bool = True
    torch_threads: Count = 1

    @field_validator("seeds")
    @classmethod
    def _seeds_distinct(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise _Problem((), f"seeds must be distinct, got {seeds}")
        return seeds


class ReportConfig(_Section):
    baseline: Text | None = None  # resolved: "lstm" when there is such a policy


class ExperimentConfig(_Section):
    """A validated config with every default filled in (see the module docstring)."""

    name: FolderName
    env: EnvConfig | None = None
    envs: list[SuiteEnvConfig] | None = None
    algo: Annotated[Kwargs, Field(validate_default=True)] = {}
    policies: dict[str, PolicyConfig]
    train: TrainConfig
    report: ReportConfig = ReportConfig()
    output_dir: Text = "runs"

    @model_validator(mode="before")
    @classmethod
    def _one_env_form(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if "env" not in data and "envs" not in data:
                raise _Problem(("env",), "missing")
            if "env" in data and "envs" in data:
                raise _Problem(("envs",), "give either env: (one environment) or envs: (a list), not both")
        return data

    @field_validator("env", mode="before")
    @classmethod
    def _a_mapping(cls, env: Any) -> Any:
        if env is None:  # (None is only the default of the envs: form)
            raise _Problem((), "expected a mapping (id: ..., kwargs: ...), got None")
        return env

    @field_validator("envs", mode="before")
    @classmethod
    def _non_empty_list(cls, envs: Any) -> Any:
        if not isinstance(envs, list) or not envs:
            raise _Problem((), f"expected a non-empty list of envs (- id: ...), got {_describe(envs)}")
        return envs

    @field_validator("algo")
    @classmethod
    def _full_algo(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _validate_algo(value, fill_defaults=True)

    @field_validator("policies", mode="before")
    @classmethod
    def _policy_labels(cls, policies: Any) -> Any:
        if isinstance(policies, dict):
            if not policies:
                raise _Problem((), "at least one policy is needed, e.g. lstm: {policy: MlpLstmPolicy}")
            for label in policies:
                if not isinstance(label, str) or not label:
                    raise _Problem((), f"policy labels must be non-empty strings, got {label!r}")
                _located(lambda: _safe_name(label), (label,))
        return policies

    # --- the experiment's layout --------------------------------------------------------------

    @property
    def experiment_dir(self) -> Path:
        """``<output_dir>/<name>``: holds the comparison, the resolved config and the runs."""
        return Path(self.output_dir) / self.name

    @property
    def env_list(self) -> list[EnvConfig]:
        """The environments, in order (one for the ``env:`` form)."""
        return list(self.envs) if self.envs is not None else [self.env]  # type: ignore[list-item]

    def env_label(self, env: EnvConfig) -> str | None:
        """The env's folder name under the experiment (None in the ``env:`` form: no env level)."""
        return env.label if isinstance(env, SuiteEnvConfig) else None

    def env_dir(self, env: EnvConfig) -> Path:
        """Where an env's runs and per-env comparison go."""
        label = self.env_label(env)
        return self.experiment_dir / label if label else self.experiment_dir

    def runs(self) -> list[Run]:
        """Every run, env by env, policy by policy, seed by seed."""
        return [Run(self, env, label, seed) for env in self.env_list for label in self.policies for seed in self.train.seeds]

    def run(self, policy: str, seed: int, env: str | None = None) -> Run:
        """The run of policy label ``policy`` and ``seed`` on the env labelled ``env`` (without
        ``env``: on the first env)."""
        for run in self.runs():
            if run.policy_label == policy and run.seed == seed and env in (None, run.env_label):
                return run
        raise ConfigError(f"no run {env + '/' if env else ''}{policy}/seed_{seed} in experiment {self.name}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict in schema order (a valid config again)."""
        data = self.model_dump(mode="python")
        if self.envs is None:
            del data["envs"]
        else:
            del data["env"]
            # per-env overrides that are not used are left out
            data["envs"] = [{k: v for k, v in env.items() if k == "kwargs" or v not in (None, {})} for env in data["envs"]]
        return data


@dataclass(frozen=True)
class Run:
    """One training run: an env, a policy and a seed of an experiment, with the env's budget and
    algo values folded in."""

    experiment: ExperimentConfig
    env: EnvConfig
    policy_label: str
    seed: int

    @property
    def env_label(self) -> str | None:
        return self.experiment.env_label(self.env)

    @property
    def name(self) -> str:
        """``<env label>/<policy>/seed_<k>`` (no env part in the ``env:`` form)."""
        return _dotted_path(self.env_label, self.policy_label, f"seed_{self.seed}")

    @property
    def run_dir(self) -> Path:
        """Everything this run leaves behind."""
        return self.experiment.env_dir(self.env) / self.policy_label / f"seed_{self.seed}"

    @property
    def policy(self) -> PolicyConfig:
        return self.experiment.policies[self.policy_label]

    @property
    def algo(self) -> dict[str, Any]:
        """RecurrentPPO's arguments: the experiment's, updated by the env's own."""
        return {**self.experiment.algo, **getattr(self.env, "algo", {})}

    @property
    def train(self) -> TrainConfig:
        """The train section with this env's budget and this seed."""
        env_total = getattr(self.env, "total_timesteps", None)
        env_every = getattr(self.env, "eval_every", None)
        return self.experiment.train.model_copy(update={
            "seeds": [self.seed],
            "total_timesteps": env_total or self.experiment.train.total_timesteps,
            "eval_every": env_every or self.experiment.train.eval_every,
            "checkpoint_every": env_every or self.experiment.train.checkpoint_every,
        })

    @property
    def config(self) -> ExperimentConfig:
        """The experiment narrowed to this run (what it saves as config.yaml; re-runnable)."""
        one_env = {"envs": [self.env]} if self.experiment.envs is not None else {"env": self.env}
        baseline = self.experiment.report.baseline
        return self.experiment.model_copy(update={
            **one_env,
            "policies": {self.policy_label: self.policy},
            "train": self.experiment.train.model_copy(update={"seeds": [self.seed]}),
            "report": ReportConfig(baseline=baseline if baseline == self.policy_label else None),
        })


def _dotted_path(*parts: str | None) -> str:
    return "/".join(part for part in parts if part)


# --------------------------------------------------------------------------------------------
# Validation


# False while a config is validated as data only (build_envs=False): nothing is built or imported.
_BUILD_ENVS: ContextVar[bool] = ContextVar("dream_rl_build_envs", default=True)


def validate_config(raw: Any, *, build_envs: bool = True) -> ExperimentConfig:
    """Check every key of a raw config and fill in the defaults (see the module docstring).

    ``build_envs=True`` (a config to train) also builds each env once, from its registered id, to
    check its kwargs and its observation space against the policies. ``build_envs=False`` checks
    the config as data only (env ids must still be registered ids, but nothing is built or imported):
    what ``report`` and ``evaluate`` do with the ``config.yaml`` of a results folder."""
    token = _BUILD_ENVS.set(build_envs)
    try:
        try:
            config = ExperimentConfig.model_validate(raw)
        except ValidationError as error:
            raise _from_validation_error(error) from None
        except _Problem as problem:  # raised before pydantic's own loop (a non-mapping config)
            raise _config_error(("config",), problem) from None
        return _resolve(config, build_envs)
    finally:
        _BUILD_ENVS.reset(token)


def _resolve(config: ExperimentConfig, build_envs: bool = True) -> ExperimentConfig:
    """Checks across sections, and the defaults that depend on other values."""
    if build_envs:
        spaces = []
        for where, env in _envs_with_paths(config):
            spaces.append(_observation_space(env, where))
        for (_where, env), space in zip(_envs_with_paths(config), spaces):
            for label, spec in config.policies.items():
                _check_policy_space(spec.policy, space, f"policies.{label}.policy", env.id)

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
        near = _nearest(baseline, config.policies)
        hint = f"did you mean '{near}'?" if near else f"policies: {', '.join(config.policies)}"
        raise ConfigError(f"report.baseline: {baseline!r} is not a policy label ({hint})", "report.baseline", near)
    return config.model_copy(update={"envs": envs, "train": train, "report": ReportConfig(baseline=baseline)})


def _envs_with_paths(config: ExperimentConfig) -> list[tuple[str, EnvConfig]]:
    if config.envs is None:
        return [("env", config.env)]  # type: ignore[list-item]
    return [(f"envs.{index}", env) for index, env in enumerate(config.envs)]


def _observation_space(env: EnvConfig, where: str) -> Any:
    """Make one instance (a bad kwargs value fails here) and return its observation space."""
    import gymnasium as gym

    try:
        probe = gym.make(env.id, **env.kwargs)
    except Exception as error:  # noqa: BLE001  (any failure of a user's env constructor is a config error)
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"{where}.kwargs: {env.id} could not be created with {env.kwargs}: {message}", f"{where}.kwargs") from None
    try:
        return probe.observation_space
    finally:
        probe.close()


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
    for key in kwargs:
        if key not in valid:
            raise _Problem(("kwargs", key), "", valid=valid)


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

Device = Annotated[Text, AfterValidator(lambda v: v if re.match(r"^(auto|cpu|mps|cuda(:\d+)?)$", v) else _bad_device(v))]


def _bad_device(value: str) -> str:
    raise _Problem((), f"expected auto, cpu, cuda, cuda:N or mps, got {value!r}")


_ALGO_TYPES: dict[str, Any] = {
    "n_steps": Count,
    "n_epochs": Count,
    "stats_window_size": Count,
    "batch_size": Annotated[Int, Field(ge=2)],  # RecurrentPPO asserts batch_size > 1
    "sde_sample_freq": Annotated[Int, Field(ge=-1)],
    "learning_rate": Positive,
    "clip_range": Positive,
    "max_grad_norm": Positive,
    "gamma": Fraction,
    "gae_lambda": Fraction,
    "ent_coef": NonNegative,
    "vf_coef": NonNegative,
    "clip_range_vf": Positive | None,
    "target_kl": Positive | None,
    "device": Device,
}


@functools.cache
def _algo_model() -> type[BaseModel]:
    """A pydantic model of RecurrentPPO's constructor arguments (minus those the runner sets)."""
    from sb3_contrib import RecurrentPPO

    model_fields: dict[str, Any] = {}
    for name, param in inspect.signature(RecurrentPPO.__init__).parameters.items():
        if name == "self" or param.kind is inspect.Parameter.VAR_KEYWORD or name in _ALGO_RESERVED:
            continue
        default = "cpu" if name == "device" else param.default  # small nets: the CPU beats a GPU round trip
        if callable(default):  # a schedule default (none today): leave it to RecurrentPPO
            continue
        model_fields[name] = (_ALGO_TYPES.get(name, _type_like(default)), default)
    return create_model("RecurrentPPOArguments", __base__=_Section, **model_fields)


def _type_like(default: Any) -> Any:
    """A value of the same kind as a parameter's default (anything when the default is None)."""
    for kind, annotation in ((bool, Bool), (int, Int), (float, Number), (str, Text)):
        if isinstance(default, kind):
            return annotation
    return Any


def _validate_algo(value: dict[str, Any], fill_defaults: bool) -> dict[str, Any]:
    for key in value:
        if key in _ALGO_RESERVED:
            raise _Problem((key,), f"may not be set here: {_ALGO_RESERVED[key]}")
    model = _algo_model().model_validate(value)
    return model.model_dump() if fill_defaults else model.model_dump(exclude_unset=True)


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
    """The policy class called ``name``, or ConfigError (a _Problem for validators: key "")."""
    names = policy_names()
    if name not in names:
        near = _nearest(name, names)
        hint = f"did you mean '{near}'?" if near else f"choose one of {', '.join(names)}"
        message = f"unknown policy {name!r} ({hint})"
        if not key:
            raise _Problem((), message, near)
        raise ConfigError(f"{key}: {message}", key, near)
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


def resolve_class(kwarg: str, name: Any, key: str | None = None) -> type:
    """The class named ``name`` for the policy argument ``kwarg`` (e.g. activation_fn: ReLU)."""
    table = _class_tables()[kwarg]
    if not isinstance(name, str) or name not in table:
        near = _nearest(str(name), table)
        examples = {"activation_fn": "Tanh, ReLU, ELU, GELU, SiLU", "optimizer_class": "Adam, AdamW, SGD, RMSprop",
                    "features_extractor_class": ", ".join(table)}[kwarg]
        hint = f"did you mean '{near}'?" if near else f"e.g. {examples}"
        if key == "":
            raise _Problem((), f"unknown class {name!r} ({hint})", near)
        key = key or kwarg
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


# Policy arguments RecurrentPPO sets itself.
_POLICY_RESERVED = ("observation_space", "action_space", "lr_schedule", "use_sde")
_MAPPING_KWARGS = ("lstm_kwargs", "features_extractor_kwargs", "optimizer_kwargs")


def _validate_policy_kwargs(policy_class: type, value: dict[str, Any]) -> dict[str, Any]:
    """The policy's constructor arguments, keys and values checked (paths relative to
    policy_kwargs)."""
    kwargs = dict(value)
    params = {n: p for n, p in constructor_parameters(policy_class).items() if n not in _POLICY_RESERVED}
    preset = getattr(policy_class, "preset_torso", None)
    for name in kwargs:
        if name in _POLICY_RESERVED:
            raise _Problem((name,), "is set by RecurrentPPO and may not appear here")
        if preset is not None and name in ("torso", "torso_kwargs"):
            raise _Problem((name,), f"{policy_class.__name__} fixes the torso to {preset!r}: use MlpTorsoPolicy "
                                    f"(or its Cnn/MultiInput forms) to choose one")
        if name not in params:
            raise _Problem((name,), "", valid=[n for n in params if preset is None or n not in ("torso", "torso_kwargs")])

    for name, item in kwargs.items():
        if name in ("lstm_hidden_size", "n_lstm_layers"):
            kwargs[name] = _checked(Count, item, (name,))
        elif name == "net_arch":
            kwargs[name] = _located(lambda: _check_net_arch(item), (name,))
        elif name in _class_tables():
            _located(lambda: resolve_class(name, item, ""), (name,))
        elif name in _MAPPING_KWARGS:
            kwargs[name] = _checked(Kwargs, item, (name,))
        elif name == "torso":
            kwargs[name] = _checked_torso_name(item)
        elif name not in ("dream_kwargs", "torso_kwargs"):
            kwargs[name] = _checked(_type_like(params[name].default), item, (name,))
    if kwargs.get("shared_lstm") and kwargs.get("enable_critic_lstm", True):
        raise _Problem(("shared_lstm",), "shared_lstm: true needs enable_critic_lstm: false")

    hidden = kwargs.get("lstm_hidden_size", params["lstm_hidden_size"].default if "lstm_hidden_size" in params else 256)
    if "dream_kwargs" in kwargs:
        kwargs["dream_kwargs"] = _located(lambda: _check_dream_kwargs(kwargs["dream_kwargs"], hidden), ("dream_kwargs",))
    if "torso_kwargs" in kwargs:
        torso = kwargs.get("torso", params["torso"].default if "torso" in params else "lstm")
        kwargs["torso_kwargs"] = _located(lambda: _check_torso_kwargs(torso, kwargs["torso_kwargs"], hidden), ("torso_kwargs",))
    return kwargs


def _checked(annotation: Any, value: Any, path: tuple[Any, ...]) -> Any:
    """``value`` validated against a type annotation; a problem is reported at ``path``."""
    try:
        return TypeAdapter(annotation).validate_python(value)
    except ValidationError as error:
        inner_path, problem = _first_problem(error)
        raise _Problem(path + inner_path, problem.message, problem.suggestion, problem.valid) from None


def _check_net_arch(value: Any) -> Any:
    """[64, 64] (shared) or {pi: [...], vf: [...]} or null."""
    if value is None:
        return None
    if isinstance(value, dict):
        for head in value:
            if head not in ("pi", "vf"):
                raise _Problem((head,), "", valid=["pi", "vf"])
        return {head: _check_net_arch_layers(sizes, (head,)) for head, sizes in value.items()}
    return _check_net_arch_layers(value, ())


def _check_net_arch_layers(value: Any, path: tuple[Any, ...]) -> list[int]:
    if not isinstance(value, list):
        raise _Problem(path, f"expected a list of layer sizes, e.g. [64, 64], got {_describe(value)}")
    return _checked(list[Count], value, path)


def _located(check: Any, path: tuple[Any, ...]) -> Any:
    """Run ``check``; a _Problem it raises is moved below ``path``."""
    try:
        return check()
    except _Problem as problem:
        raise _Problem(path + problem.path, problem.message, problem.suggestion, problem.valid) from None


def _checked_torso_name(name: Any) -> str:
    from dream_rl import TORSOS

    if not isinstance(name, str) or name not in TORSOS:
        near = _nearest(name, TORSOS)
        hint = f"did you mean '{near}'?" if near else f"registered torsos: {', '.join(TORSOS)}"
        raise _Problem(("torso",), f"unknown torso {name!r} ({hint})", near)
    return name


def _check_torso_kwargs(torso: str, value: Any, hidden_size: int) -> dict[str, Any]:
    """A torso's own options: DREAM's are DREAMConfig fields; others are checked against the
    torso's constructor when it names its arguments."""
    from dream_rl import TORSOS

    if torso == "dream":
        return _check_dream_kwargs(value, hidden_size)
    kwargs = _checked(Kwargs, value, ())
    params = inspect.signature(TORSOS[torso].__init__).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        valid = [n for n in params if n not in ("self", "input_size", "hidden_size", "num_layers")]
        for key in kwargs:
            if key not in valid:
                raise _Problem((key,), "", valid=valid)
    return kwargs


def _check_dream_kwargs(value: Any, hidden_size: int) -> dict[str, Any]:
    """DREAMConfig fields except input_dim and hidden_dim; values checked by DREAMConfig itself."""
    from dream_rl.dream.config import DREAMConfig
    from dream_rl.errors import DREAMError

    kwargs = _checked(Kwargs, value, ())
    valid = [f.name for f in fields(DREAMConfig) if f.name not in ("input_dim", "hidden_dim")]
    for name in kwargs:
        if name in ("input_dim", "hidden_dim"):
            hint = "the features width" if name == "input_dim" else "lstm_hidden_size"
            raise _Problem((name,), f"is set from {hint}")
        if name not in valid:
            raise _Problem((name,), "", valid=valid)
    try:
        DREAMConfig(input_dim=1, hidden_dim=hidden_size, **{"rank": min(16, hidden_size), **kwargs})
    except (DREAMError, TypeError, OverflowError) as error:
        raise _Problem((), str(error).splitlines()[0]) from None
    return kwargs


def _check_policy_space(policy_name: str, observation_space: Any, key: str, env_id: str) -> None:
    from gymnasium import spaces

    if isinstance(observation_space, spaces.Dict) and not policy_name.startswith("MultiInput"):
        wanted = "MultiInput" + policy_name.removeprefix("Mlp").removeprefix("Cnn")
        raise ConfigError(f"{key}: {env_id} has Dict observations: use {wanted}", key, wanted)
    if not isinstance(observation_space, spaces.Dict) and policy_name.startswith("MultiInput"):
        wanted = "Mlp" + policy_name.removeprefix("MultiInput")
        raise ConfigError(f"{key}: {policy_name} needs Dict observations; {env_id}'s are not: use {wanted}", key, wanted)
