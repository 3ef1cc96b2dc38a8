"""A second process for a run's work that needs no catalog and writes nothing of the
backup (reading files ahead, ``pipeline.reader``; half of a walk, ``pipeline.scan``).

``fork`` gives it the run's memory as it is (the plan, the rules, what was read of
the catalog), so it is made with no arguments to send; ``detach`` then leaves it
nothing of the run but the pipes it talks through: not the lock, the catalog's
connection, nor the output a caller waits on the end of (cron, a pipe).  It dies
with the run (Linux: ``PR_SET_PDEATHSIG``; elsewhere at its next write, when the
pipe has no reader), ignores Ctrl-C (the run's to handle), and counts no fault
point (they are the run's).  It ends with ``os._exit``: nothing of the run's
(buffered output, the catalog) is flushed or closed twice.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable


def cores() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def fork(work: Callable[[], None], keep: tuple[int, ...]) -> int:
    """Start ``work`` in a child process (its pid returned); ``keep``: the pipes it
    uses, the only descriptors it keeps."""
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:                                      # the child: never returns
        code = 1
        try:
            detach(parent, keep)
            work()
            code = 0
        finally:
            os._exit(code)
    return pid


def detach(parent: int, keep: tuple[int, ...]) -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:                       # the run ended meanwhile
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if os.path.isdir("/proc/self/fd"):
        for fd in [int(n) for n in os.listdir("/proc/self/fd")]:
            if fd > 2 and fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass                                # (the listing's own)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for key in ("SNAPBACK_FAULT", "SNAPBACK_FAULT_LOG"):
        os.environ.pop(key, None)
