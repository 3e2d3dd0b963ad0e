"""The files of a results folder that dream-rl reads back as data: ``eval.csv`` (one row per
evaluation), ``run_info.json`` (a run's status and counters) and the output folders it writes into.

Everything here reads or writes plain files: ``report`` builds its tables from these records and
the runs' ``config.yaml`` (checked as data), and never builds an env or loads a model. A record that
is not what dream-rl writes is a one-line :class:`~dream_rl.errors.ConfigError` naming the file and
the line, not a ``KeyError``.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dream_rl.errors import ConfigError, first_line

__all__ = [
    "EVAL_COLUMNS",
    "EvalRow",
    "check_writable_dir",
    "read_eval_record",
    "read_run_info",
    "truncate_eval_record",
    "writable_dir",
    "write_run_info",
]

EVAL_COLUMNS = ("timesteps", "mean_return", "std_return", "mean_score", "std_score", "mean_length", "episodes", "seconds")
_REQUIRED = ("timesteps", "mean_return", "mean_score")


@dataclass(frozen=True)
class EvalRow:
    """One evaluation: ``mean_score`` is None for an env without reference returns."""

    timesteps: int
    mean_return: float
    mean_score: float | None
    row: dict[str, str]  # the row as written, every column


def _malformed(path: Path, detail: str) -> ConfigError:
    return ConfigError(
        f"{path}: not an evaluation record written by dream-rl ({detail}); restore it from a copy, train the run "
        f"over (dream-rl train CONFIG --fresh), or move {path.parent} away to go on without that run"
    )


def read_eval_record(path: Path) -> list[EvalRow]:
    """The rows of ``eval.csv`` ([] when the file does not exist), in order of timesteps.

    Raises :class:`ConfigError` for a file that is unreadable, lacks a column, holds a value that is
    not a number, or whose timesteps go backwards."""
    if not path.exists():
        return []
    try:
        with path.open(newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            missing = [name for name in _REQUIRED if name not in (reader.fieldnames or [])]
            if missing:
                raise _malformed(path, f"no column {missing[0]!r}")
            raw_rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        detail = f"{type(error).__name__}: {first_line(error)}" if str(error).strip() else type(error).__name__
        raise _malformed(path, detail) from None
    rows: list[EvalRow] = []
    for line, raw in enumerate(raw_rows, start=2):  # line 1 is the header
        try:
            timesteps = int(raw["timesteps"])
            mean_return = float(raw["mean_return"])
            score_text = raw["mean_score"]
            mean_score = None if score_text in ("", None) else float(score_text)
        except (TypeError, ValueError):
            bad = next((name for name in _REQUIRED if not _is_number(raw.get(name), name)), "a value")
            raise _malformed(path, f"line {line}: {bad} is {raw.get(bad)!r}, not a number") from None
        if timesteps < 0 or (rows and timesteps < rows[-1].timesteps):
            raise _malformed(path, f"line {line}: timesteps {timesteps} after {rows[-1].timesteps if rows else 0}")
        rows.append(EvalRow(timesteps, mean_return, mean_score, {k: v for k, v in raw.items() if isinstance(k, str)}))
    return rows


def _is_number(text: object, name: str) -> bool:
    if name == "mean_score" and text == "":
        return True
    try:
        int(text) if name == "timesteps" else float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def truncate_eval_record(path: Path, timesteps: int) -> None:
    """Drop evaluations made after ``timesteps`` (the checkpoint a run resumes from)."""
    rows = [row for row in read_eval_record(path) if row.timesteps <= timesteps]
    if not rows:
        path.unlink(missing_ok=True)
        return
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=EVAL_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(row.row for row in rows)


def check_writable_dir(path: Path, what: str = "output_dir") -> None:
    """Whether ``path`` could be created, leaving nothing behind: the nearest existing folder of
    ``path`` is a folder in which this process can make a folder (tried with a temporary one, which
    is removed: permission bits alone do not tell, e.g. for root in /proc). Raises
    :class:`ConfigError` (``what`` names the setting to change)."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ConfigError(f"{what}: cannot create {path}: {existing} is a file, not a folder; choose another {what}", what)
    if existing == path:
        try:
            with tempfile.TemporaryFile(dir=path):
                pass
        except OSError as error:
            raise ConfigError(f"{what}: cannot write into {path} ({error.strerror or type(error).__name__}); "
                              f"choose another {what}", what) from None
        return
    child = path.relative_to(existing).parts[0] if path.is_relative_to(existing) else path.name
    try:
        os.mkdir(existing / child)
    except FileExistsError:  # appeared meanwhile: writable enough
        return
    except OSError as error:
        raise ConfigError(f"{what}: cannot create {existing / child} ({error.strerror or type(error).__name__}); "
                          f"choose another {what}", what) from None
    os.rmdir(existing / child)


def writable_dir(path: Path, what: str = "output_dir", way_on: str = "choose a folder you can write to") -> Path:
    """Create ``path`` (with its parents) and check that a file can be written in it. Raises
    :class:`ConfigError` "<what>: cannot write into <path> (<reason>); <way_on>"."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ConfigError(f"{what}: cannot write into {path}: {existing} is a file, not a folder; {way_on}", what)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(f"{what}: cannot write into {path} ({reason}); {way_on}", what) from None
    return path


# The keys of run_info.json that dream-rl reads back, and their types (numbers may be ints or floats).
_RUN_INFO_TYPES: dict[str, tuple[type, ...]] = {
    "status": (str,), "timesteps": (int,), "total_timesteps": (int,), "train_timesteps": (int,),
    "train_seconds": (int, float), "eval_seconds": (int, float), "steps_per_second": (int, float),
}


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """``run_info.json`` of a run ({} when there is none yet, or it is unreadable). A known key
    whose value has the wrong type (a hand-edited or foreign file) is left out, as if absent."""
    path = run_dir / "run_info.json"
    try:
        info = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        return {}
    if not isinstance(info, dict):
        return {}
    return {key: value for key, value in info.items()
            if key not in _RUN_INFO_TYPES or (isinstance(value, _RUN_INFO_TYPES[key]) and not isinstance(value, bool))}


def write_run_info(run_dir: Path, info: dict[str, Any]) -> None:
    """Write ``run_info.json`` whole (through a temporary file: a reader never sees half of it)."""
    path = run_dir / "run_info.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    tmp.replace(path)
