"""One advisory file lock (POSIX ``flock``), shared by the native-kernel build and the run directories.

The kernel drops an ``flock`` when the holding process ends in any way (crash, ``kill -9``), so a lock
left by a dead process never blocks. A holder may delete the lock file when it releases; a process
that opened the old file before the deletion then holds a lock nobody else can see, so
:meth:`FileLock.acquire` re-checks, after locking, that the file it locked is still the one at ``path``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["FileLock"]


class FileLock:
    """An exclusive ``flock`` on ``path``.

    Args:
        path: the lock file (created if missing).
        blocking: wait for the lock (True) or fail at once when another process holds it (False).
    """

    def __init__(self, path: str | os.PathLike[str], blocking: bool = True) -> None:
        self.path = Path(path)
        self.blocking = blocking
        self.fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock. Returns False (non-blocking only) when another process holds it; raises
        ``OSError`` when the file cannot be opened or the file system refuses locks."""
        import fcntl  # POSIX only: imported here so that importing this module works everywhere

        flags = fcntl.LOCK_EX | (0 if self.blocking else fcntl.LOCK_NB)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, flags)
            except BlockingIOError:
                os.close(fd)
                return False
            except OSError:
                os.close(fd)
                raise
            try:
                same_file = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same_file = False
            if same_file:
                self.fd = fd
                return True
            os.close(fd)  # the holder before us deleted the file: lock the new one

    def release(self, remove: bool = False) -> None:
        """Drop the lock; ``remove`` deletes the file first (a waiter then re-checks the inode)."""
        if self.fd is None:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self.fd)  # closing drops the flock
        self.fd = None
