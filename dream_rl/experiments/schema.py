"""The experiment config schema: one pydantic model per section, and :class:`Run`.

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
        learning_rate_scale: float > 0
                                   [1.0] multiplies the learning rate of this policy's runs, on
                                   every env (the env's algo.learning_rate, or the top-level one,
                                   times this): one learning rate per env for every policy, and a
                                   per-policy multiple of it, which tuning may choose per torso
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

What a config may name is closed: an env is a registered gymnasium id (never a ``module:callable``
entry point), a policy is one of :func:`~dream_rl.experiments.names.policy_names`, and classes in
policy_kwargs are names in fixed tables (:func:`~dream_rl.experiments.names.resolve_class`). See
docs/security.md.

A relative output_dir is relative to the working directory. Numbers may be written ``3e-4`` or
``1e5``; an integer key accepts a float with an integral value (``1e5``).

The sections are pydantic models (unknown keys forbidden, typed ranges: :mod:`.fields`); ``algo`` is
checked by a model built from RecurrentPPO's signature, and policy and env kwargs against the
constructors they go to (:mod:`.checks`). :func:`~dream_rl.experiments.config.validate_config`
validates a raw mapping with :class:`ExperimentConfig` and resolves the defaults that depend on other
sections.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from dream_rl.errors import ConfigError
from dream_rl.experiments.checks import (
    BUILD_ENVS,
    check_env_kwargs,
    registered_env,
    validate_algo,
    validate_policy_kwargs,
)
from dream_rl.experiments.fields import Bool, Count, FolderName, Kwargs, Positive, Section, Seed, Text, safe_name
from dream_rl.experiments.names import resolve_policy
from dream_rl.experiments.problems import Problem, describe, located

__all__ = [
    "EnvConfig",
    "ExperimentConfig",
    "PolicyConfig",
    "ReportConfig",
    "Run",
    "SuiteEnvConfig",
    "TrainConfig",
    "default_env_label",
]


class EnvConfig(Section):
    """One environment (the ``env:`` form)."""

    id: Annotated[Text, AfterValidator(registered_env)]
    kwargs: Kwargs = {}
    n_envs: Count = 8
    vec_env: Literal["dummy", "subproc"] = "dummy"

    @model_validator(mode="after")
    def _kwargs_fit_the_constructor(self) -> EnvConfig:
        if BUILD_ENVS.get():  # reading a results folder imports nothing, not even a registered env's module
            check_env_kwargs(self.id, self.kwargs)
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
        return validate_algo(value, fill_defaults=False)


def default_env_label(env_id: str) -> str:
    """A folder name for an env id: its last part with unsafe characters replaced (TMaze-v0)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", env_id.rsplit("/", 1)[-1]) or "env"


class PolicyConfig(Section):
    """One policy to compare: a class name, its constructor arguments, and the multiple of each env's
    learning rate its runs train with (``learning_rate_scale``, applied by the runner when it builds
    RecurrentPPO)."""

    policy: Text
    policy_kwargs: Kwargs = {}
    learning_rate_scale: Positive = 1.0

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
        return validate_policy_kwargs(resolve_policy(info.data["policy"]), kwargs)


def _distinct_seeds(seeds: Any) -> Any:
    if isinstance(seeds, bool) or not isinstance(seeds, list) or not seeds:
        raise Problem((), f"expected a non-empty list of integers, e.g. [0, 1, 2], got {describe(seeds)}")
    return seeds


class TrainConfig(Section):
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
            raise Problem((), f"seeds must be distinct, got {seeds}")
        return seeds


class ReportConfig(Section):
    baseline: Text | None = None  # resolved: "lstm" when there is such a policy


class ExperimentConfig(Section):
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
                raise Problem(("env",), "missing")
            if "env" in data and "envs" in data:
                raise Problem(("envs",), "give either env: (one environment) or envs: (a list), not both")
        return data

    @field_validator("env", mode="before")
    @classmethod
    def _a_mapping(cls, env: Any) -> Any:
        if env is None:  # (None is only the default of the envs: form)
            raise Problem((), "expected a mapping (id: ..., kwargs: ...), got None")
        return env

    @field_validator("envs", mode="before")
    @classmethod
    def _non_empty_list(cls, envs: Any) -> Any:
        if not isinstance(envs, list) or not envs:
            raise Problem((), f"expected a non-empty list of envs (- id: ...), got {describe(envs)}")
        return envs

    @field_validator("algo")
    @classmethod
    def _full_algo(cls, value: dict[str, Any]) -> dict[str, Any]:
        return validate_algo(value, fill_defaults=True)

    @field_validator("policies", mode="before")
    @classmethod
    def _policy_labels(cls, policies: Any) -> Any:
        if isinstance(policies, dict):
            if not policies:
                raise Problem((), "at least one policy is needed, e.g. lstm: {policy: MlpLstmPolicy}")
            for label in policies:
                if not isinstance(label, str) or not label:
                    raise Problem((), f"policy labels must be non-empty strings, got {label!r}")
                located(lambda: safe_name(label), (label,))
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
