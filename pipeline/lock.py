"""The destination's lock: one writer at a time, and it names itself.

``flock`` on ``.snapback/lock``: the kernel drops it when the holder dies, so
a lock left by a killed run is simply taken over.  The holder writes its pid,
start time and command into the file so that a second run can say who holds it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from pathlib import Path

from .errors import LockHeld, SnapbackError
from .store import ensure_private_dir

# The lock file cannot be opened for writing because the backup cannot be written here
# (read-only media, a filesystem the kernel remounted read-only after errors, a backup
# of another user's): a run cannot write it, a reader can still read it (``share``).
READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


class LockUnusable(SnapbackError):
    """The lock file cannot be opened for writing (``errno`` says why)."""

    def __init__(self, message: str, code: int | None):
        super().__init__(message)
        self.errno = code


class Lock:
    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None
        self.note = ""
        self.announced = False
        self.taken_over = ""          # the note of a holder that died without releasing

    def acquire(self, note: str = "", announce: bool = True) -> None:
        """Take the lock (or raise LockHeld naming the holder); ``announce=False``
        writes the holder's note only at ``announce()``."""
        ensure_private_dir(self.path.parent)
        try:    # never through a link planted in .snapback/ (it would print and empty
                # whatever file it points to)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
                         | os.O_NONBLOCK, 0o600)
        except OSError as exc:
            why = "the backup cannot be written here" if exc.errno in READ_ONLY else \
                "a link or something else where the lock file belongs?"
            raise LockUnusable(f"cannot use the lock {self.path}: {exc.strerror or exc} "
                               f"({why})", exc.errno) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise SnapbackError(f"{self.path} is not a file: the lock cannot be taken")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise self._held(fd) from None
        self.fd, self.note, self.announced = fd, note, False
        left = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        self.taken_over = left  # a holder that ended without releasing: killed, or its machine died
        if left or announce:
            self.announce()

    def share(self) -> None:
        """For a reader of a backup it cannot write (``READ_ONLY``): the lock taken
        shared, through a descriptor opened for reading, so that no run writes the
        backup while it is read (LockHeld when one does); without it when there is no
        lock file to open (a backup never written through this mount)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise self._held(fd) from None
        self.fd, self.announced = fd, False

    def _held(self, fd: int) -> LockHeld:
        """Someone else holds the lock: who, as the holder wrote it (closes ``fd``)."""
        holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        os.close(fd)
        return LockHeld(f"another snapback run holds {self.path}"
                        f" ({holder or 'holder unknown'}); try again when it has finished")

    def announce(self) -> None:
        """Write who holds the lock, before the holder's first write (a run that finds
        nothing to do holds the lock without changing a byte of the backup)."""
        if self.fd is None or self.announced:
            return
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"pid {os.getpid()}, started {started}, {self.note}\n".encode(), 0)
        self.announced = True

    def release(self) -> None:
        if self.fd is not None:
            if self.announced:
                try:
                    os.ftruncate(self.fd, 0)
                except OSError:       # (a disk remounted read-only under the run: the
                    pass              # lock goes with the descriptor all the same)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
