"""Callbacks of a training run, and the files they write.

- :class:`PeriodicEvaluation`: every ``train.eval_every`` env steps (and at the start and the end),
  evaluation episodes on a separate env; one row of ``eval.csv`` and ``eval/*`` in TensorBoard at the
  same step. Scores are normalized by :func:`normalizer` for the suite's envs.
- :class:`PeriodicCheckpoint`: ``checkpoints/rl_model_<steps>_steps.zip`` at rollout boundaries, the
  ``train.keep_checkpoints`` most recent kept (:func:`save_checkpoint`, :func:`latest_checkpoint`).
- :class:`RolloutTracker`: the step the current rollout started at, where Ctrl-C saves the model.
- :class:`ResumableTensorBoard`: SB3's TensorBoard output that hides what an interrupted session logged
  after the step a run resumes from.
"""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import TensorBoardOutputFormat
from stable_baselines3.common.vec_env import VecEnv
from torch.utils.tensorboard import SummaryWriter

from dream_rl.envs import normalized_score
from dream_rl.experiments.records import EVAL_COLUMNS, read_eval_record

__all__ = [
    "PeriodicCheckpoint",
    "PeriodicEvaluation",
    "ResumableTensorBoard",
    "RolloutTracker",
    "latest_checkpoint",
    "normalizer",
    "save_checkpoint",
]

_CHECKPOINT = re.compile(r"^rl_model_(\d+)_steps\.zip$")


def normalizer(env_id: str) -> Callable[[float], float] | None:
    """``return -> normalized score in [0, 1]`` for suite envs; None for envs without one."""
    try:
        normalized_score(env_id, 0.0)
    except (KeyError, ValueError):
        return None
    return lambda episode_return: float(normalized_score(env_id, episode_return))


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


def save_checkpoint(model: BaseAlgorithm, directory: Path, keep: int) -> Path:
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



class ResumableTensorBoard(TensorBoardOutputFormat):
    """SB3's TensorBoard output, opened with ``purge_step``: a run resumed from a checkpoint at
    step T hides what the interrupted session logged after T, so every curve stays one monotonic
    line (and matches eval.csv, which is truncated after T the same way)."""

    def __init__(self, folder: Path, purge_step: int | None) -> None:  # noqa: D107 (no super(): it would open a second writer)
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=purge_step)
        self._is_closed = False


class PeriodicEvaluation(BaseCallback):
    """Every ``every`` env steps (and at the start and the end of training), run ``episodes``
    evaluation episodes, append a row to ``eval.csv`` and log ``eval/*`` to TensorBoard at the
    same step (written directly: SB3's logger would only dump them at the end of the rollout)."""

    def __init__(
        self,
        eval_env: VecEnv,
        env_id: str,
        every: int,
        episodes: int,
        deterministic: bool,
        record_path: Path,
        tensorboard: ResumableTensorBoard,
    ) -> None:
        super().__init__()
        self.eval_env, self.every, self.episodes, self.deterministic = eval_env, every, episodes, deterministic
        self.record_path, self.tensorboard = record_path, tensorboard
        self.score = normalizer(env_id)
        self.seconds = 0.0  # time spent evaluating (excluded from steps/s)
        self.next_eval = every
        self.last_eval = -1

    def _on_training_start(self) -> None:
        self.next_eval = (self.num_timesteps // self.every + 1) * self.every
        rows = read_eval_record(self.record_path)
        if rows:  # a resumed run: its record already holds the evaluation at the resume step
            self.last_eval = rows[-1].timesteps
        else:  # a new run: evaluate the untrained policy too
            self.evaluate()

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_eval:
            self.evaluate()
            self.next_eval = (self.num_timesteps // self.every + 1) * self.every
        return True

    def _on_training_end(self) -> None:
        if self.last_eval != self.num_timesteps:
            self.evaluate()

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
        scalars = {"eval/mean_return": row["mean_return"], "eval/mean_ep_length": row["mean_length"]}
        if self.score is not None:
            scores = [self.score(r) for r in returns]
            row["mean_score"], row["std_score"] = float(np.mean(scores)), float(np.std(scores))
            scalars["eval/normalized_score"] = row["mean_score"]
        for tag, value in scalars.items():
            self.tensorboard.writer.add_scalar(tag, value, self.num_timesteps)
        new_file = not self.record_path.exists()
        with self.record_path.open("a", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=EVAL_COLUMNS)
            if new_file:
                writer.writeheader()
            writer.writerow(row)


class PeriodicCheckpoint(BaseCallback):
    """Every ``every`` env steps, save a checkpoint (keeping the ``keep`` most recent).

    A checkpoint is saved when a rollout starts, i.e. after the previous rollout's update: its
    weights have learned from every step it counts, and a run resumed from it collects exactly the
    rollouts an uninterrupted run would (a checkpoint in the middle of a rollout would count steps
    whose update never happened, and shift every later rollout past the budget)."""

    def __init__(self, directory: Path, every: int, keep: int) -> None:
        super().__init__()
        self.directory, self.every, self.keep = directory, every, keep
        self.next_save = every
        self.seconds = 0.0

    def _on_training_start(self) -> None:
        self.next_save = (self.num_timesteps // self.every + 1) * self.every

    def _on_rollout_start(self) -> None:
        if self.num_timesteps >= self.next_save:
            start = time.perf_counter()
            save_checkpoint(self.model, self.directory, self.keep)
            self.seconds += time.perf_counter() - start
            self.next_save = (self.num_timesteps // self.every + 1) * self.every

    def _on_step(self) -> bool:
        return True


class RolloutTracker(BaseCallback):
    """Where the rollout being collected started: Ctrl-C in the middle of a rollout saves the model
    at that step (the steps collected since were never learned from, and a resumed run collects
    them again), so that an interrupted run ends at the same step as an uninterrupted one."""

    def __init__(self) -> None:
        super().__init__()
        self.rollout_start: int | None = None
        self.collecting = False

    def _on_rollout_start(self) -> None:
        self.rollout_start, self.collecting = self.num_timesteps, True

    def _on_rollout_end(self) -> None:
        self.collecting = False

    def _on_step(self) -> bool:
        return True

    def steps_learned(self, num_timesteps: int) -> int:
        """The steps the model's weights have learned from (``num_timesteps`` outside a rollout)."""
        return self.rollout_start if self.collecting and self.rollout_start is not None else num_timesteps
