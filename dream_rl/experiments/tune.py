"""Hyper-parameter search over an experiment config with Optuna (``dream-rl tune``).

A tune config is an ordinary experiment config plus a ``tune:`` section that declares the search
space (:mod:`.tune_space`: the syntax, its pydantic models and :func:`parse_tune_section`); the
values it samples replace the config's own.

A trial: substitute the sampled values into the raw config, keep only the tuned policy, validate
through :func:`dream_rl.experiments.config.validate_config` (so every value is checked as in
``train``), and train every run of it (every env and seed, one after the other) with the runner's
:func:`~dream_rl.experiments.runner.train_run`, under
``<output_dir>/<name>/trials/<study>/trial_<k>/``.

Objective (maximized): the mean over the trial's runs of the normalized evaluation score
(``eval.csv``'s ``mean_score``; the mean return for an env without reference scores, allowed only
when the config has one env). ``final``: the score of each run's last evaluation. ``auc``: the area
under each run's score-vs-steps curve divided by the steps spanned (the report's AUC), which
rewards learning early.

Pruning: after every periodic evaluation the trial reports the objective so far (the finished
runs' values and the current run's value up to now, averaged) at step ``budgets of the earlier
runs + steps of the evaluation``; Optuna's median pruner stops a trial whose best reported value
is below the median of the finished trials at the same step. A pruned run stops
at that evaluation (its ``run_info.json`` says ``pruned``).

Storage: an SQLite file ``<output_dir>/<name>/study.db`` by default; any Optuna RDB URL
(``sqlite:///path``, ``postgresql://...``, ``mysql+pymysql://...``), or a journal file (a path
ending in ``.log`` or ``.journal``, or ``journal:PATH``) shares one study between processes and
machines; a plain path ending in ``.db``, ``.sqlite`` or ``.sqlite3`` is an SQLite file. Anything
else (``--storage notaurl``) is refused rather than taken as a file name.

Workers: ``workers`` processes run trials on the same storage at once, started, logged and stopped
by the process pool that ``compare`` uses (:func:`dream_rl.experiments.parallel.run_tasks`). Each
worker is one task of the pool that runs its share of the trials in its own study object (Optuna's
study-per-process model; the module doc of :mod:`.parallel` says why a trial is not the unit).

Outputs in ``<output_dir>/<name>/``: the study storage, ``best_config.yaml`` (the config with the
best trial's values, without the ``tune`` section: ready for ``dream-rl train|compare``) and
``trials.csv`` (one row per trial). The command line is :mod:`dream_rl.cli.tune`.
"""

from __future__ import annotations

import csv
import inspect
import json
import math
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from stable_baselines3.common.callbacks import BaseCallback

from dream_rl._deprecation import moved_names
from dream_rl.errors import first_line
from dream_rl.experiments.callbacks import normalizer
from dream_rl.experiments.config import ConfigError, apply_overrides, read_yaml, validate_config
from dream_rl.experiments.parallel import Outcome, Task, run_tasks
from dream_rl.experiments.records import read_eval_record, writable_dir
from dream_rl.experiments.report import area_under_curve
from dream_rl.experiments.runner import train_run
from dream_rl.experiments.tune_space import (
    NO_SPACE_HINT,
    OBJECTIVES,
    SPEC_FIELDS,
    SearchParam,
    TuneSettings,
    narrow_to_policy,
    parse_tune_section,
    substitute,
)

if TYPE_CHECKING:  # optuna is an optional extra, imported when tuning starts
    import optuna

__all__ = [
    "NO_SPACE_HINT",
    "OBJECTIVES",
    "SPEC_FIELDS",
    "TRIALS_COLUMNS",
    "SearchParam",
    "TuneResult",
    "TuneSettings",
    "load_tune_config",
    "parse_tune_section",
    "resolve_storage",
    "run_tuning",
    "run_value",
    "substitute",
]

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
TRIALS_COLUMNS = ("number", "state", "value", "duration_s", "params")

# The command line moved to dream_rl.cli.tune; these names stay importable from here for existing code,
# resolved on first access (the CLI imports this module, not the other way round).
_MOVED_TO_CLI = ("add_tune_command", "cmd_tune")


__getattr__ = moved_names(__name__, _MOVED_TO_CLI, "dream_rl.cli.tune")


@dataclass(frozen=True)
class TuneResult:
    study_name: str
    storage: str
    best_value: float
    best_params: dict[str, Any]
    best_trial: int
    best_config: Path
    trials_csv: Path
    n_complete: int
    n_pruned: int
    n_failed: int


def _env_ids(raw: dict[str, Any]) -> list[str]:
    """The env ids of a raw config (the single ``env:`` form or an ``envs:`` list)."""
    entries = [raw.get("env")] + list(raw.get("envs") or [])
    ids = []
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            ids.append(entry["id"])
        elif isinstance(entry, str):
            ids.append(entry)
    return ids


# --------------------------------------------------------------------------------------------
# Storage


JOURNAL_SUFFIXES = (".log", ".journal")
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
STORAGE_HINT = (
    "an RDB URL (sqlite:///study.db, postgresql://...), a journal file (PATH.log, PATH.journal or journal:PATH) "
    "or an SQLite file (PATH.db)"
)


def _storage_folder(path: Path, storage: str) -> None:
    """Create the folder of a storage file, or a one-line ConfigError saying why it cannot be."""
    try:
        writable_dir(path.parent, f"--storage {storage}", "choose a path in a folder you can write to")
    except ConfigError as error:
        raise ConfigError(str(error)) from None


def resolve_storage(storage: str | None, tune_dir: Path) -> tuple[str, Any]:
    """(a printable description, what ``optuna.create_study(storage=...)`` takes)."""
    import optuna

    if storage is None:
        storage = str((tune_dir / "study.db").resolve())
    journal = storage.removeprefix("journal:") if storage.startswith("journal:") else None
    if journal is None and "://" not in storage and storage.endswith(JOURNAL_SUFFIXES):
        journal = storage
    if journal is not None:
        from optuna.storages.journal import JournalFileBackend

        if not journal:
            raise ConfigError(f"--storage {storage}: expected a file after journal:, e.g. journal:runs/study.log")
        _storage_folder(Path(journal), storage)
        try:
            return f"journal file {journal}", optuna.storages.JournalStorage(JournalFileBackend(journal))
        except OSError as error:
            raise ConfigError(f"--storage {storage}: cannot open it ({error.strerror or type(error).__name__})") from None
    if "://" not in storage:  # a plain path: an SQLite file, if it says so
        if not storage.endswith(SQLITE_SUFFIXES):
            raise ConfigError(f"--storage {storage!r}: expected {STORAGE_HINT}")
        _storage_folder(Path(storage), storage)
        storage = f"sqlite:///{Path(storage).resolve()}"
    engine_kwargs: dict[str, Any] = {}
    if storage.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 120}}  # several worker processes share the file
    try:
        return storage, optuna.storages.RDBStorage(storage, engine_kwargs=engine_kwargs)
    except Exception as error:  # noqa: BLE001  a bad URL or a missing database driver
        raise ConfigError(f"--storage {storage}: cannot open it ({type(error).__name__}: {first_line(error)})") from None

# --------------------------------------------------------------------------------------------
# Objective


def _read_eval(path: Path) -> tuple[list[float], list[float]]:
    """(timesteps, score) of every evaluation in ``eval.csv``; the score is the normalized score,
    or the mean return for envs without reference scores."""
    rows = read_eval_record(path)
    steps = [float(r.timesteps) for r in rows]
    scores = [r.mean_score if r.mean_score is not None else r.mean_return for r in rows]
    return steps, scores


def run_value(steps: list[float], scores: list[float], objective: str) -> float:
    """One run's objective from its evaluations so far."""
    if not scores:
        return math.nan
    if objective == "final":
        return scores[-1]
    return area_under_curve(np.asarray(steps), np.asarray(scores))


def _make_reporter(
    trial: optuna.Trial,
    eval_path: Path,
    objective: str,
    earlier: list[float],
    step_offset: int,
    total_timesteps: int,
    pruning: bool,
):
    """A callback (after the runner's evaluation callback) that reports each new evaluation to
    ``trial`` and stops learning when the pruner says so."""

    class TrialReporter(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.seen_size = -1
            self.last_step = -1
            self.pruned = False

        def _check(self) -> bool:
            size = eval_path.stat().st_size if eval_path.exists() else -1
            if size == self.seen_size or self.pruned:
                return True
            self.seen_size = size
            steps, scores = _read_eval(eval_path)
            if not scores or steps[-1] == 0:  # the untrained policy's score says nothing of the values
                return True
            step = step_offset + min(int(steps[-1]), total_timesteps)  # the same in every trial
            if step == self.last_step:  # the end-of-training evaluation after one at the budget
                return True
            self.last_step = step
            value = float(sum(earlier) + run_value(steps, scores, objective)) / (len(earlier) + 1)
            trial.report(value, step)
            if pruning and trial.should_prune():
                self.pruned = True
                return False
            return True

        def _on_step(self) -> bool:
            return self._check()

        def _on_training_end(self) -> None:
            self._check()

    return TrialReporter()


class _Objective:
    """Optuna objective: one trial = every run of the config with sampled values."""

    def __init__(self, base: dict[str, Any], settings: TuneSettings, trials_dir: Path, log: Callable[[str], None]) -> None:
        self.base, self.settings, self.trials_dir, self.log = base, settings, trials_dir, log

    def trial_raw(self, number: int, values: Mapping[str, Any]) -> dict[str, Any]:
        raw = substitute(narrow_to_policy(self.base, self.settings.policy), values)
        raw["name"] = f"trial_{number:04d}"
        raw["output_dir"] = str(self.trials_dir)
        raw.setdefault("train", {})["progress_bar"] = False
        return raw

    def __call__(self, trial: optuna.Trial) -> float:
        import optuna

        values = {param.key: param.suggest(trial) for param in self.settings.space}
        config = validate_config(self.trial_raw(trial.number, values))
        shutil.rmtree(config.experiment_dir, ignore_errors=True)  # left by an earlier study of that name
        shown = ", ".join(f"{k.rsplit('.', 1)[-1]}={v!r}" for k, v in values.items())
        self.log(f"[trial {trial.number}] {shown}")

        earlier: list[float] = []
        steps_before = 0  # the runs' budgets so far: a run's steps count on from there
        for index, run in enumerate(config.runs()):
            run_dir, budget, train_one = _run_handle(config, run)
            reporter = _make_reporter(trial, run_dir / "eval.csv", self.settings.objective, earlier,
                                      steps_before, budget, pruning=self.settings.pruner is not None)
            steps_before += budget
            train_one(progress_bar=False, extra_callbacks=[reporter],
                      log=lambda line: self.log(f"[trial {trial.number}] {line}"))
            if reporter.pruned:
                _mark_pruned(run_dir)
                self.log(f"[trial {trial.number}] pruned after {index + 1} run(s)")
                raise optuna.TrialPruned()
            earlier.append(run_value(*_read_eval(run_dir / "eval.csv"), self.settings.objective))
        value = float(sum(earlier) / len(earlier))
        self.log(f"[trial {trial.number}] {self.settings.objective} = {value:.4f}")
        return value


def _run_handle(config: Any, run: Any) -> tuple[Path, int, Callable[..., Any]]:
    """(folder, budget in env steps, a function training it) of one of ``config.runs()``: each
    run has its env's budget."""
    return run.run_dir, int(run.train.total_timesteps), lambda **kwargs: train_run(run, **kwargs)


def _mark_pruned(run_dir: Path) -> None:
    path = run_dir / "run_info.json"
    if path.exists():
        info = json.loads(path.read_text())
        info["status"] = "pruned"
        path.write_text(json.dumps(info, indent=2) + "\n")

# --------------------------------------------------------------------------------------------
# Driver


@dataclass(frozen=True)
class _Job:
    """What a worker process needs (picklable)."""

    config_path: str
    overrides: tuple[str, ...]
    storage: str | None
    study_name: str | None
    n_trials: int
    worker: int


def load_tune_config(config_path: str | Path, overrides: Iterable[str] = ()) -> tuple[dict[str, Any], TuneSettings, Path, str]:
    """(raw config without tune, settings, tune folder, default study name); checks the space by
    validating the config at the low and high end of every dimension."""
    raw = apply_overrides(read_yaml(config_path), overrides)
    base, settings = parse_tune_section(raw)
    base_config = validate_config(base)  # the config on its own (also names the experiment folder)
    ids = _env_ids(base)
    if len(ids) > 1:
        unscored = [env_id for env_id in ids if normalizer(env_id) is None]
        if unscored:
            raise ConfigError(
                f"tune averages normalized scores over envs, and {unscored[0]} has no reference scores: "
                "tune on it alone, or on suite envs (`dream-rl envs`)",
                "envs",
            )
    objective = _Objective(base, settings, base_config.experiment_dir / "trials", print)
    for end in (0, -1):  # catch a mistyped path or an impossible value before any training
        corner = {}
        for param in settings.space:
            if param.type == "categorical":
                corner[param.key] = param.choices[end]
            else:
                corner[param.key] = param.low if end == 0 else param.high
                corner[param.key] = int(corner[param.key]) if param.type == "int" else float(corner[param.key])
        try:
            validate_config(objective.trial_raw(0, corner))
        except ConfigError as error:
            raise ConfigError(f"tune.space ({'low' if end == 0 else 'high'} end): {error}", error.key) from None
    return base, settings, base_config.experiment_dir, base_config.name


def _check_arguments(cls: type, kwargs: Mapping[str, Any], where: str) -> None:
    """``kwargs`` for ``cls`` (TPESampler, MedianPruner) from a config: known names, plain values
    (numbers, true/false, null). Arguments that take a function (TPESampler's gamma, weights,
    constraints_func) cannot come from YAML and are refused by name."""
    params = {name: param for name, param in inspect.signature(cls.__init__).parameters.items() if name != "self"}
    valid = [name for name, param in params.items() if "Callable" not in str(param.annotation)]
    for name, value in kwargs.items():
        if name not in valid:
            why = (f"{cls.__name__}'s {name} takes a function, which a config cannot give" if name in params
                   else f"not an argument of {cls.__name__}")
            raise ConfigError(f"{where}.{name}: {why} (valid: {', '.join(valid)})", f"{where}.{name}")
        if value is not None and not isinstance(value, (bool, int, float)):
            raise ConfigError(f"{where}.{name}: expected a number, true/false or null, got {value!r}", f"{where}.{name}")


def _open_study(job: _Job, settings: TuneSettings, tune_dir: Path, default_name: str, seed_offset: int = 0):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # we print our own progress lines
    description, storage = resolve_storage(job.storage, tune_dir)
    _check_arguments(optuna.samplers.TPESampler, settings.sampler, "tune.sampler")
    _check_arguments(optuna.pruners.MedianPruner, settings.pruner or {}, "tune.pruner")
    sampler_kwargs = {"n_startup_trials": 5, "seed": 0, **settings.sampler}
    if sampler_kwargs.get("seed") is not None:
        sampler_kwargs["seed"] = int(sampler_kwargs["seed"]) + seed_offset
    try:
        sampler = optuna.samplers.TPESampler(**sampler_kwargs)
        pruner = (
            optuna.pruners.NopPruner()
            if settings.pruner is None
            else optuna.pruners.MedianPruner(**{"n_startup_trials": 3, **settings.pruner})
        )
    except TypeError as error:
        raise ConfigError(f"tune.sampler / tune.pruner: {error}", "tune") from None
    study = optuna.create_study(
        study_name=job.study_name or default_name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction="maximize",
        load_if_exists=True,
    )
    return study, description


def _work(job: _Job, log: Callable[[str], None] = print) -> None:
    """Run ``job.n_trials`` trials in this process."""
    base, settings, tune_dir, name = load_tune_config(job.config_path, job.overrides)
    # Seed each worker (and each continuation of a study) apart, so they do not repeat samples.
    probe, _ = _open_study(job, settings, tune_dir, name)
    study, _ = _open_study(job, settings, tune_dir, name, seed_offset=len(probe.trials) + max(job.worker, 0))
    objective = _Objective(base, settings, tune_dir / "trials" / study.study_name, log)
    # A sampled combination that cannot be built or diverges fails its trial, not the study.
    study.optimize(objective, n_trials=job.n_trials, catch=(ConfigError, ValueError, AssertionError))


def _worker_task(job: _Job, log: Callable[[str], None]) -> Outcome:
    """One worker of ``tune --workers N``, as a task of the process pool: its share of the trials."""
    _work(job, lambda line: log(f"[worker {job.worker}] {line}"))
    return Outcome(f"worker {job.worker}", "completed", message=f"{job.n_trials} trial(s)")


def run_tuning(
    config_path: str | Path,
    overrides: Iterable[str] = (),
    *,
    n_trials: int,
    storage: str | None = None,
    study_name: str | None = None,
    workers: int = 1,
    log: Callable[[str], None] = print,
) -> TuneResult:
    """Run ``n_trials`` more trials of the study (split over ``workers`` processes), then write
    ``best_config.yaml`` and ``trials.csv``. See the module docstring."""
    if n_trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {n_trials}")
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if study_name is not None and not _SAFE_NAME.match(study_name):
        raise ConfigError(f"--study-name {study_name!r}: names a folder of trials: use letters, digits, '_', '-', '.'")
    overrides = tuple(overrides)
    base, settings, tune_dir, name = load_tune_config(config_path, overrides)
    writable_dir(tune_dir)
    job = _Job(str(config_path), overrides, storage, study_name, n_trials, -1)
    study, description = _open_study(job, settings, tune_dir, name)  # creates it once, before the workers
    log(f"study {study.study_name!r} in {description}: {len(study.trials)} earlier trials; "
        f"{n_trials} more, {settings.objective} score of {settings.policy!r}, {workers} worker(s)")

    if workers == 1:
        _work(job, log)
    else:
        shares = [n_trials // workers + (k < n_trials % workers) for k in range(workers)]
        tasks = [Task(f"worker {k}", _worker_task, (_Job(job.config_path, overrides, storage, study_name, share, k),))
                 for k, share in enumerate(shares) if share]
        outcomes, stopped = run_tasks(tasks, len(tasks), log)
        if stopped:  # each worker's running trial is lost; the finished ones are in the study
            raise KeyboardInterrupt
        failed = [outcome.name for outcome in outcomes if outcome.status == "failed"]
        if failed:
            log(f"{len(failed)} worker(s) failed ({', '.join(failed)}); the study keeps their trials")
    study, _ = _open_study(job, settings, tune_dir, name)
    return _write_results(study, base, settings, config_path, tune_dir, description, log)


def _write_results(study, base, settings: TuneSettings, config_path, tune_dir: Path, description: str, log) -> TuneResult:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = {state: sum(t.state == state for t in trials) for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    by_key = {param.key: param for param in settings.space}
    trials_csv = tune_dir / f"trials_{study.study_name}.csv" if study.study_name != tune_dir.name else tune_dir / "trials.csv"
    with trials_csv.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(TRIALS_COLUMNS)
        for t in trials:
            duration = t.duration.total_seconds() if t.duration is not None else ""
            params = {k: by_key[k].value_of(v) if k in by_key else v for k, v in t.params.items()}
            writer.writerow([t.number, t.state.name, "" if t.value is None else t.value, duration, json.dumps(params)])
    if not counts[TrialState.COMPLETE]:
        raise ConfigError(
            f"no trial of study {study.study_name!r} completed ({counts[TrialState.PRUNED]} pruned, "
            f"{counts[TrialState.FAIL]} failed; see {trials_csv}): run more trials or widen the budget"
        )
    best = study.best_trial
    values = {key: by_key[key].value_of(stored) for key, stored in best.params.items() if key in by_key}
    best_raw = substitute(narrow_to_policy(base, settings.policy), values)
    best_raw["name"] = f"{base['name']}-best"
    validate_config(best_raw)
    best_path = tune_dir / "best_config.yaml" if study.study_name == tune_dir.name else tune_dir / f"best_config_{study.study_name}.yaml"
    header = (
        f"# Best trial ({best.number}) of study {study.study_name!r}: {settings.objective} score {best.value:.4f}\n"
        f"# from `dream-rl tune {config_path}` ({counts[TrialState.COMPLETE]} complete, "
        f"{counts[TrialState.PRUNED]} pruned, {counts[TrialState.FAIL]} failed trials; storage {description}).\n"
        f"#   dream-rl compare {best_path}\n"
    )
    best_path.write_text(header + yaml.safe_dump(best_raw, sort_keys=False, default_flow_style=None))
    log(f"best trial {best.number}: {settings.objective} = {best.value:.4f}")
    for key, value in values.items():
        log(f"  {key}: {value!r}")
    log(f"best config: {best_path}   trials: {trials_csv}")
    return TuneResult(
        study_name=study.study_name,
        storage=description,
        best_value=float(best.value),
        best_params=values,
        best_trial=best.number,
        best_config=best_path,
        trials_csv=trials_csv,
        n_complete=counts[TrialState.COMPLETE],
        n_pruned=counts[TrialState.PRUNED],
        n_failed=counts[TrialState.FAIL],
    )
