"""Checks of config values against what they are handed to: RecurrentPPO, the policies, the torsos,
DREAMConfig and the envs.

- ``algo``: a pydantic model built from ``RecurrentPPO.__init__``'s signature (:func:`validate_algo`),
  minus the arguments the runner sets itself (:data:`ALGO_RESERVED`);
- ``policy_kwargs``: the policy's constructor arguments, following ``**kwargs`` up its class hierarchy
  (:func:`validate_policy_kwargs`), with DREAM's and the other torsos' own options checked against
  DREAMConfig and the torso constructors;
- envs: the id must be a key of gymnasium's registry (:func:`registered_env`); with
  :data:`BUILD_ENVS` set, the kwargs are checked against the env's constructor, and
  :func:`observation_space` builds one instance so that :func:`check_policy_space` can match the
  observations with the policy (Dict observations need a MultiInput policy).

Each check raises a :class:`~dream_rl.experiments.problems.Problem` below the value it checks
(pydantic adds where that value is), or a ConfigError where the full key is known.

torch, SB3 and the DREAM library are imported inside the functions that need them: the schema that uses
these checks is read by the CLI's ``--help``, which must not load them.
"""

from __future__ import annotations

import functools
import inspect
from contextvars import ContextVar
from dataclasses import fields
from typing import Annotated, Any

import gymnasium as gym
from gymnasium import spaces
from gymnasium.envs.registration import load_env_creator
from pydantic import BaseModel, Field, create_model

from dream_rl.envs.wrappers import BUILDS_ENV_BY_NAME
from dream_rl.errors import ConfigError, first_line
from dream_rl.experiments.fields import (
    Bool,
    Count,
    Device,
    Fraction,
    Int,
    Kwargs,
    NonNegative,
    Number,
    Positive,
    Section,
    Text,
)
from dream_rl.experiments.names import CLASS_KWARGS, check_torso_name, resolve_class
from dream_rl.experiments.problems import Problem, checked, describe, located, nearest

__all__ = [
    "ALGO_RESERVED",
    "BUILD_ENVS",
    "check_env_kwargs",
    "check_policy_space",
    "constructor_parameters",
    "observation_space",
    "registered_env",
    "validate_algo",
    "validate_policy_kwargs",
]

# False while a config is validated as data only (build_envs=False): nothing is built or imported.
BUILD_ENVS: ContextVar[bool] = ContextVar("dream_rl_build_envs", default=True)


# --------------------------------------------------------------------------------------------
# Envs


def registered_env(env_id: str) -> str:
    """``env_id`` if it is a key of gymnasium's registry. Only the exact key counts: gymnasium's own
    ``make("module:Name-v0")`` would import ``module`` first, so an id with ``:`` that is not
    registered is refused like any other unknown id (the suite is registered by ``import dream_rl``)."""
    if env_id not in gym.registry:
        near = nearest(env_id, gym.registry)
        hint = f"did you mean '{near}'?" if near else "`dream-rl envs` lists the suite; an env of your own must be registered"
        entry_point = " (a 'module:callable' entry point is not accepted: register it with gymnasium.register)" if ":" in env_id else ""
        raise Problem((), f"{env_id!r} is not a registered gymnasium environment{entry_point} ({hint})", near)
    if env_id in BUILDS_ENV_BY_NAME:
        raise Problem((), f"{env_id!r} builds an env named in its kwargs through the old gym package, which imports any "
                          "module it is given: give the env's own registered id instead")
    return env_id


def check_env_kwargs(env_id: str, kwargs: dict[str, Any]) -> None:
    """Unknown env kwargs, when the env's constructor does not take ``**kwargs``."""
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
            raise Problem(("kwargs", key), "", valid=valid)


def observation_space(env_id: str, kwargs: dict[str, Any], where: str) -> Any:
    """Make one instance of the env (a bad kwargs value fails here) and return its observation space."""
    try:
        probe = gym.make(env_id, **kwargs)
    except Exception as error:  # noqa: BLE001  (any failure of a user's env constructor is a config error)
        raise ConfigError(f"{where}.kwargs: {env_id} could not be created with {kwargs}: {first_line(error)}",
                          f"{where}.kwargs") from None
    try:
        return probe.observation_space
    finally:
        probe.close()


def check_policy_space(policy_name: str, space: Any, key: str, env_id: str) -> None:
    """Dict observations need a MultiInput policy, and a MultiInput policy needs Dict observations."""
    if isinstance(space, spaces.Dict) and not policy_name.startswith("MultiInput"):
        wanted = "MultiInput" + policy_name.removeprefix("Mlp").removeprefix("Cnn")
        raise ConfigError(f"{key}: {env_id} has Dict observations: use {wanted}", key, wanted)
    if not isinstance(space, spaces.Dict) and policy_name.startswith("MultiInput"):
        wanted = "Mlp" + policy_name.removeprefix("MultiInput")
        raise ConfigError(f"{key}: {policy_name} needs Dict observations; {env_id}'s are not: use {wanted}", key, wanted)


# --------------------------------------------------------------------------------------------
# RecurrentPPO's arguments (algo)


# RecurrentPPO arguments the runner sets itself, and where their value comes from.
ALGO_RESERVED = {
    "policy": "set per run from policies.<label>.policy",
    "env": "built from the env section",
    "seed": "set per run from train.seeds",
    "verbose": "the runner prints its own progress",
    "tensorboard_log": "every run logs to <run dir>/tb",
    "policy_kwargs": "goes under policies.<label>.policy_kwargs",
    "_init_setup_model": "internal to stable-baselines3",
}

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
        if name == "self" or param.kind is inspect.Parameter.VAR_KEYWORD or name in ALGO_RESERVED:
            continue
        default = "cpu" if name == "device" else param.default  # small nets: the CPU beats a GPU round trip
        if callable(default):  # a schedule default (none today): leave it to RecurrentPPO
            continue
        model_fields[name] = (_ALGO_TYPES.get(name, _type_like(default)), default)
    return create_model("RecurrentPPOArguments", __base__=Section, **model_fields)


def _type_like(default: Any) -> Any:
    """A value of the same kind as a parameter's default (anything when the default is None)."""
    for kind, annotation in ((bool, Bool), (int, Int), (float, Number), (str, Text)):
        if isinstance(default, kind):
            return annotation
    return Any


def validate_algo(value: dict[str, Any], fill_defaults: bool) -> dict[str, Any]:
    """RecurrentPPO's arguments checked (and, with ``fill_defaults``, completed with its defaults)."""
    for key in value:
        if key in ALGO_RESERVED:
            raise Problem((key,), f"may not be set here: {ALGO_RESERVED[key]}")
    model = _algo_model().model_validate(value)
    return model.model_dump() if fill_defaults else model.model_dump(exclude_unset=True)


# --------------------------------------------------------------------------------------------
# A policy's arguments (policy_kwargs)


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


def validate_policy_kwargs(policy_class: type, value: dict[str, Any]) -> dict[str, Any]:
    """The policy's constructor arguments, keys and values checked (paths relative to
    policy_kwargs)."""
    kwargs = dict(value)
    params = {n: p for n, p in constructor_parameters(policy_class).items() if n not in _POLICY_RESERVED}
    preset = getattr(policy_class, "preset_torso", None)
    for name in kwargs:
        if name in _POLICY_RESERVED:
            raise Problem((name,), "is set by RecurrentPPO and may not appear here")
        if preset is not None and name in ("torso", "torso_kwargs"):
            raise Problem((name,), f"{policy_class.__name__} fixes the torso to {preset!r}: use MlpTorsoPolicy "
                                   f"(or its Cnn/MultiInput forms) to choose one")
        if name not in params:
            raise Problem((name,), "", valid=[n for n in params if preset is None or n not in ("torso", "torso_kwargs")])

    for name, item in kwargs.items():
        if name in ("lstm_hidden_size", "n_lstm_layers"):
            kwargs[name] = checked(Count, item, (name,))
        elif name == "net_arch":
            kwargs[name] = located(lambda: _check_net_arch(item), (name,))
        elif name in CLASS_KWARGS:
            located(lambda: resolve_class(name, item, ""), (name,))
        elif name in _MAPPING_KWARGS:
            kwargs[name] = checked(Kwargs, item, (name,))
        elif name == "torso":
            kwargs[name] = check_torso_name(item)
        elif name not in ("dream_kwargs", "torso_kwargs"):
            kwargs[name] = checked(_type_like(params[name].default), item, (name,))
    if kwargs.get("shared_lstm") and kwargs.get("enable_critic_lstm", True):
        raise Problem(("shared_lstm",), "shared_lstm: true needs enable_critic_lstm: false")

    hidden = kwargs.get("lstm_hidden_size", params["lstm_hidden_size"].default if "lstm_hidden_size" in params else 256)
    if "dream_kwargs" in kwargs:
        kwargs["dream_kwargs"] = located(lambda: _check_dream_kwargs(kwargs["dream_kwargs"], hidden), ("dream_kwargs",))
    if "torso_kwargs" in kwargs:
        torso = kwargs.get("torso", params["torso"].default if "torso" in params else "lstm")
        kwargs["torso_kwargs"] = located(lambda: _check_torso_kwargs(torso, kwargs["torso_kwargs"], hidden), ("torso_kwargs",))
    return kwargs


def _check_net_arch(value: Any) -> Any:
    """[64, 64] (shared) or {pi: [...], vf: [...]} or null."""
    if value is None:
        return None
    if isinstance(value, dict):
        for head in value:
            if head not in ("pi", "vf"):
                raise Problem((head,), "", valid=["pi", "vf"])
        return {head: _check_net_arch_layers(sizes, (head,)) for head, sizes in value.items()}
    return _check_net_arch_layers(value, ())


def _check_net_arch_layers(value: Any, path: tuple[Any, ...]) -> list[int]:
    if not isinstance(value, list):
        raise Problem(path, f"expected a list of layer sizes, e.g. [64, 64], got {describe(value)}")
    return checked(list[Count], value, path)


def _check_torso_kwargs(torso: str, value: Any, hidden_size: int) -> dict[str, Any]:
    """A torso's own options: DREAM's are DREAMConfig fields; others are checked against the
    torso's constructor when it names its arguments."""
    from dream_rl import TORSOS

    if torso == "dream":
        return _check_dream_kwargs(value, hidden_size)
    kwargs = checked(Kwargs, value, ())
    params = inspect.signature(TORSOS[torso].__init__).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        valid = [n for n in params if n not in ("self", "input_size", "hidden_size", "num_layers")]
        for key in kwargs:
            if key not in valid:
                raise Problem((key,), "", valid=valid)
    return kwargs


def _check_dream_kwargs(value: Any, hidden_size: int) -> dict[str, Any]:
    """DREAMConfig fields except input_dim and hidden_dim; values checked by DREAMConfig itself."""
    from dream_rl.dream.config import DREAMConfig
    from dream_rl.errors import DREAMError

    kwargs = checked(Kwargs, value, ())
    valid = [f.name for f in fields(DREAMConfig) if f.name not in ("input_dim", "hidden_dim")]
    for name in kwargs:
        if name in ("input_dim", "hidden_dim"):
            hint = "the features width" if name == "input_dim" else "lstm_hidden_size"
            raise Problem((name,), f"is set from {hint}")
        if name not in valid:
            raise Problem((name,), "", valid=valid)
    try:
        DREAMConfig(input_dim=1, hidden_dim=hidden_size, **{"rank": min(16, hidden_size), **kwargs})
    except (DREAMError, TypeError, OverflowError) as error:
        raise Problem((), first_line(error)) from None
    return kwargs
