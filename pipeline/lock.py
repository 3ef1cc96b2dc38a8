"""The destination's lock: one writer at a time, and it names itself.

``flock`` on ``.snapback/lock``: the kernel drops it when the holder dies, so
a lock left by a killed run is simply taken over.  The holder writes its pid,
start time and command into the file so that a second run can say who holds it.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path

from .errors import LockHeld
from .store import ensure_private_dir


class Lock:
    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def acquire(self, note: str = "") -> None:
        ensure_private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            raise LockHeld(f"another snapback run holds {self.path}"
                           f" ({holder or 'holder unknown'}); try again when it has finished")
        left = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        if left:     # a holder that ended without releasing: killed, or its machine died
            print(f"snapback: taking over the lock left by a run that is gone ({left})",
                  file=sys.__stderr__)   # doit captures sys.stderr in actions
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {started}, {note}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
