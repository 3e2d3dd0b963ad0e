"""Train or evaluate one run (an env, a policy and a seed of an experiment) with sb3-contrib's RecurrentPPO.

One run, top to bottom (:func:`train_run`):

0. lock the run directory (:mod:`.runlock`; ``--fresh`` clears it under the lock);
1. decide where to start: from scratch, from the latest checkpoint (an interrupted run), or from
   the final model (a finished run whose budget was raised); a finished run is skipped;
2. build the training envs (``VecMonitor`` + ``VecCheckNan``) and a separate evaluation env;
3. build ``RecurrentPPO`` (or load it) and point its logger at ``<run dir>/tb``;
4. ``model.learn`` with callbacks (:mod:`.callbacks`): periodic evaluation (``eval.csv`` +
   TensorBoard), periodic checkpoints, the torso internals (DREAM's surprise, time constant, fast-weight norm), the
   progress bar;
5. save ``final_model.zip`` and ``run_info.json`` (status, steps/s, versions, hardware).

Ctrl-C (``KeyboardInterrupt``) during step 4 saves a checkpoint, flushes the logs, marks the run
``interrupted`` in ``run_info.json`` and raises :class:`TrainingInterrupted`; training the same
config again resumes from that checkpoint with ``reset_num_timesteps=False``.

:func:`evaluate_run` evaluates a trained run on fresh episodes. The runs of a whole experiment are
launched by :mod:`.launch` (one after the other here) and :mod:`.parallel` (worker processes, Ray).

Outputs of one run, in ``<output_dir>/<name>/[<env label>/]<policy label>/seed_<seed>/`` (the env
level only in the ``envs:`` form)::

    config.yaml        the resolved config narrowed to this policy and seed (a valid config)
    tb/                TensorBoard events: SB3's scalars, eval/* (at the steps of eval.csv), torso/*
    checkpoints/       rl_model_<steps>_steps.zip, the last train.keep_checkpoints of them
    eval.csv           one row per evaluation (see EVAL_COLUMNS)
    final_model.zip    RecurrentPPO.load-able
    run_info.json      status (running | interrupted | completed | failed), timesteps, steps/s
    .lock              present while the run trains (holder's pid and host)
"""

from __future__ import annotations

import contextlib
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import sb3_contrib
import stable_baselines3
import torch as th
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ProgressBarCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecCheckNan, VecEnv, VecMonitor

import dream_rl
from dream_rl import TorsoInternalsCallback
from dream_rl._deprecation import moved_names
from dream_rl.dream.plasticity import frozen_plasticity
from dream_rl.envs.wrappers import check_registered_id
from dream_rl.errors import EnvError, first_line
from dream_rl.experiments.callbacks import (
    PeriodicCheckpoint,
    PeriodicEvaluation,
    ResumableTensorBoard,
    RolloutTracker,
    latest_checkpoint,
    normalizer,
    save_checkpoint,
)
from dream_rl.experiments.config import (
    ConfigError,
    EnvConfig,
    ExperimentConfig,
    Run,
    config_to_yaml,
    read_yaml,
    resolve_class,
    resolve_policy,
    validate_config,
)
from dream_rl.experiments.machine import cpu_name
from dream_rl.experiments.names import CLASS_KWARGS
from dream_rl.experiments.outcomes import RunResult, TrainingInterrupted
from dream_rl.experiments.problems import first_difference
from dream_rl.experiments.records import (
    EVAL_COLUMNS,
    read_run_info,
    truncate_eval_record,
    writable_dir,
    write_run_info,
)
from dream_rl.experiments.runlock import LOCK_NAME, RunLock
from dream_rl.experiments.safe_load import load_recurrent_ppo

__all__ = [
    "EVAL_COLUMNS",
    "RunResult",
    "algo_arguments",
    "TrainingInterrupted",
    "build_model",
    "check_buildable",
    "check_device",
    "evaluate_run",
    "find_run_dirs",
    "latest_checkpoint",
    "make_vec_env",
    "normalizer",
    "read_run_info",
    "train_run",
]

EVAL_SEED_OFFSET = 10_000  # evaluation envs are seeded apart from the training envs

# Names that moved to .launch (running a whole experiment is not one run's business), importable from
# here for existing code: resolved on first access, so that this module does not import the launcher.
_MOVED_TO_LAUNCH = ("check_experiment_folder", "prepare_experiment", "run_experiment")
__getattr__ = moved_names(__name__, _MOVED_TO_LAUNCH, "dream_rl.experiments.launch")


# --------------------------------------------------------------------------------------------
# Environments


def make_vec_env(env: EnvConfig, n_envs: int, seed: int) -> VecEnv:
    """``n_envs`` copies of ``env``, seeded ``seed, seed+1, ...`` at their first reset, with
    episode statistics (``VecMonitor``) and a loud failure on NaN/inf (``VecCheckNan``)."""
    env_id, kwargs = env.id, dict(env.kwargs)
    try:  # the config checked it already; a results folder's config.yaml reaches here too
        check_registered_id(env_id, "env.id")
    except EnvError as error:
        raise ConfigError(str(error), "env.id") from None

    def make_one() -> gym.Env:
        import dream_rl  # noqa: F401  (registers the suite in subprocesses too)

        return gym.make(env_id, **kwargs)

    vec_class = SubprocVecEnv if env.vec_env == "subproc" and n_envs > 1 else DummyVecEnv
    venv = vec_class([make_one] * n_envs)
    venv.seed(seed)
    return VecCheckNan(VecMonitor(venv), raise_exception=True)


# --------------------------------------------------------------------------------------------
# Model


def build_policy_kwargs(policy_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The config's policy_kwargs with classes given by name turned into classes."""
    kwargs = dict(policy_kwargs)
    for name in CLASS_KWARGS:
        if name in kwargs:
            kwargs[name] = resolve_class(name, kwargs[name])
    return kwargs


def algo_arguments(run: Run) -> dict[str, Any]:
    """RecurrentPPO's arguments for ``run``: its env's algo values, with the learning rate multiplied by
    the policy's ``learning_rate_scale``."""
    algo = dict(run.algo)
    scale = run.policy.learning_rate_scale
    if scale != 1.0:  # (1.0 leaves the value untouched, bit for bit)
        algo["learning_rate"] = algo["learning_rate"] * scale
    return algo


def build_model(run: Run, env: VecEnv) -> RecurrentPPO:
    """A fresh RecurrentPPO for ``run`` (seeds torch, numpy, the env and the action space)."""
    return RecurrentPPO(
        resolve_policy(run.policy.policy),
        env,
        policy_kwargs=build_policy_kwargs(run.policy.policy_kwargs),
        seed=run.seed,
        verbose=0,
        **algo_arguments(run),
    )


def check_device(device: str) -> str:
    """``device`` if torch can use it on this machine, else a ConfigError: a run never trains on a
    device other than the one its config (and run_info.json) records."""
    kind, _, index = device.partition(":")
    if kind == "cuda":
        if not th.cuda.is_available():
            built = "torch is built without CUDA" if th.version.cuda is None else "no CUDA device is visible"
            raise ConfigError(f"algo.device: {device!r}, but {built} here (torch {th.__version__}): "
                              "use algo.device=cpu (or auto, which picks CUDA where there is one)", "algo.device")
        if index and int(index) >= th.cuda.device_count():
            raise ConfigError(f"algo.device: {device!r}, but this machine has {th.cuda.device_count()} CUDA device(s) "
                              f"(cuda:0..cuda:{th.cuda.device_count() - 1})", "algo.device")
    if kind == "mps" and not th.backends.mps.is_available():
        raise ConfigError("algo.device: 'mps', but torch has no MPS device here: use algo.device=cpu (or auto)", "algo.device")
    return device


def usable_device(device: str) -> str:
    """The device to load a trained model on for evaluation: ``device`` where torch can use it, else the CPU."""
    try:
        return check_device(device)
    except ConfigError:
        return "cpu"


def check_buildable(config: ExperimentConfig) -> None:
    """Build every policy once on a one-env copy of every env, so that a bad value fails before
    any training starts (as a ConfigError naming the policy)."""
    for env in config.env_list:
        for label in config.policies:
            run = Run(config, env, label, config.train.seeds[0])
            check_device(run.algo.get("device", "cpu"))
            vec_env = make_vec_env(env, n_envs=1, seed=0)
            try:
                build_model(run, vec_env)
            except (ValueError, TypeError, AssertionError, RuntimeError) as error:
                message = first_line(error)
                key = f"policies.{label}"
                where = f" on {env.id}" if len(config.env_list) > 1 else ""
                raise ConfigError(f"{key}: RecurrentPPO could not be built{where}: {message}", key) from None
            finally:
                vec_env.close()


# What to do about an unreadable model file, the same words from `train` and `evaluate`.
UNREADABLE_MODEL_ADVICE = (
    "delete it: `dream-rl train` then resumes from the previous checkpoint (and `evaluate` uses it), "
    "or pass --fresh to train the run over"
)


def load_model(path: Path, env: VecEnv, run: Run, what: str, way_on: str = UNREADABLE_MODEL_ADVICE,
               device: str | None = None) -> RecurrentPPO:
    """``RecurrentPPO.load`` of ``path`` for ``run``, unpickling nothing from the file
    (:mod:`.safe_load`); a file that is not a saved model of this run is a one-line ConfigError
    "<what>: <path> is unreadable (<why>); <way_on>"."""
    try:
        return load_recurrent_ppo(
            path, env, device or run.algo.get("device", "cpu"), resolve_policy(run.policy.policy),
            build_policy_kwargs(run.policy.policy_kwargs), algo_arguments(run),
        )
    except Exception as error:  # noqa: BLE001  (a truncated or foreign file: say which, and how to go on)
        why = f"{type(error).__name__}: {first_line(error)}" if str(error).strip() else type(error).__name__
        raise ConfigError(f"{what}: {path} is unreadable ({why}); {way_on}") from None


# --------------------------------------------------------------------------------------------
# Run bookkeeping


def _environment_info() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": cpu_name(),
        "torch": th.__version__,
        "torch_threads": th.get_num_threads(),
        "stable_baselines3": stable_baselines3.__version__,
        "sb3_contrib": sb3_contrib.__version__,
        "gymnasium": gym.__version__,
        "dream_rl": dream_rl.__version__,
    }


def _check_same_setup(run: Run) -> None:
    """An existing run must come from the same env, algo and policy settings."""
    path = run.run_dir / "config.yaml"
    if not path.exists():
        return
    try:
        old = validate_config(read_yaml(path), build_envs=False).to_dict()
    except ConfigError:
        old = read_yaml(path)
    new = run.config.to_dict()
    for entries in (old.get("envs"), new.get("envs")):  # a raised per-env budget resumes, as train's does
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict):
                entry.pop("total_timesteps", None)
                entry.pop("eval_every", None)
    for section in ("env", "envs", "algo", "policies"):
        difference = first_difference(old.get(section), new.get(section), section)
        if difference:
            raise ConfigError(
                f"{run.run_dir} holds a run made with a different config ({difference}); "
                "pass --fresh to start it over, or change name or output_dir",
                difference.split(":")[0],
            )


def _clear_run_dir(run_dir: Path) -> None:
    """Delete a run's outputs (``--fresh``), keeping the lock file we hold."""
    for item in run_dir.iterdir():
        if item.name == LOCK_NAME:
            continue
        if item.is_dir():
            shutil.rmtree(item)
        else:
            item.unlink()


# --------------------------------------------------------------------------------------------
# Training


def train_run(
    run: Run,
    *,
    fresh: bool = False,
    progress_bar: bool | None = None,
    extra_callbacks: Sequence[BaseCallback] = (),
    log: Callable[[str], None] = print,
) -> RunResult:
    """Train (or resume, or skip) one run under its lock. See the module doc."""
    check_device(run.algo.get("device", "cpu"))
    writable_dir(run.run_dir)
    with RunLock(run.run_dir, run.name):
        if fresh:
            _clear_run_dir(run.run_dir)
        return _train_locked(run, progress_bar, extra_callbacks, log)


def _train_locked(
    run: Run, progress_bar: bool | None, extra_callbacks: Sequence[BaseCallback], log: Callable[[str], None]
) -> RunResult:
    train, run_dir, name = run.train, run.run_dir, run.name

    # 1. Where to start.
    _check_same_setup(run)
    info = read_run_info(run_dir)
    done = int(info.get("timesteps", 0))
    final_model = run_dir / "final_model.zip"
    if info.get("status") == "completed" and final_model.exists() and done >= train.total_timesteps:
        log(f"[{name}] already trained ({done} steps): skipped")
        return RunResult(name, run_dir, "skipped", done, float(info.get("steps_per_second", 0.0)))
    start_from: tuple[Path, int] | None = latest_checkpoint(run_dir)
    if info.get("status") == "completed" and final_model.exists() and (start_from is None or start_from[1] < done):
        start_from = (final_model, done)  # a finished run whose budget was raised

    # 2. Environments.
    th.set_num_threads(train.torch_threads)
    resume_steps = start_from[1] if start_from else 0
    n_envs = run.env.n_envs
    env = make_vec_env(run.env, n_envs, seed=run.seed)  # (re)seeded by the model in step 3
    eval_env = make_vec_env(run.env, min(n_envs, train.eval_episodes), seed=run.seed + EVAL_SEED_OFFSET + resume_steps)

    # 3. Model and logger.
    if start_from is None:  # clear what a run that never reached a checkpoint left behind
        for stale in ("eval.csv", "run_info.json", "final_model.zip"):
            (run_dir / stale).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "tb", ignore_errors=True)
        model = build_model(run, env)
        info = {"train_seconds": 0.0, "train_timesteps": 0}
        log(f"[{name}] training {run.policy.policy} on {run.env.id} for {train.total_timesteps} steps")
    else:
        path, resume_steps = start_from
        try:
            model = load_model(path, env, run, f"cannot resume {name}")
        except ConfigError:
            env.close()
            eval_env.close()
            raise
        model.set_random_seed(run.seed + resume_steps)  # load() re-seeded everything with `seed`
        model._last_obs = None  # the envs are new: make learn() reset them  # noqa: SLF001
        truncate_eval_record(run_dir / "eval.csv", resume_steps)
        log(f"[{name}] resuming from {path.name} at {resume_steps}/{train.total_timesteps} steps")
    # a resumed run's history ends at resume_steps: TensorBoard hides later events of earlier sessions
    tensorboard = ResumableTensorBoard(run_dir / "tb", purge_step=resume_steps + 1 if start_from else None)
    model.set_logger(Logger(folder=str(run_dir / "tb"), output_formats=[tensorboard]))
    (run_dir / "config.yaml").write_text(config_to_yaml(run.config))
    info.update(status="running", policy=run.policy.policy, label=run.policy_label, env=run.env.id, seed=run.seed,
                total_timesteps=train.total_timesteps, timesteps=resume_steps, device=str(model.device),
                environment=_environment_info())
    write_run_info(run_dir, info)

    # 4. Learn.
    evaluation = PeriodicEvaluation(
        eval_env, run.env.id, train.eval_every, train.eval_episodes, train.eval_deterministic,
        run_dir / "eval.csv", tensorboard,
    )
    checkpoints = PeriodicCheckpoint(run_dir / "checkpoints", train.checkpoint_every, train.keep_checkpoints)
    rollouts = RolloutTracker()
    callbacks: list[BaseCallback] = [rollouts, evaluation, checkpoints]
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
        # the steps of an unfinished rollout were never learned from: the checkpoint counts the
        # steps its weights have learned from, and the resumed run collects that rollout again
        model.num_timesteps = rollouts.steps_learned(model.num_timesteps)
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
        write_run_info(run_dir, info)
        for vec_env in (env, eval_env):
            with contextlib.suppress(Exception):  # subprocess envs may already be gone after Ctrl-C
                vec_env.close()

    log(f"[{name}] done: {model.num_timesteps} steps, {info['steps_per_second']:.0f} env steps/s")
    return RunResult(name, run_dir, "completed", model.num_timesteps, info["steps_per_second"])


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
        raise ConfigError(
            f"no runs under {path}: give a run directory (<output_dir>/<name>/[<env>/]<policy>/seed_<k>/) "
            "or an experiment directory (<output_dir>/<name>/)"
        )
    return found


def evaluate_run(
    run_dir: Path,
    episodes: int | None = None,
    deterministic: bool = True,
    model_path: Path | None = None,
    seed: int = 12345,
    freeze_plasticity: bool = False,
) -> dict[str, Any]:
    """Evaluate a run's final model (or latest checkpoint, or ``model_path``) on fresh episodes.

    ``freeze_plasticity``: a DREAM policy plays with its fast weights not written (``η = 0``, evaluation
    only: :func:`dream_rl.dream.plasticity.frozen_plasticity`); any other policy is a ``DREAMError``."""
    # data only: the env is built below from its registered id, the model loaded without unpickling
    config = validate_config(read_yaml(run_dir / "config.yaml"), build_envs=False)
    run = config.runs()[0]
    what, way_on = ("--model", "give a .zip saved by dream-rl for this run") if model_path is not None else (
        f"evaluate {run_dir}", UNREADABLE_MODEL_ADVICE)
    if model_path is None:
        model_path = run_dir / "final_model.zip"
        if not model_path.exists():
            checkpoint = latest_checkpoint(run_dir)
            if checkpoint is None:
                raise ConfigError(f"{run_dir} has neither final_model.zip nor a checkpoint")
            model_path = checkpoint[0]
    elif not model_path.exists():
        raise ConfigError(f"model file not found: {model_path}")
    elif not model_path.is_file():
        raise ConfigError(f"--model {model_path}: not a file; give a .zip saved by dream-rl for this run")
    episodes = episodes or run.train.eval_episodes
    th.set_num_threads(run.train.torch_threads)
    try:
        env = make_vec_env(run.env, min(run.env.n_envs, episodes), seed=seed)
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001  (an env that its saved kwargs cannot build: say which)
        raise ConfigError(f"{run_dir / 'config.yaml'}: env {run.env.id} cannot be built with {dict(run.env.kwargs)}: "
                          f"{first_line(error)}", "env.kwargs") from None
    try:
        model = load_model(model_path, env, run, what, way_on, device=usable_device(run.algo.get("device", "cpu")))
        model.set_random_seed(seed)  # load() re-seeded the env with the training seed
        with frozen_plasticity(model) if freeze_plasticity else contextlib.nullcontext():
            returns, lengths = evaluate_policy(
                model, env, n_eval_episodes=episodes, deterministic=deterministic, return_episode_rewards=True,
                warn=False,
            )
    finally:
        env.close()
    score = normalizer(run.env.id)
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

