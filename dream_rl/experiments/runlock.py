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

from dream_rl.experiments.config import ConfigError

__all__ = ["RunLocked", "RunLock"]

LOCK_NAME = ".lock"


class RunLocked(ConfigError):
    """Another process is training this run (exit status 2 on the command line)."""


class RunLock:
    """``with RunLock(run_dir, name):`` holds the run directory's lock or raises :class:`RunLocked`."""

    def __init__(self, run_dir: Path, name: str) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.name = name
        self._fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunLocked(self._held_message()) from None
            except OSError as error:
                os.close(fd)
                raise ConfigError(f"cannot lock {self.path} ({error.strerror}): put output_dir on a file system with file locks") from None
            # The holder before us may have deleted the file between our open and our lock:
            # then we hold a lock on a file nobody else can see. Start over on the new one.
            try:
                same_file = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same_file = False
            if same_file:
                break
            os.close(fd)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(holder) + "\n").encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # before unlocking: a waiter then re-checks the inode
        os.close(self._fd)  # closing drops the flock
        self._fd = None

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
