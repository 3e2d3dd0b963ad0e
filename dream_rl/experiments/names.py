"""What a config may name, and the classes those names stand for.

The set is closed: a policy is one of :func:`policy_names` (dream-rl's and sb3-contrib's), a torso is
a key of :data:`dream_rl.TORSOS`, and a class in ``policy_kwargs`` (``activation_fn: ReLU``,
``optimizer_class: AdamW``, ``features_extractor_class: NatureCNN``) is a name in a fixed table of
torch's and SB3's classes (:func:`resolve_class`). Nothing is imported by a name a config gives.
An unknown name is a one-line error with the nearest valid one. See docs/security.md.

torch and SB3 are imported inside the functions, when a name is first resolved: reading this module
(the CLI's ``--help`` does, through the config schema) stays cheap.
"""

from __future__ import annotations

from typing import Any

from dream_rl.errors import ConfigError
from dream_rl.experiments.problems import Problem, nearest

__all__ = ["CLASS_KWARGS", "check_torso_name", "class_tables", "policy_names", "resolve_class", "resolve_policy"]

# policy_kwargs whose value is a class, given by name
CLASS_KWARGS = ("activation_fn", "optimizer_class", "features_extractor_class")


def policy_names() -> dict[str, type]:
    """Every policy name a config may use: dream-rl's, then sb3-contrib's stock ones."""
    from sb3_contrib import RecurrentPPO

    from dream_rl import POLICIES

    names: dict[str, type] = dict(POLICIES)
    for name, cls in RecurrentPPO.policy_aliases.items():
        names.setdefault(name, cls)
    return names


def resolve_policy(name: str, key: str = "policy") -> type:
    """The policy class called ``name``, or ConfigError (a Problem for validators: key "")."""
    names = policy_names()
    if name not in names:
        near = nearest(name, names)
        hint = f"did you mean '{near}'?" if near else f"choose one of {', '.join(names)}"
        message = f"unknown policy {name!r} ({hint})"
        if not key:
            raise Problem((), message, near)
        raise ConfigError(f"{key}: {message}", key, near)
    return names[name]


def class_tables() -> dict[str, dict[str, type]]:
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
    """The class named ``name`` for the policy argument ``kwarg`` (e.g. activation_fn: ReLU).

    An unknown name is a ConfigError at ``key`` (default: ``kwarg``), or a Problem for validators
    (``key=""``)."""
    table = class_tables()[kwarg]
    if not isinstance(name, str) or name not in table:
        near = nearest(str(name), table)
        examples = {"activation_fn": "Tanh, ReLU, ELU, GELU, SiLU", "optimizer_class": "Adam, AdamW, SGD, RMSprop",
                    "features_extractor_class": ", ".join(table)}[kwarg]
        hint = f"did you mean '{near}'?" if near else f"e.g. {examples}"
        if key == "":
            raise Problem((), f"unknown class {name!r} ({hint})", near)
        key = key or kwarg
        raise ConfigError(f"{key}: unknown class {name!r} ({hint})", key, near)
    return table[name]


def check_torso_name(name: Any) -> str:
    """``name`` if it is a registered torso, else a Problem at ``torso`` with the nearest name."""
    from dream_rl import TORSOS

    if not isinstance(name, str) or name not in TORSOS:
        near = nearest(name, TORSOS)
        hint = f"did you mean '{near}'?" if near else f"registered torsos: {', '.join(TORSOS)}"
        raise Problem(("torso",), f"unknown torso {name!r} ({hint})", near)
    return name
