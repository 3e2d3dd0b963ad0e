"""A run directory is locked while it trains, so that two trainings never share its files.

The lock is an advisory ``flock`` on ``<run dir>/.lock``: the kernel drops it when the holding
process ends in any way (crash, ``kill -9``, a lost node on NFS after the lease), so a lock left by
a dead process never blocks. The file holds the holder's pid, host and start time, which the error
for a second trainer names. ``flock`` works across processes on one machine and, on Linux, across
machines on NFS (v4, or v3 with lockd); on file systems without locks, the lock is refused loudly
rather than silently ignored.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from dream_rl._filelock import FileLock
from dream_rl.errors import ConfigError

__all__ = ["RunLocked", "RunLock"]

LOCK_NAME = ".lock"


class RunLocked(ConfigError):
    """Another process is training this run (exit status 2 on the command line)."""


class RunLock:
    """``with RunLock(run_dir, name):`` holds the run directory's lock or raises :class:`RunLocked`."""

    def __init__(self, run_dir: Path, name: str) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.name = name
        self._lock = FileLock(self.path, blocking=False)

    def acquire(self) -> None:
        try:
            acquired = self._lock.acquire()
        except OSError as error:
            raise ConfigError(
                f"cannot lock {self.path} ({error.strerror}): put output_dir on a file system with file locks"
            ) from None
        if not acquired:
            raise RunLocked(self._held_message())
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        assert self._lock.fd is not None
        os.ftruncate(self._lock.fd, 0)
        os.write(self._lock.fd, (json.dumps(holder) + "\n").encode())

    def release(self) -> None:
        self._lock.release(remove=True)

    def _held_message(self) -> str:
        try:
            holder = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            holder = {}
        who = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}"
        since = f" since {holder['since']}" if "since" in holder else ""
        return (
            f"{self.name} is being trained by {who}{since} (lock {self.path}); wait for it to finish, "
            "stop that process (its checkpoint is kept and this command resumes from it), "
            "or train under another name or output_dir"
        )

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
