"""Launch an experiment: every (env, policy, seed) run of a config, here or in parallel.

:func:`run_experiment` is what ``dream-rl train`` and ``compare`` call: it checks every policy builds on
every env (:func:`~dream_rl.experiments.runner.check_buildable`), prepares the experiment folder
(:func:`prepare_experiment`), then trains the runs one after the other in this process
(:func:`~dream_rl.experiments.runner.train_run`, one run) or hands them to :mod:`.parallel` (worker
processes, or Ray tasks).

The experiment folder ``<output_dir>/<name>/`` holds the resolved config of every run trained there:
a later config with the same name adds envs, policies or seeds to it (:func:`prepare_experiment`
merges them, so that ``report`` keeps the earlier runs), and a config that differs in algo or env is
refused without ``--fresh`` (:func:`check_experiment_folder`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dream_rl.experiments.config import (
    ConfigError,
    EnvConfig,
    ExperimentConfig,
    SuiteEnvConfig,
    config_to_yaml,
    read_yaml,
    validate_config,
)
from dream_rl.experiments.parallel import run_parallel
from dream_rl.experiments.problems import first_difference
from dream_rl.experiments.records import writable_dir
from dream_rl.experiments.runner import RunResult, check_buildable, train_run

__all__ = ["check_experiment_folder", "prepare_experiment", "run_experiment"]


def prepare_experiment(config: ExperimentConfig, fresh: bool = False) -> None:
    """Before training: every policy builds on every env, and the experiment folder holds the
    resolved config (merged with the runs trained there earlier).

    An experiment folder that holds another experiment's config (another algo or env, so that its
    runs could not be reported with this config's) is refused, unless ``fresh``: this config
    then replaces it, and the runs it does not name stay on disk but leave the report."""
    check_buildable(config)
    check_experiment_folder(config, fresh)
    writable_dir(config.experiment_dir)
    (config.experiment_dir / "config.yaml").write_text(config_to_yaml(_merge_with_earlier_runs(config)))


def check_experiment_folder(config: ExperimentConfig, fresh: bool = False) -> None:
    """Refuse (ConfigError) to train ``config`` into an experiment folder that holds another
    experiment's runs under the same name, unless ``fresh`` (see :func:`prepare_experiment`)."""
    conflict = _conflict_with_earlier_runs(config)
    if conflict and not fresh:
        raise ConfigError(
            f"{config.experiment_dir} holds experiment {config.name!r} trained with another config ({conflict}); "
            f"give this one another name (name={config.name}-2) or output_dir, or pass --fresh to replace it "
            "(the earlier runs stay on disk but leave the report)", "name")


def run_experiment(
    config: ExperimentConfig,
    *,
    fresh: bool = False,
    progress_bar: bool | None = None,
    log: Callable[[str], None] = print,
    workers: int = 1,
    ray_address: str | None = None,
) -> list[RunResult]:
    """Train every run: one after the other here (``workers=1``), in ``workers`` processes, or as
    Ray tasks (``ray_address``). ``fresh`` deletes each run's previous outputs first."""
    prepare_experiment(config, fresh=fresh)
    if workers > 1 or ray_address is not None:
        return run_parallel(config, workers=workers, ray_address=ray_address, fresh=fresh, log=log)
    return [train_run(run, fresh=fresh, progress_bar=progress_bar, log=log) for run in config.runs()]


def _earlier_experiment(config: ExperimentConfig) -> ExperimentConfig | ConfigError | None:
    """The config saved in ``config``'s experiment folder (checked as data), the error that makes
    it unreadable, or None when there is none."""
    path = config.experiment_dir / "config.yaml"
    if not path.exists():
        return None
    try:
        return validate_config(read_yaml(path), build_envs=False)
    except ConfigError as error:
        return error


def _budgetless(env: EnvConfig) -> EnvConfig:
    """An ``envs:`` entry without its budget: raising a budget keeps the same experiment."""
    if isinstance(env, SuiteEnvConfig):
        return env.model_copy(update={"total_timesteps": None, "eval_every": None})
    return env


def _conflict_with_earlier_runs(config: ExperimentConfig) -> str | None:
    """Why the runs trained earlier in ``config``'s experiment folder cannot be reported together
    with ``config``'s (another algo, another env form, another env under a label), or None."""
    earlier = _earlier_experiment(config)
    if earlier is None:
        return None
    if isinstance(earlier, ConfigError):
        return f"its config.yaml is unreadable: {earlier}"
    if earlier.algo != config.algo:
        return first_difference(earlier.algo, config.algo, "algo", "earlier") or "algo"
    if (earlier.envs is None) != (config.envs is None):
        return "env: in one, envs: in the other"
    if config.envs is None:
        if earlier.env != config.env:
            return first_difference(earlier.env.model_dump(), config.env.model_dump(), "env", "earlier") or "env"  # type: ignore[union-attr]
        return None
    labels = {env.label: _budgetless(env) for env in config.envs}
    for index, env in enumerate(earlier.envs):  # type: ignore[arg-type]
        if env.label in labels and labels[env.label] != _budgetless(env):
            difference = first_difference(_budgetless(env).model_dump(), labels[env.label].model_dump(), f"envs.{index}", "earlier")
            return difference or f"env label {env.label!r} names another env"
    return None


def _merge_with_earlier_runs(config: ExperimentConfig) -> ExperimentConfig:
    """The config to save at the experiment level (what ``report DIR`` compares): ``config`` plus
    the envs, policies and seeds trained earlier into the same directory with the same algo (and,
    in the ``env:`` form, the same env), so that adding a seed, a policy or an env later
    (``train.seeds=[3]``) keeps the earlier runs in the report. ``config`` alone when the earlier
    runs cannot be merged (:func:`prepare_experiment` refuses that case without ``--fresh``)."""
    earlier = _earlier_experiment(config)
    if earlier is None or isinstance(earlier, ConfigError) or _conflict_with_earlier_runs(config):
        return config
    update: dict[str, Any] = {}
    if config.envs is not None:
        labels = {env.label for env in config.envs}
        update["envs"] = list(config.envs) + [env for env in earlier.envs if env.label not in labels]  # type: ignore[union-attr]
    seeds = earlier.train.seeds + [seed for seed in config.train.seeds if seed not in earlier.train.seeds]
    update["policies"] = {**earlier.policies, **config.policies}
    update["train"] = config.train.model_copy(update={"seeds": seeds})
    return config.model_copy(update=update)
