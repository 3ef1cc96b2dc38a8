"""A test-only fault hook: make a writer die, or find the disk full, at an exact point.

``SNAPBACK_FAULT=<kind>:<n>`` makes the process SIGKILL itself at the ``n``-th
point of ``kind`` (``write``: before a stored file is written; ``rename``: before
a file takes its final name; ``fsync``: before data is put on stable storage;
``commit``: before a catalog commit; ``sync``: before each step of a sync to the
remote, and one file into it: see ``reached``; ``remove``: before a file no row
names is removed from the history); ``<kind>:<n>:enospc`` raises ENOSPC there
instead, ``<kind>:<n>:sigint`` sends the process SIGINT (Ctrl-C) there.
``SNAPBACK_FAULT_LOG=FILE`` appends each point's kind to FILE, so a test learns
how many points a scenario has and then runs it once per point.

Whether the hook is armed is read once, when the process starts (the tests start
a process per scenario); unarmed (always, outside tests) a point costs a test of
one constant.  The count lives in the environment of this process
(``SNAPBACK_FAULT_SEEN``), not in module state.
"""

from __future__ import annotations

import errno
import os
import signal

KINDS = ("write", "rename", "fsync", "commit", "sync", "remove")
ARMED = bool(os.environ.get("SNAPBACK_FAULT") or os.environ.get("SNAPBACK_FAULT_LOG"))


def point(kind: str) -> None:
    """One point of ``kind`` is reached."""
    if not ARMED:
        return
    how = _hit(kind)
    if how is None:
        return
    if how == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if how == "sigint":
        os.kill(os.getpid(), signal.SIGINT)         # Ctrl-C, here
        return
    die()


def reached(kind: str) -> bool:
    """One point of ``kind`` is reached: is it the chosen one?  The caller then cuts
    its work short itself (a sync: rclone stops after one file) and calls ``die``."""
    return ARMED and _hit(kind) is not None


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _hit(kind: str) -> str | None:
    """Count one point of ``kind``; what to do there (``""``: die) when it is the
    chosen one, else None."""
    env = os.environ
    log = env.get("SNAPBACK_FAULT_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(kind + "\n")
    spec = env.get("SNAPBACK_FAULT")
    if not spec:
        return None
    want, _, rest = spec.partition(":")
    if want != kind:
        return None
    nth, _, how = rest.partition(":")
    seen = int(env.get("SNAPBACK_FAULT_SEEN", "0")) + 1
    env["SNAPBACK_FAULT_SEEN"] = str(seen)
    if seen != int(nth or "1"):
        return None
    return how
