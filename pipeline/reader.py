"""A second process that reads the files a run will copy, a few folders ahead of it.

A first backup costs per file: open, read, sha256, a temporary copy written with
the file's mode, owner and times.  That work needs no catalog and no decision,
so a child process (``os.fork``, on the second core) does it for the folders the
run's tasks will copy, in their order, into the staging folder; the folder's task
then takes each copy exactly as `doit all`'s versioned task takes the snapshot
task's reading (``Session.hand_over``): only if the file's lstat is still the one
the copy was made from.  Everything else stays where it was: the decisions, the
names, the renames into place, the catalog, the commits and the fault points are
the run's own, in its own process.

What the child makes is temporary: a copy not taken is removed at the end of the
run, and a killed run's are emptied from the staging folder by the next one.  The
child never runs ahead by more than ``AHEAD_FOLDERS`` folders or
``AHEAD_BYTES`` bytes not yet taken (the staging folder holds no more than that),
reads nothing ahead on a disk with less than ``KEEP_FREE`` left (a nearly full
disk's last bytes go to the copies the run places, as they did without it), dies
with the run (``PR_SET_PDEATHSIG``), and when it fails, or the disk is full,
the task reads the file itself.  A file written within the timestamps' tick of its
reading is not offered (its stat could stay as it is after a later write); nor is
a large file, which the task copies itself to move the progress display.
"""

from __future__ import annotations

import ctypes
import errno
import os
import pickle
import signal
import sys
from collections.abc import Sequence
from typing import NamedTuple

from . import store
from .store import Copied

AHEAD_FOLDERS = 8
AHEAD_BYTES = 32 << 20
KEEP_FREE = 256 << 20    # a disk with less room left is the run's alone: nothing read ahead
BIG = 8 << 20            # read by the task itself (session.MOVE_ABOVE: progress within it)


class Batch(NamedTuple):
    """One folder's files to read: its path, and (name, copies to make) for each."""
    path: bytes
    files: list[tuple[bytes, int]]
    size: int            # their bytes (the child's budget of staging space)


class Reader:
    """The child and the run's end of its two pipes (results, and batches taken)."""

    def __init__(self, staging: bytes, batches: Sequence[Batch]):
        results_r, results_w = os.pipe()
        taken_r, taken_w = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:                                      # the child: never returns
            code = 1
            try:
                os.close(results_r)
                os.close(taken_w)
                _serve(parent, staging, batches, results_w, taken_r)
                code = 0
            finally:
                os._exit(code)
        os.close(results_w)
        os.close(taken_r)
        self.pid = pid
        self.results = os.fdopen(results_r, "rb")
        self.taken = taken_w
        self.next = 0                                     # the batch the child sends next
        self.ended = False

    def batch(self, index: int) -> dict[bytes, Copied]:
        """The copies of batch ``index`` (earlier ones not asked for are removed); {}
        when it was passed already or the child ended."""
        while not self.ended and self.next <= index:
            copies: dict[bytes, Copied]
            try:
                got, copies = pickle.load(self.results)
            except (EOFError, OSError, pickle.UnpicklingError):
                self.ended = True
                break
            self.next = got + 1
            try:
                os.write(self.taken, b"\1")               # room for one more
            except OSError:
                pass                  # it sent its last batch and ended: read on
            if got == index:
                return copies
            drop(copies)
        return {}

    def close(self) -> None:
        """Stop the child, collect it, remove the copies it sent and no task took (those
        it was making are emptied from the staging folder by ``Session.release``)."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        os.close(self.taken)
        self.results.close()
        self.ended = True


def drop(copies: dict[bytes, Copied]) -> None:
    for copied in copies.values():
        for tmp in copied.tmps:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _die_with(parent: int) -> None:
    """The child is killed when the run ends, however it ends (Linux; elsewhere it ends
    at its next batch, when the pipe has no reader)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(0)


def _serve(parent: int, staging: bytes, batches: Sequence[Batch], results_w: int,
           taken_r: int) -> None:
    _die_with(parent)
    # Nothing of the run's but the two pipes: not its lock, its catalog, nor the output
    # a caller waits on the end of (cron, a pipe)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if os.path.isdir("/proc/self/fd"):
        for fd in [int(n) for n in os.listdir("/proc/self/fd")]:
            if fd > 2 and fd not in (results_w, taken_r):
                try:
                    os.close(fd)
                except OSError:
                    pass                                # (the listing's own)
    signal.signal(signal.SIGINT, signal.SIG_IGN)       # Ctrl-C is the run's to handle
    for key in ("SNAPBACK_FAULT", "SNAPBACK_FAULT_LOG"):
        os.environ.pop(key, None)     # the fault points are the run's: counted there alone
    out = os.fdopen(results_w, "wb")
    taken = 0
    for index, batch in enumerate(batches):
        while index - taken >= AHEAD_FOLDERS or (index > taken and sum(
                b.size for b in batches[taken:index]) + batch.size > AHEAD_BYTES):
            got = os.read(taken_r, 64)
            if not got:
                return                                  # the run is gone
            taken += len(got)
        copies: dict[bytes, Copied] = {}
        vfs = os.statvfs(staging)
        room = vfs.f_bavail * vfs.f_frsize >= KEEP_FREE + 2 * batch.size
        for name, count in batch.files if room else ():
            try:
                copied = store.copy_to_tmps(os.path.join(batch.path, name),
                                            (staging,) * count, hashed=True)
            except store.SourceChanged:
                continue                                # the task reads it itself
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    break                               # no room: the task's to judge
                continue
            if store.racy(copied.stat):
                drop({name: copied})
                continue
            copies[name] = copied
        pickle.dump((index, copies), out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()
