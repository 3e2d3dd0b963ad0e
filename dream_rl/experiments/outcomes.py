"""How runs end, as plain data and exceptions: what the runner, the parallel launcher and the CLI share.

This module imports nothing heavy (no torch, no SB3), so that the command line can name these types
without loading the trainer: :class:`RunResult` (a run that finished or was skipped),
:class:`TrainingInterrupted` (Ctrl-C stopped a run after saving its checkpoint), :class:`Outcome` (how
one run or task of a parallel launch ended), :class:`RunsFailed` and :class:`ExperimentInterrupted`
(what a parallel launch raises).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ExperimentInterrupted", "Outcome", "RunResult", "RunsFailed", "TrainingInterrupted"]


@dataclass
class RunResult:
    name: str  # [<env label>/]<policy label>/seed_<k>
    run_dir: Path
    status: str  # completed | skipped
    timesteps: int
    steps_per_second: float


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run; its checkpoint and logs are saved and ``train`` resumes from them."""

    def __init__(self, run_dir: Path, checkpoint: Path, timesteps: int) -> None:
        super().__init__(f"interrupted at {timesteps} steps; checkpoint {checkpoint}")
        self.run_dir, self.checkpoint, self.timesteps = run_dir, checkpoint, timesteps

    def __reduce__(self) -> tuple[Any, ...]:  # picklable, to cross a process boundary
        return (TrainingInterrupted, (self.run_dir, self.checkpoint, self.timesteps))


@dataclass
class Outcome:
    """How one run (or task) ended, as data (it crosses process and network boundaries)."""

    name: str
    status: str  # completed | skipped | interrupted | failed
    result: RunResult | None = None
    message: str = ""
    config_problem: bool = False  # a ConfigError (bad setup, locked run): exit status 2


class RunsFailed(Exception):
    """Some runs failed (the others finished)."""

    def __init__(self, failures: list[Outcome]) -> None:
        names = ", ".join(f.name for f in failures)
        super().__init__(f"{len(failures)} run{'s' if len(failures) > 1 else ''} failed: {names} (see above)")
        self.failures = failures
        self.exit_status = 2 if all(f.config_problem for f in failures) else 1


class ExperimentInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the experiment; the running runs saved their checkpoints."""

    def __init__(self, interrupted: list[Outcome]) -> None:
        super().__init__(f"{len(interrupted)} running runs saved their checkpoints")
        self.interrupted = interrupted
