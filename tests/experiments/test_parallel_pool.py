"""The process pool shared by `compare` and `tune` (dream_rl.experiments.parallel.run_tasks)."""

from __future__ import annotations

import os

from dream_rl.errors import ConfigError
from dream_rl.experiments.parallel import Outcome, Task, run_tasks


def _fine(name: str, log) -> Outcome:
    log(f"{name} says hello from pid {os.getpid()}")
    return Outcome(name, "completed", message=str(os.getpid()))


def _raises(name: str, log) -> Outcome:
    raise ValueError(f"{name} broke\nsecond line")


def _bad_config(name: str, log) -> Outcome:
    raise ConfigError(f"{name}: a bad value")


def _dies(name: str, log) -> Outcome:
    os._exit(3)


def test_tasks_run_in_their_own_processes_and_every_ending_is_an_outcome():
    lines: list[str] = []
    tasks = [Task("a", _fine, ("a",)), Task("b", _raises, ("b",)), Task("c", _bad_config, ("c",)),
             Task("d", _dies, ("d",)), Task("e", _fine, ("e",))]
    outcomes, stopped = run_tasks(tasks, workers=2, log=lines.append)
    assert not stopped
    by_name = {outcome.name: outcome for outcome in outcomes}
    assert [outcome.name for outcome in outcomes] == ["a", "b", "c", "d", "e"]  # the order of the tasks
    assert by_name["a"].status == by_name["e"].status == "completed"
    assert {by_name["a"].message, by_name["e"].message}.isdisjoint({str(os.getpid())})  # not this process
    assert by_name["b"].status == "failed" and by_name["b"].message == "ValueError: b broke"
    assert not by_name["b"].config_problem
    assert by_name["c"].status == "failed" and by_name["c"].config_problem and by_name["c"].message == "c: a bad value"
    assert by_name["d"].status == "failed" and "worker process died (exit code 3)" in by_name["d"].message
    assert any(line.startswith("a says hello") for line in lines) and any(line.startswith("e says hello") for line in lines)
    assert "[b] FAILED: ValueError: b broke" in lines  # failures are reported as they come
