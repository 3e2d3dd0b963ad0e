"""The ``tune:`` section of a config: the search space and the study's settings, as pydantic models.

::

    tune:
      policy: dream                 # the policy to tune ([the only one under policies])
      objective: final              # final | auc   [final]
      space:                        # dotted config path -> distribution
        algo.learning_rate: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
        algo.n_epochs: {type: int, low: 2, high: 10}
        policies.dream.learning_rate_scale: {type: float, low: 0.25, high: 4.0, log: true}
        policies.dream.policy_kwargs.net_arch: {type: categorical, choices: [[64], [64, 64]]}
      sampler: {n_startup_trials: 5, seed: 0}          # optuna.samplers.TPESampler arguments
      pruner: {n_startup_trials: 3, n_warmup_steps: 0}  # optuna.pruners.MedianPruner arguments;
                                                        # pruner: null turns pruning off

Distributions (:class:`Distribution`): ``float`` and ``int`` take ``low``, ``high`` (inclusive) and
optionally ``log: true`` or ``step``; ``categorical`` takes ``choices`` (any YAML values, lists
included). Paths may point under ``algo``, under ``policies.<policy>.policy_kwargs`` (``dream_kwargs``
and ``torso_kwargs`` included) or at ``policies.<policy>.learning_rate_scale``; the space may also be
written nested (``algo: {learning_rate: {...}}``), which is what a dotted override such as
``tune.space.algo.learning_rate.high=1e-2`` adds to.

:func:`parse_tune_section` validates the section with :class:`TuneSection` (unknown keys, types and
ranges give the same one-line :class:`~dream_rl.errors.ConfigError` as the rest of the config) and
returns the experiment config without it and the :class:`TuneSettings`. Whether the sampler's and
pruner's argument names exist is checked against Optuna's signatures when the study is built
(:mod:`.tune`), since Optuna is an optional extra.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BeforeValidator, Strict, ValidationError, field_validator, model_validator

from dream_rl.errors import ConfigError
from dream_rl.experiments.fields import Bool, Kwargs, Number, Section, Text, string_keys
from dream_rl.experiments.problems import Problem, config_error, describe, from_validation_error

if TYPE_CHECKING:  # optuna is an optional extra, imported when tuning starts
    import optuna

__all__ = [
    "NO_SPACE_HINT",
    "OBJECTIVES",
    "SPEC_FIELDS",
    "Distribution",
    "SearchParam",
    "TuneSection",
    "TuneSettings",
    "narrow_to_policy",
    "parse_tune_section",
    "substitute",
]

SPEC_FIELDS = ("type", "low", "high", "log", "step", "choices")
OBJECTIVES = ("final", "auc")
NO_SPACE_HINT = (
    "declare one in a `tune:` section, e.g. tune: {space: {algo.learning_rate: {type: float, low: 1.0e-4, "
    "high: 3.0e-3, log: true}}} (see configs/tune_tmaze.yaml)"
)


@dataclass(frozen=True)
class SearchParam:
    """One dimension of the search space: the dotted config path and its distribution."""

    key: str
    type: str  # float | int | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        """Sample this parameter in ``trial`` (named by its dotted key in the study)."""
        if self.type == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        labels = self.choice_labels()
        return self.choices[labels.index(trial.suggest_categorical(self.key, labels))]

    def choice_labels(self) -> list[Any]:
        """What Optuna stores for each choice: the value itself when it is a scalar, else its
        YAML text (Optuna's categorical values must be None, bool, int, float or str)."""
        if all(c is None or isinstance(c, (bool, int, float, str)) for c in self.choices):
            return list(self.choices)
        return [yaml.safe_dump(c, default_flow_style=True).strip() for c in self.choices]

    def value_of(self, stored: Any) -> Any:
        """The config value of a parameter value as stored in the study."""
        if self.type != "categorical":
            return stored
        return self.choices[self.choice_labels().index(stored)]


# --------------------------------------------------------------------------------------------
# The models


def _distribution_kind(value: Any) -> Any:
    if value not in ("float", "int", "categorical"):
        raise Problem((), f"must be float, int or categorical, got {value!r}")
    return value


class Distribution(Section):
    """One dimension: ``{type: float | int, low, high[, log: true | step: S]}`` or
    ``{type: categorical, choices: [...]}``."""

    type: Annotated[str, BeforeValidator(_distribution_kind)]
    low: Number | None = None
    high: Number | None = None
    log: Bool = False
    step: Number | None = None
    choices: Any = None

    @model_validator(mode="after")
    def _consistent(self) -> Distribution:
        if self.type == "categorical":
            extra = [name for name in SPEC_FIELDS if name in self.model_fields_set and name not in ("type", "choices")]
            if extra:
                raise Problem((extra[0],), "a categorical takes only choices")
            if not isinstance(self.choices, list) or not self.choices:
                raise Problem(("choices",), f"expected a non-empty list, got {self.choices!r}")
            return self
        if "choices" in self.model_fields_set:
            raise Problem(("choices",), "only for type: categorical")
        for name in ("low", "high", "step"):
            value = getattr(self, name)
            if name != "step" and value is None:
                raise Problem((name,), "missing")
            if self.type == "int" and value is not None and not value.is_integer():
                raise Problem((name,), f"expected an integer, got {value!r}")
        low, high = self._bounds()
        if not low < high:
            raise Problem((), f"low must be < high, got low={low}, high={high}")
        if self.log and low <= 0:
            raise Problem((), f"log: true needs low > 0, got {low}")
        if self.step is not None and (self.step <= 0 or self.log):
            raise Problem(("step",), "must be > 0 and cannot go with log: true")
        return self

    def _bounds(self) -> tuple[float, float]:
        if self.type == "int":
            return int(self.low), int(self.high)  # type: ignore[arg-type]
        return self.low, self.high  # type: ignore[return-value]

    def to_param(self, key: str) -> SearchParam:
        """The dimension named by the dotted config path ``key``."""
        if self.type == "categorical":
            return SearchParam(key, "categorical", choices=tuple(self.choices))
        low, high = self._bounds()
        step = self.step if self.step is None or self.type == "float" else int(self.step)
        return SearchParam(key, self.type, low=low, high=high, log=self.log, step=step)


def _flat_space(node: Any) -> Any:
    """``{dotted path: distribution}`` from a dotted or nested space (both may be mixed)."""
    if not isinstance(node, dict):
        raise Problem((), f"expected a mapping of dotted paths to distributions, got {describe(node)}")
    out: dict[str, dict[str, Any]] = {}
    _flatten(node, (), out)
    return out


def _flatten(node: Mapping[Any, Any], prefix: tuple[str, ...], out: dict[str, dict[str, Any]]) -> None:
    for key, value in node.items():
        if not isinstance(key, str) or not key:
            raise Problem(prefix, f"keys must be dotted config paths, got {key!r}")
        path = prefix + tuple(key.split("."))
        if isinstance(value, dict):
            _flatten(value, path, out)
        elif path[-1] in SPEC_FIELDS and len(path) > 1:
            out.setdefault(".".join(path[:-1]), {})[path[-1]] = value
        else:
            raise Problem(
                (".".join(path),),
                "expected a distribution such as {type: float, low: 1.0e-4, high: 1.0e-2, log: true}, "
                f"{{type: int, low: 1, high: 8}} or {{type: categorical, choices: [a, b]}}, got {value!r}",
            )


# TPESampler / MedianPruner arguments: a mapping with string keys (pruner: null turns pruning off)
_Arguments = Annotated[dict[str, Any], Strict(), BeforeValidator(string_keys)]


class TuneSection(Section):
    """The ``tune:`` section (see the module doc)."""

    space: Annotated[dict[str, Distribution], BeforeValidator(_flat_space)]
    policy: Text | None = None
    objective: Literal["final", "auc"] = "final"
    sampler: Kwargs = {}
    pruner: _Arguments | None = {}

    @field_validator("objective", mode="before")
    @classmethod
    def _known_objective(cls, value: Any) -> Any:
        if value not in OBJECTIVES:
            raise Problem((), f"must be final or auc, got {value!r}")
        return value


@dataclass(frozen=True)
class TuneSettings:
    """The parsed ``tune:`` section, its policy resolved."""

    space: tuple[SearchParam, ...]
    policy: str
    objective: str = "final"
    sampler: dict[str, Any] = field(default_factory=dict)
    pruner: dict[str, Any] | None = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Parsing, and the configs of trials


def parse_tune_section(raw: dict[str, Any]) -> tuple[dict[str, Any], TuneSettings]:
    """Split a raw config into the experiment config (without ``tune``) and the tune settings.

    Raises ConfigError when there is no search space or it is malformed."""
    raw = dict(raw)
    section = raw.pop("tune", None)
    if section is None:
        raise ConfigError(f"the config has no search space: {NO_SPACE_HINT}", "tune")
    if isinstance(section, dict) and set(section) <= set(TuneSection.model_fields) and not section.get("space"):
        raise ConfigError(f"tune.space is empty: {NO_SPACE_HINT}", "tune.space")  # (unknown keys: the model says)
    try:
        parsed = TuneSection.model_validate(section)
    except ValidationError as error:
        raise from_validation_error(error, ("tune",)) from None
    except Problem as problem:
        raise config_error(("tune",), problem) from None
    space = tuple(distribution.to_param(key) for key, distribution in parsed.space.items())

    policies = raw.get("policies")
    labels = list(policies) if isinstance(policies, dict) else []
    policy = parsed.policy
    if policy is None:
        if len(labels) != 1:
            raise ConfigError(
                f"tune.policy: the config has {len(labels)} policies ({', '.join(map(str, labels))}): "
                "name the one to tune, e.g. tune.policy=" + (str(labels[0]) if labels else "dream"),
                "tune.policy",
            )
        policy = labels[0]
    if policy not in labels:
        raise ConfigError(f"tune.policy: {policy!r} is not under policies ({', '.join(map(str, labels))})", "tune.policy")
    for param in space:
        if not _tunable(param.key, policy):
            raise ConfigError(
                f"tune.space.{param.key}: only algo.* and policies.{policy}.policy_kwargs.* values "
                f"(and policies.{policy}.learning_rate_scale) are tuned",
                f"tune.space.{param.key}",
            )
    return raw, TuneSettings(space=space, policy=str(policy), objective=parsed.objective, sampler=dict(parsed.sampler),
                             pruner=None if parsed.pruner is None else dict(parsed.pruner))


def _tunable(key: str, policy: str) -> bool:
    return (key.startswith("algo.") or key.startswith(f"policies.{policy}.policy_kwargs.")
            or key == f"policies.{policy}.learning_rate_scale")


def substitute(raw: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``raw`` with each dotted path set to its value (mappings created as needed)."""
    result = copy.deepcopy(raw)
    for key, value in values.items():
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"tune.space.{key}: {part} is not a mapping in the config", f"tune.space.{key}")
            node = child
        node[parts[-1]] = value
    return result


def narrow_to_policy(raw: dict[str, Any], policy: str) -> dict[str, Any]:
    """The raw config with only ``policy`` under policies (and no report baseline naming another)."""
    narrowed = dict(raw)
    narrowed["policies"] = {policy: raw["policies"][policy]}
    report = raw.get("report")
    if isinstance(report, dict) and report.get("baseline") not in (None, policy):
        narrowed["report"] = {key: value for key, value in report.items() if key != "baseline"}
    return narrowed
