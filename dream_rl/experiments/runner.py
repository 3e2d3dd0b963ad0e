"""Train every (policy, seed) run of an experiment with sb3-contrib's RecurrentPPO.

One run, top to bottom (:func:`train_run`):

1. decide where to start: from scratch, from the latest checkpoint (an interrupted run), or from
   the final model (a finished run whose budget was raised); a finished run is skipped;
2. build the training envs (``VecMonitor`` + ``VecCheckNan``) and a separate evaluation env;
3. build ``RecurrentPPO`` (or load it) and point its logger at ``<run dir>/tb``;
4. ``model.learn`` with callbacks: periodic evaluation (``eval.csv`` + TensorBoard), periodic
   checkpoints, the torso internals (DREAM's surprise, time constant, fast-weight norm), the
   progress bar;
5. save ``final_model.zip`` and ``run_info.json`` (status, steps/s, versions, hardware).

Ctrl-C (``KeyboardInterrupt``) during step 4 saves a checkpoint, flushes the logs, marks the run
``interrupted`` in ``run_info.json`` and raises :class:`TrainingInterrupted`; training the same
config again resumes from that checkpoint with ``reset_num_timesteps=False``.

Outputs of one run, in ``<output_dir>/<name>/<label>/seed_<seed>/``::

    config.yaml        the resolved config narrowed to this policy and seed (a valid config)
    tb/                TensorBoard events: SB3's scalars, eval/*, torso/*
    checkpoints/       rl_model_<steps>_steps.zip, the last train.keep_checkpoints of them
    eval.csv           one row per evaluation (see EVAL_COLUMNS)
    final_model.zip    RecurrentPPO.load-able
    run_info.json      status (running | interrupted | completed | failed), timesteps, steps/s
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import platform
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ProgressBarCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecCheckNan, VecEnv, VecMonitor

import dream_rl
from dream_rl.envs import normalized_score
from dream_rl.machine import cpu_name
from dream_rl.experiments.config import (
    ConfigError,
    ExperimentConfig,
    config_to_yaml,
    read_yaml,
    resolve_class,
    resolve_policy,
    validate_config,
)
from dream_rl import TorsoInternalsCallback

__all__ = [
    "EVAL_COLUMNS",
    "RunResult",
    "TrainingInterrupted",
    "build_model",
    "evaluate_run",
    "find_run_dirs",
    "check_buildable",
    "latest_checkpoint",
    "make_vec_env",
    "normalizer",
    "read_run_info",
    "run_experiment",
    "train_run",
]

EVAL_COLUMNS = ("timesteps", "mean_return", "std_return", "mean_score", "std_score", "mean_length", "episodes", "seconds")
EVAL_SEED_OFFSET = 10_000  # evaluation envs are seeded apart from the training envs
_CHECKPOINT = re.compile(r"^rl_model_(\d+)_steps\.zip$")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run; its checkpoint and logs are saved and ``train`` resumes from them."""

    def __init__(self, run_dir: Path, checkpoint: Path, timesteps: int) -> None:
        super().__init__(f"interrupted at {timesteps} steps; checkpoint {checkpoint}")
        self.run_dir, self.checkpoint, self.timesteps = run_dir, checkpoint, timesteps


@dataclass
class RunResult:
    label: str
    seed: int
    run_dir: Path
    status: str  # completed | skipped
    timesteps: int
    steps_per_second: float


# --------------------------------------------------------------------------------------------
# Environments


def make_vec_env(config: ExperimentConfig, n_envs: int, seed: int) -> VecEnv:
    """``n_envs`` copies of the config's env, seeded ``seed, seed+1, ...`` at their first reset,
    with episode statistics (``VecMonitor``) and a loud failure on NaN/inf (``VecCheckNan``)."""
    env_id, kwargs = config.env.id, dict(config.env.kwargs)

    def make_one() -> gym.Env:
        import dream_rl  # noqa: F401  (registers the suite in subprocesses too)

        return gym.make(env_id, **kwargs)

    vec_class = SubprocVecEnv if config.env.vec_env == "subproc" and n_envs > 1 else DummyVecEnv
    venv = vec_class([make_one] * n_envs)
    venv.seed(seed)
    return VecCheckNan(VecMonitor(venv), raise_exception=True)


def normalizer(env_id: str) -> Callable[[float], float] | None:
    """``return -> normalized score in [0, 1]`` for suite envs; None for envs without one."""
    try:
        normalized_score(env_id, 0.0)
    except (KeyError, ValueError):
        return None
    return lambda episode_return: float(normalized_score(env_id, episode_return))


# --------------------------------------------------------------------------------------------
# Model


def build_policy_kwargs(policy_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The config's policy_kwargs with classes given by name turned into classes."""
    kwargs = dict(policy_kwargs)
    for name in ("activation_fn", "optimizer_class", "features_extractor_class"):
        if name in kwargs:
            kwargs[name] = resolve_class(name, kwargs[name])
    return kwargs


def build_model(config: ExperimentConfig, label: str, env: VecEnv, seed: int) -> RecurrentPPO:
    """A fresh RecurrentPPO for policy ``label`` (seeds torch, numpy, the env and the action space)."""
    spec = config.policies[label]
    return RecurrentPPO(
        resolve_policy(spec.policy),
        env,
        policy_kwargs=build_policy_kwargs(spec.policy_kwargs),
        seed=seed,
        verbose=0,
        **config.algo,
    )


def check_buildable(config: ExperimentConfig) -> None:
    """Build every policy once on a one-env copy of the env, so that a bad value fails before any
    training starts (as a ConfigError naming the policy)."""
    for label in config.policies:
        env = make_vec_env(config, n_envs=1, seed=0)
        try:
            build_model(config, label, env, seed=0)
        except (ValueError, TypeError, AssertionError, RuntimeError) as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            key = f"policies.{label}"
            raise ConfigError(f"{key}: RecurrentPPO could not be built: {message}", key) from None
        finally:
            env.close()


def latest_checkpoint(run_dir: Path) -> tuple[Path, int] | None:
    """The checkpoint with the most timesteps in ``run_dir/checkpoints``, and its timesteps."""
    found = [
        (int(match.group(1)), path)
        for path in (run_dir / "checkpoints").glob("rl_model_*_steps.zip")
        if (match := _CHECKPOINT.match(path.name))
    ]
    if not found:
        return None
    steps, path = max(found)
    return path, steps


def save_checkpoint(model: RecurrentPPO, directory: Path, keep: int) -> Path:
    """Save ``rl_model_<steps>_steps.zip`` and delete all but the ``keep`` most recent."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"rl_model_{model.num_timesteps}_steps.zip"
    model.save(path)
    old = sorted(
        (int(m.group(1)), p) for p in directory.glob("rl_model_*_steps.zip") if (m := _CHECKPOINT.match(p.name))
    )
    for _, stale in old[:-keep]:
        stale.unlink()
    return path


# --------------------------------------------------------------------------------------------
# Callbacks


class PeriodicEvaluation(BaseCallback):
    """Every ``every`` env steps (and at the start and the end of training), run ``episodes``
    evaluation episodes, append a row to ``eval.csv`` and log ``eval/*`` to TensorBoard."""

    def __init__(
        self,
        eval_env: VecEnv,
        env_id: str,
        every: int,
        episodes: int,
        deterministic: bool,
        record_path: Path,
    ) -> None:
        super().__init__()
        self.eval_env, self.every, self.episodes, self.deterministic = eval_env, every, episodes, deterministic
        self.record_path = record_path
        self.score = normalizer(env_id)
        self.seconds = 0.0  # time spent evaluating (excluded from steps/s)
        self.next_eval = every
        self.last_eval = -1

    def _on_training_start(self) -> None:
        self.next_eval = (self.num_timesteps // self.every + 1) * self.every
        if not self.record_path.exists():  # a new run: evaluate the untrained policy too
            self.evaluate()
            self.logger.dump(self.num_timesteps)

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_eval:
            self.evaluate()
            self.next_eval = (self.num_timesteps // self.every + 1) * self.every
        return True

    def _on_training_end(self) -> None:
        if self.last_eval != self.num_timesteps:
            self.evaluate()
        self.logger.dump(self.num_timesteps)

    def evaluate(self) -> None:
        start = time.perf_counter()
        returns, lengths = evaluate_policy(
            self.model,
            self.eval_env,
            n_eval_episodes=self.episodes,
            deterministic=self.deterministic,
            return_episode_rewards=True,
            warn=False,
        )
        seconds = time.perf_counter() - start
        self.seconds += seconds
        self.last_eval = self.num_timesteps
        row: dict[str, Any] = {
            "timesteps": self.num_timesteps,
            "mean_return": float(np.mean(returns)),
            "std_return": float(np.std(returns)),
            "mean_score": "",
            "std_score": "",
            "mean_length": float(np.mean(lengths)),
            "episodes": len(returns),
            "seconds": round(seconds, 3),
        }
        self.logger.record("eval/mean_return", row["mean_return"])
        self.logger.record("eval/mean_ep_length", row["mean_length"])
        if self.score is not None:
            scores = [self.score(r) for r in returns]
            row["mean_score"], row["std_score"] = float(np.mean(scores)), float(np.std(scores))
            self.logger.record("eval/normalized_score", row["mean_score"])
        new_file = not self.record_path.exists()
        with self.record_path.open("a", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=EVAL_COLUMNS)
            if new_file:
                writer.writeheader()
            writer.writerow(row)


class PeriodicCheckpoint(BaseCallback):
    """Every ``every`` env steps, save a checkpoint (keeping the ``keep`` most recent)."""

    def __init__(self, directory: Path, every: int, keep: int) -> None:
        super().__init__()
        self.directory, self.every, self.keep = directory, every, keep
        self.next_save = every
        self.seconds = 0.0

    def _on_training_start(self) -> None:
        self.next_save = (self.num_timesteps // self.every + 1) * self.every

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_save:
            start = time.perf_counter()
            save_checkpoint(self.model, self.directory, self.keep)
            self.seconds += time.perf_counter() - start
            self.next_save = (self.num_timesteps // self.every + 1) * self.every
        return True


# --------------------------------------------------------------------------------------------
# Run bookkeeping


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """``run_info.json`` of a run ({} when there is none yet)."""
    path = run_dir / "run_info.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _write_run_info(run_dir: Path, info: dict[str, Any]) -> None:
    path = run_dir / "run_info.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    tmp.replace(path)


def _environment_info() -> dict[str, Any]:
    import gymnasium
    import sb3_contrib
    import stable_baselines3

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": cpu_name(),
        "torch": th.__version__,
        "torch_threads": th.get_num_threads(),
        "stable_baselines3": stable_baselines3.__version__,
        "sb3_contrib": sb3_contrib.__version__,
        "gymnasium": gymnasium.__version__,
        "dream_rl": dream_rl.__version__,
    }


def _truncate_eval_record(path: Path, timesteps: int) -> None:
    """Drop evaluations made after ``timesteps`` (the checkpoint a run resumes from)."""
    if not path.exists():
        return
    with path.open(newline="") as file:
        rows = [row for row in csv.DictReader(file) if int(row["timesteps"]) <= timesteps]
    if not rows:
        path.unlink()
        return
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=EVAL_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _check_same_setup(run_dir: Path, config: ExperimentConfig) -> None:
    """An existing run must come from the same env, algo and policy settings."""
    path = run_dir / "config.yaml"
    if not path.exists():
        return
    try:
        old = validate_config(read_yaml(path)).to_dict()
    except ConfigError:
        old = read_yaml(path)
    new = config.to_dict()
    for section in ("env", "algo", "policies"):
        difference = _first_difference(old.get(section), new[section], section)
        if difference:
            raise ConfigError(
                f"{run_dir} holds a run made with a different config ({difference}); "
                "pass --fresh to start it over, or change name or output_dir",
                difference.split(":")[0],
            )


def _first_difference(old: Any, new: Any, key: str) -> str | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for name in list(old) + [n for n in new if n not in old]:
            found = _first_difference(old.get(name), new.get(name), f"{key}.{name}")
            if found:
                return found
        return None
    return None if old == new else f"{key}: {old!r} in the run, {new!r} now"


# --------------------------------------------------------------------------------------------
# Training


def train_run(
    config: ExperimentConfig,
    label: str,
    seed: int,
    *,
    progress_bar: bool | None = None,
    extra_callbacks: Sequence[BaseCallback] = (),
    log: Callable[[str], None] = print,
) -> RunResult:
    """Train (or resume, or skip) the run of policy ``label`` with ``seed``. See the module doc."""
    run_config = config.for_run(label, seed)
    train = config.train
    run_dir = config.run_dir(label, seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    name = f"{label}/seed_{seed}"

    # 1. Where to start.
    _check_same_setup(run_dir, run_config)
    info = read_run_info(run_dir)
    done = int(info.get("timesteps", 0))
    final_model = run_dir / "final_model.zip"
    if info.get("status") == "completed" and final_model.exists() and done >= train.total_timesteps:
        log(f"[{name}] already trained ({done} steps): skipped")
        return RunResult(label, seed, run_dir, "skipped", done, float(info.get("steps_per_second", 0.0)))
    start_from: tuple[Path, int] | None = latest_checkpoint(run_dir)
    if info.get("status") == "completed" and final_model.exists() and (start_from is None or start_from[1] < done):
        start_from = (final_model, done)  # a finished run whose budget was raised

    # 2. Environments.
    th.set_num_threads(train.torch_threads)
    resume_steps = start_from[1] if start_from else 0
    env = make_vec_env(config, config.env.n_envs, seed=seed)  # (re)seeded by the model in step 3
    eval_env = make_vec_env(config, min(config.env.n_envs, train.eval_episodes), seed=seed + EVAL_SEED_OFFSET + resume_steps)

    # 3. Model and logger.
    if start_from is None:  # clear what a run that never reached a checkpoint left behind
        for stale in ("eval.csv", "run_info.json", "final_model.zip"):
            (run_dir / stale).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "tb", ignore_errors=True)
        model = build_model(config, label, env, seed)
        info = {"train_seconds": 0.0, "train_timesteps": 0}
        log(f"[{name}] training {config.policies[label].policy} for {train.total_timesteps} steps")
    else:
        path, resume_steps = start_from
        try:
            model = RecurrentPPO.load(path, env=env, device=config.algo.get("device", "cpu"))
        except Exception as error:  # a truncated or foreign zip: say which file and how to go on
            env.close()
            eval_env.close()
            raise ConfigError(
                f"cannot resume {name}: checkpoint {path} is unreadable ({type(error).__name__}: {error}); "
                "delete it to resume from the previous checkpoint, or pass --fresh to start over"
            ) from error
        model.set_random_seed(seed + resume_steps)  # load() re-seeded everything with `seed`
        model._last_obs = None  # the envs are new: make learn() reset them  # noqa: SLF001
        _truncate_eval_record(run_dir / "eval.csv", resume_steps)
        log(f"[{name}] resuming from {path.name} at {resume_steps}/{train.total_timesteps} steps")
    model.set_logger(configure(str(run_dir / "tb"), ["tensorboard"]))
    (run_dir / "config.yaml").write_text(config_to_yaml(run_config))
    info.update(status="running", policy=config.policies[label].policy, label=label, seed=seed,
                total_timesteps=train.total_timesteps, timesteps=resume_steps, environment=_environment_info())
    _write_run_info(run_dir, info)

    # 4. Learn.
    evaluation = PeriodicEvaluation(
        eval_env, config.env.id, train.eval_every, train.eval_episodes, train.eval_deterministic, run_dir / "eval.csv"
    )
    checkpoints = PeriodicCheckpoint(run_dir / "checkpoints", train.checkpoint_every, train.keep_checkpoints)
    callbacks: list[BaseCallback] = [evaluation, checkpoints]
    callbacks.append(TorsoInternalsCallback())  # torso/* scalars; a no-op for non-DREAM policies
    callbacks.extend(extra_callbacks)
    show_progress = train.progress_bar if progress_bar is None else progress_bar
    bar = ProgressBarCallback() if show_progress else None
    if bar is not None:
        callbacks.append(bar)

    steps_before, wall_start = model.num_timesteps, time.perf_counter()

    def account() -> None:
        """Fold this session's timesteps and time (minus evaluations and checkpoints) into info."""
        seconds = time.perf_counter() - wall_start - evaluation.seconds - checkpoints.seconds
        info["train_seconds"] = float(info.get("train_seconds", 0.0)) + seconds
        info["train_timesteps"] = int(info.get("train_timesteps", 0)) + model.num_timesteps - steps_before
        info["eval_seconds"] = float(info.get("eval_seconds", 0.0)) + evaluation.seconds
        info["timesteps"] = model.num_timesteps
        info["steps_per_second"] = info["train_timesteps"] / max(info["train_seconds"], 1e-9)

    def close_bar() -> None:
        """Stop the progress bar of an interrupted learn() (it closes itself otherwise)."""
        if getattr(bar, "pbar", None) is not None:
            bar.on_training_end()

    try:
        model.learn(
            total_timesteps=train.total_timesteps - resume_steps,
            callback=CallbackList(callbacks),
            reset_num_timesteps=start_from is None,
        )
    except KeyboardInterrupt:
        close_bar()
        checkpoint = save_checkpoint(model, run_dir / "checkpoints", train.keep_checkpoints)
        account()
        info["status"] = "interrupted"
        raise TrainingInterrupted(run_dir, checkpoint, model.num_timesteps) from None
    except BaseException as error:
        close_bar()
        account()
        info.update(status="failed", error=f"{type(error).__name__}: {error}")
        raise
    else:
        # 5. Final model.
        model.save(final_model)
        account()
        info["status"] = "completed"
        info.pop("error", None)
    finally:
        model.logger.close()  # flushes TensorBoard
        _write_run_info(run_dir, info)
        for vec_env in (env, eval_env):
            with contextlib.suppress(Exception):  # subprocess envs may already be gone after Ctrl-C
                vec_env.close()

    log(f"[{name}] done: {model.num_timesteps} steps, {info['steps_per_second']:.0f} env steps/s")
    return RunResult(label, seed, run_dir, "completed", model.num_timesteps, info["steps_per_second"])


def run_experiment(
    config: ExperimentConfig,
    *,
    fresh: bool = False,
    progress_bar: bool | None = None,
    log: Callable[[str], None] = print,
) -> list[RunResult]:
    """Train every (policy, seed) run in turn; ``fresh`` deletes their previous outputs first."""
    check_buildable(config)
    config.experiment_dir.mkdir(parents=True, exist_ok=True)
    summary = _merge_with_earlier_runs(config)
    (config.experiment_dir / "config.yaml").write_text(config_to_yaml(summary))
    results = []
    for label, seed in config.runs():
        if fresh and config.run_dir(label, seed).exists():
            shutil.rmtree(config.run_dir(label, seed))
        results.append(train_run(config, label, seed, progress_bar=progress_bar, log=log))
    return results


# --------------------------------------------------------------------------------------------
# Evaluating trained runs


def find_run_dirs(path: Path) -> list[Path]:
    """``path`` if it is a run directory, else every run directory below it."""
    if not path.is_dir():
        raise ConfigError(f"not a directory: {path}")
    if (path / "run_info.json").is_file():
        return [path]
    found = sorted(p.parent for p in path.rglob("run_info.json"))
    if not found:
        raise ConfigError(f"no runs under {path}: give <output_dir>/<name>/<policy>/seed_<k>/ or <output_dir>/<name>/")
    return found


def evaluate_run(
    run_dir: Path,
    episodes: int | None = None,
    deterministic: bool = True,
    model_path: Path | None = None,
    seed: int = 12345,
) -> dict[str, Any]:
    """Evaluate a run's final model (or latest checkpoint, or ``model_path``) on fresh episodes."""
    config = validate_config(read_yaml(run_dir / "config.yaml"))
    if model_path is None:
        model_path = run_dir / "final_model.zip"
        if not model_path.exists():
            checkpoint = latest_checkpoint(run_dir)
            if checkpoint is None:
                raise ConfigError(f"{run_dir} has neither final_model.zip nor a checkpoint")
            model_path = checkpoint[0]
    elif not model_path.is_file():
        raise ConfigError(f"model file not found: {model_path}")
    episodes = episodes or config.train.eval_episodes
    th.set_num_threads(config.train.torch_threads)
    env = make_vec_env(config, min(config.env.n_envs, episodes), seed=seed)
    model = RecurrentPPO.load(model_path, env=env, device=config.algo.get("device", "cpu"))
    model.set_random_seed(seed)  # load() re-seeded the env with the training seed
    returns, lengths = evaluate_policy(
        model, env, n_eval_episodes=episodes, deterministic=deterministic, return_episode_rewards=True, warn=False
    )
    env.close()
    score = normalizer(config.env.id)
    scores = [score(r) for r in returns] if score is not None else None
    return {
        "run": str(run_dir),
        "model": model_path.name,
        "episodes": len(returns),
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "mean_score": float(np.mean(scores)) if scores is not None else None,
        "std_score": float(np.std(scores)) if scores is not None else None,
        "mean_length": float(np.mean(lengths)),
    }


def _merge_with_earlier_runs(config: ExperimentConfig) -> ExperimentConfig:
    """The config to save at the experiment level (what ``report DIR`` compares): ``config`` plus
    the policies and seeds trained earlier into the same directory with the same env and algo, so
    that adding a seed or a policy later (``train.seeds=[3]``) keeps the earlier runs in the report."""
    path = config.experiment_dir / "config.yaml"
    if not path.exists():
        return config
    try:
        earlier = validate_config(read_yaml(path))
    except ConfigError:
        return config
    if earlier.env != config.env or earlier.algo != config.algo:
        return config
    seeds = earlier.train.seeds + [seed for seed in config.train.seeds if seed not in earlier.train.seeds]
    return dataclasses.replace(
        config,
        policies={**earlier.policies, **config.policies},
        train=dataclasses.replace(config.train, seeds=seeds),
    )
