"""Many runs at the same time: in worker processes here, or as Ray tasks.

**The process pool** (:func:`run_tasks`) is the one way dream-rl runs work in parallel on one machine,
shared by ``compare``/``train --workers N`` and ``tune --workers N``. It takes :class:`Task` s (a
picklable top-level function, its arguments and a name), runs at most N at once, each in its own
process (the ``forkserver`` start method: torch and SB3 are imported once by the server, not per task),
forwards the tasks' log lines to the parent, which prints them in order, and collects one
:class:`Outcome` per task. A task that fails is reported and the others go on; a worker process that
dies is a failed task. Ctrl-C interrupts every worker (each saves what it can: a run its checkpoint),
and the parent waits for them; a second Ctrl-C terminates them.

- ``train``/``compare``: one task per run, :func:`execute`, which hands the run whole to
  :func:`~dream_rl.experiments.runner.train_run`, exactly as in a sequential ``train``: same seeds,
  same budget, ``train.torch_threads`` threads, so it computes the same ``eval.csv``. The
  run-directory lock (:mod:`.runlock`) keeps two trainers off one run.
- ``tune``: one task per worker, which opens the study in the shared Optuna storage and runs its share
  of the trials (:mod:`.tune`). Optuna's model is a study per process: each process samples with its
  own sampler (seeded apart) and reports its trials' evaluations to the storage itself, which the
  pruner reads. Handing single trials to the pool instead would move the sampling into the parent
  and change the values the sampler proposes, so the unit of work stays the worker; what is shared is
  the process start, the log forwarding, the outcomes and the Ctrl-C handling.
- **Ray** (``--ray ADDRESS``, ``train``/``compare`` only): every run is a Ray task asking for
  ``train.torch_threads`` CPUs; Ray places them on the cluster's nodes. ``local`` starts Ray in this
  process; ``auto`` or ``ray://host:port`` joins a running cluster. Outputs are written by the tasks
  under ``output_dir``, which must be one shared path on every node. Ctrl-C cancels the tasks, which
  save their checkpoints.

Failed runs are collected into :class:`RunsFailed` (exit status 1, or 2 when every failure is a
config problem, such as a locked run) and interruptions into :class:`ExperimentInterrupted`.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_module
import re
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dream_rl.errors import first_line
from dream_rl.experiments.config import ConfigError, ExperimentConfig, Run
from dream_rl.experiments.outcomes import ExperimentInterrupted, Outcome, RunResult, RunsFailed, TrainingInterrupted
from dream_rl.experiments.runner import train_run

__all__ = [
    "ExperimentInterrupted",
    "Outcome",
    "RunsFailed",
    "Task",
    "check_ray_address",
    "default_workers",
    "execute",
    "run_parallel",
    "run_tasks",
]


def default_workers(config: ExperimentConfig) -> int:
    """As many runs as the cores allow with ``train.torch_threads`` threads each."""
    return max(1, (os.cpu_count() or 1) // config.train.torch_threads)


def execute(run: Run, fresh: bool, log: Callable[[str], None] = print) -> Outcome:
    """Train one run and say how it ended (never raises, but for a second Ctrl-C)."""
    try:
        result = train_run(run, fresh=fresh, progress_bar=False, log=log)
        return Outcome(run.name, result.status, result)
    except TrainingInterrupted as stop:
        return Outcome(run.name, "interrupted", message=f"checkpoint {stop.checkpoint.name} saved at {stop.timesteps} steps")
    except ConfigError as error:
        return Outcome(run.name, "failed", message=str(error), config_problem=True)
    except Exception as error:  # noqa: BLE001  (a failed run must not stop the others: it is reported)
        trace = run.run_dir / "traceback.txt"
        try:
            trace.write_text(traceback.format_exc())
            where = f" (traceback in {trace})"
        except OSError:
            where = ""
        message = first_line(error) if str(error).strip() else ""
        return Outcome(run.name, "failed", message=f"{type(error).__name__}: {message}{where}")


def run_parallel(
    config: ExperimentConfig, *, workers: int, ray_address: str | None, fresh: bool, log: Callable[[str], None] = print
) -> list[RunResult]:
    """Train every run of ``config`` in processes or on Ray; see the module doc."""
    runs = config.runs()
    if ray_address is not None:
        outcomes, stopped = _on_ray(runs, ray_address, config.train.torch_threads, fresh, log)
    else:
        outcomes, stopped = run_tasks([Task(run.name, execute, (run, fresh)) for run in runs], workers, log)
    counts = {status: sum(o.status == status for o in outcomes) for status in ("completed", "skipped", "interrupted", "failed")}
    log(f"{len(runs)} runs: " + ", ".join(f"{n} {status}" for status, n in counts.items() if n)
        + (f", {len(runs) - len(outcomes)} not started" if len(outcomes) < len(runs) else ""))
    if stopped:
        raise ExperimentInterrupted([o for o in outcomes if o.status == "interrupted"])
    failures = [o for o in outcomes if o.status == "failed"]
    if failures:
        raise RunsFailed(failures)
    return [o.result for o in outcomes if o.result is not None]


def _report(outcome: Outcome, log: Callable[[str], None]) -> None:
    if outcome.status == "failed":
        log(f"[{outcome.name}] FAILED: {outcome.message}")
    elif outcome.status == "interrupted":
        log(f"[{outcome.name}] interrupted: {outcome.message}")


# --------------------------------------------------------------------------------------------
# Worker processes


@dataclass(frozen=True)
class Task:
    """Work for one worker process: ``target(*args, log=...)`` returns its :class:`Outcome`.

    ``target`` is a module-level function (it is pickled by name); ``log`` sends a line to the parent.
    An exception it lets through becomes a failed outcome, a Ctrl-C an interrupted one."""

    name: str
    target: Callable[..., Outcome]
    args: tuple[Any, ...] = ()


def _worker(task: Task, messages: Any) -> None:
    """Body of a worker process: run one task, send its log lines and its outcome."""

    def first_interrupt(signum: int, frame: Any) -> None:
        # Ctrl-C reaches the worker twice (from the terminal and forwarded by the parent): the
        # first stops the task; later ones must not cut the checkpoint being saved.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, first_interrupt)
    try:
        outcome = task.target(*task.args, log=lambda line: messages.put(("log", task.name, line)))
    except KeyboardInterrupt:
        outcome = Outcome(task.name, "interrupted", message="stopped by Ctrl-C")
    except ConfigError as error:
        outcome = Outcome(task.name, "failed", message=first_line(error), config_problem=True)
    except Exception as error:  # noqa: BLE001  (reported to the parent, which goes on with the other tasks)
        outcome = Outcome(task.name, "failed", message=f"{type(error).__name__}: {first_line(error)}")
    messages.put(("outcome", task.name, outcome))


def _context() -> Any:
    if "forkserver" in mp.get_all_start_methods():
        context = mp.get_context("forkserver")
        # imported once by the server, not by every task: the runner (torch, SB3, gymnasium) and
        # torch._dynamo, which the first optimizer of a process imports (seconds, for each run)
        context.set_forkserver_preload(["dream_rl.experiments.runner", "torch._dynamo"])
        return context
    return mp.get_context("spawn")  # torch and fork do not mix


def run_tasks(tasks: Sequence[Task], workers: int, log: Callable[[str], None] = print) -> tuple[list[Outcome], bool]:
    """Run ``tasks``, at most ``workers`` at once, each in its own process (see the module doc).

    Returns the outcomes of the tasks that ended, in the order of ``tasks``, and whether Ctrl-C
    stopped them (a second Ctrl-C terminates the workers and raises KeyboardInterrupt)."""
    context = _context()
    messages = context.Queue()
    pending = list(tasks)
    running: dict[str, Any] = {}  # task name -> Process
    outcomes: dict[str, Outcome] = {}
    stopped = False

    def receive(timeout: float) -> None:
        try:
            kind, name, payload = messages.get(timeout=timeout)
        except queue_module.Empty:
            return
        if kind == "log":
            log(payload)
        else:
            outcomes[name] = payload
            _report(payload, log)

    def reap() -> None:
        for name, process in list(running.items()):
            if process.is_alive():
                continue
            deadline = time.monotonic() + 5.0  # its last messages may still be in the pipe
            while name not in outcomes and time.monotonic() < deadline:
                receive(0.2)
            if name not in outcomes:
                outcomes[name] = Outcome(name, "failed", message=f"worker process died (exit code {process.exitcode})")
                _report(outcomes[name], log)
            process.join()
            del running[name]

    try:
        while pending or running:
            while pending and len(running) < workers:
                task = pending.pop(0)
                process = context.Process(target=_worker, args=(task, messages), name=task.name)
                process.start()
                running[task.name] = process
            receive(0.5)
            reap()
    except KeyboardInterrupt:
        stopped = True
        log(f"\nCtrl-C: stopping {len(running)} running task(s) (a run saves a checkpoint)...")
        for process in running.values():
            if process.is_alive():
                os.kill(process.pid, signal.SIGINT)
        try:
            while running:
                receive(0.5)
                reap()
        except KeyboardInterrupt:  # a second Ctrl-C: stop now
            for process in running.values():
                process.terminate()
            raise
    finally:
        messages.close()
    return [outcomes[task.name] for task in tasks if task.name in outcomes], stopped


# --------------------------------------------------------------------------------------------
# Ray


_RAY_ADDRESS = re.compile(r"^(local|auto|ray://[^\s/]+|([A-Za-z0-9_.-]+|\[[0-9A-Fa-f:]+\]):\d+)$")


def check_ray_address(address: str) -> str:
    """``local``, ``auto``, ``ray://HOST:PORT`` or ``HOST:PORT``; anything else is a ConfigError. (Ray
    itself reads ``<module>://...`` as a client module to import: such an address is refused.)"""
    if not _RAY_ADDRESS.match(address):
        raise ConfigError(f"--ray {address!r}: expected local, auto, ray://HOST:PORT or HOST:PORT")
    return address


def _ray_task(run: Run, fresh: bool) -> Outcome:
    return execute(run, fresh, log=print)  # Ray forwards a task's prints to the driver


def _on_ray(
    runs: list[Run], address: str, cpus_per_run: int, fresh: bool, log: Callable[[str], None]
) -> tuple[list[Outcome], bool]:
    check_ray_address(address)
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'dream-rl[ray]' (or: pip install 'ray[default]')") from None

    started_here = not ray.is_initialized()
    if started_here:
        try:
            if address == "local":
                ray.init(address="local", include_dashboard=False, configure_logging=False)
            else:
                ray.init(address=address, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as error:
            raise ConfigError(f"--ray {address}: cannot join the Ray cluster: {first_line(error)}") from None
    try:
        task = ray.remote(num_cpus=cpus_per_run, max_retries=0)(_ray_task)
        waiting = {task.options(name=run.name).remote(run, fresh): run for run in runs}
        cpus = ray.cluster_resources().get("CPU", 0)
        log(f"Ray: {len(runs)} runs submitted, {cpus_per_run} CPU each, {cpus:.0f} CPUs in the cluster")
        outcomes: dict[str, Outcome] = {}
        stopped = False
        try:
            while waiting:
                done, _ = ray.wait(list(waiting), num_returns=1, timeout=1.0)
                for ref in done:
                    run = waiting.pop(ref)
                    outcomes[run.name] = _ray_outcome(ray, ref, run)
                    _report(outcomes[run.name], log)
                    if outcomes[run.name].status in ("completed", "skipped"):
                        log(f"[{run.name}] {outcomes[run.name].status}")
        except KeyboardInterrupt:
            stopped = True
            log(f"\nCtrl-C: cancelling {len(waiting)} Ray tasks (running ones save a checkpoint)...")
            for ref in waiting:
                ray.cancel(ref)
            for ref, run in waiting.items():
                outcomes[run.name] = _ray_outcome(ray, ref, run, cancelled=True)
        return [outcomes[run.name] for run in runs if run.name in outcomes], stopped
    finally:
        if started_here:
            ray.shutdown()


def _ray_outcome(ray: Any, ref: Any, run: Run, cancelled: bool = False) -> Outcome:
    try:
        return ray.get(ref, timeout=120 if cancelled else None)
    except (ray.exceptions.TaskCancelledError, ray.exceptions.GetTimeoutError):
        return Outcome(run.name, "interrupted", message="cancelled (a started run keeps its last checkpoint)")
    except ray.exceptions.RayError as error:
        return Outcome(run.name, "failed", message=f"Ray: {first_line(error)}")

