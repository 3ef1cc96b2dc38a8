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
child sends a folder's copies a chunk at a time (``CHUNK_FILES`` files or
``CHUNK_BYTES``: a task waits for one chunk, never for a whole big folder), never
runs ahead by more than ``AHEAD_CHUNKS`` chunks or ``AHEAD_BYTES`` bytes not yet
taken (the staging folder holds no more than that),
reads nothing ahead on a disk with less than ``KEEP_FREE`` left (a nearly full
disk's last bytes go to the copies the run places, as they did without it), dies
with the run (``PR_SET_PDEATHSIG``), and when it fails, or the disk is full,
the task reads the file itself.  A file written within the timestamps' tick of its
reading is not offered (its stat could stay as it is after a later write); nor is
a large file, which the task copies itself to move the progress display.
"""

from __future__ import annotations

import array
import errno
import os
import pickle
import signal
from collections.abc import Iterable
from typing import NamedTuple

from . import child, store
from .store import Copied

AHEAD_CHUNKS = 8         # chunks sent and not yet taken
AHEAD_BYTES = 32 << 20   # ... and their bytes
CHUNK_FILES = 256        # a chunk: a folder's next files, at most this many
CHUNK_BYTES = 4 << 20    # ... or bytes (a folder of 25 GB of photos is read a chunk at a time)
KEEP_FREE = 256 << 20    # a disk with less room left is the run's alone: nothing read ahead
BIG = 8 << 20            # read by the task itself (session.MOVE_ABOVE: progress within it)


class Batch(NamedTuple):
    """One folder's files to read: its path, and (name, copies to make, size) for each,
    in the order its task comes to them."""
    path: bytes
    files: list[tuple[bytes, int, int]]


class Planned(NamedTuple):
    """One folder's files to read, as the run keeps them until its task has run (a
    tenth of the memory of a list of pairs: 240,000 files cost about 6 MB, not 34)."""
    path: bytes
    names: bytes         # joined by NUL (no file name holds one)
    sizes: array.array   # type: ignore[type-arg]

    @classmethod
    def of(cls, path: bytes, files: list[tuple[bytes, int]]) -> Planned:
        return cls(path, b"\0".join(name for name, _size in files),
                   array.array("q", (size for _name, size in files)))

    def files(self) -> list[tuple[bytes, int]]:
        return list(zip(self.names.split(b"\0"), self.sizes, strict=True))


class Reader:
    """The child and the run's end of its two pipes (chunks, and chunks taken)."""

    def __init__(self, staging: bytes, batches: Iterable[Batch]):
        fds: list[int] = []
        try:                          # OSError: no process or descriptor left (the caller
            fds.extend(os.pipe())     # reads the files itself)
            fds.extend(os.pipe())
            results_r, results_w, taken_r, taken_w = fds
            pid = child.fork(lambda: _serve(staging, batches, results_w, taken_r),
                             keep=(results_w, taken_r))
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        os.close(results_w)
        os.close(taken_r)
        self.pid = pid
        self.results = os.fdopen(results_r, "rb")
        self.taken = taken_w
        self.ended = self.closed = False
        self.pending: tuple[int, int, dict[bytes, Copied]] | None = None  # a later folder's

    def folder(self, index: int, names: list[bytes]) -> Ahead:
        """The copies of batch ``index``, taken a chunk at a time as its task asks."""
        return Ahead(self, index, names)

    def chunk(self, index: int) -> tuple[int, dict[bytes, Copied]] | None:
        """The next chunk of batch ``index``: (how far into its files it reaches, its
        copies); chunks of earlier batches on the way are removed.  None: the batch has
        no more (or was passed, or the child ended)."""
        while True:
            if self.pending is None:
                self.pending = self._read()
                if self.pending is None:
                    return None
            got, upto, copies = self.pending
            if got > index:
                return None                               # kept for its own folder
            self.pending = None
            if got == index:
                return upto, copies
            drop(copies)

    def _read(self) -> tuple[int, int, dict[bytes, Copied]] | None:
        if self.ended:
            return None
        try:
            got: tuple[int, int, dict[bytes, Copied]] = pickle.load(self.results)
        except (EOFError, OSError, pickle.UnpicklingError):
            self.ended = True
            return None
        try:
            os.write(self.taken, b"\1")                   # room for one more
        except OSError:
            pass                      # it sent its last chunk and ended: read on
        return got

    def close(self) -> None:
        """Stop the child, collect it and remove the copies it sent that no task took
        (a copy it was making when killed is emptied from the staging folder by
        ``Session.stop_reading``).  Once."""
        if self.closed:
            return
        self.closed = True
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        if self.pending is not None:          # the chunks it sent that no task took
            drop(self.pending[2])
            self.pending = None
        while (sent := self._read()) is not None:
            drop(sent[2])
        os.close(self.taken)
        self.results.close()
        self.ended = True


class Ahead:
    """One folder's copies read ahead, for its task: ``pop`` a file's (None: read it
    yourself); what is left when the task ends goes with ``Session.drop_handed``."""

    def __init__(self, reader: Reader | None = None, index: int = 0,
                 names: list[bytes] | None = None):
        self.reader, self.index = reader, index
        self.order = {name: pos for pos, name in enumerate(names or ())}
        self.got: dict[bytes, Copied] = {}
        self.upto = 0                  # the files before this position have come
        self.done = reader is None

    def pop(self, name: bytes, default: None = None) -> Copied | None:
        pos = self.order.get(name)
        while pos is not None and pos >= self.upto and not self.done:
            assert self.reader is not None
            chunk = self.reader.chunk(self.index)
            if chunk is None:
                self.done = True
                break
            self.upto, copies = chunk
            self.got.update(copies)
        return self.got.pop(name, default)

    def values(self) -> list[Copied]:
        return list(self.got.values())

    def clear(self) -> None:
        self.got.clear()
        self.done = True


def drop(copies: dict[bytes, Copied] | Ahead) -> None:
    """Remove the temporary files of ``copies`` no task took, and forget them."""
    for copied in copies.values():
        for tmp in copied.tmps:
            try:
                os.unlink(tmp)
            except OSError:
                pass              # (the staging folder is emptied by the next run)
    copies.clear()


def _serve(staging: bytes, batches: Iterable[Batch], results_w: int, taken_r: int) -> None:
    out = os.fdopen(results_w, "wb")
    taken, sent = 0, 0                                 # chunks taken, sent
    sizes: list[int] = []                              # their bytes
    full = False
    for index, batch in enumerate(batches):
        files = batch.files if not full else []
        pos = 0
        while True:
            end, size = pos, 0
            while end < len(files) and end - pos < CHUNK_FILES and \
                    (end == pos or size + files[end][2] <= CHUNK_BYTES):
                size += files[end][2]
                end += 1
            while sent - taken >= AHEAD_CHUNKS or \
                    (sent > taken and sum(sizes[taken:sent]) + size > AHEAD_BYTES):
                got = os.read(taken_r, 64)
                if not got:
                    return                              # the run is gone
                taken += len(got)
            if not full:                                # room for this chunk, and more
                vfs = os.statvfs(staging)
                full = vfs.f_bavail * vfs.f_frsize < KEEP_FREE + size
            copies: dict[bytes, Copied] = {}
            for name, count, _size in files[pos:end] if not full else ():
                try:
                    copied = store.copy_to_tmps(os.path.join(batch.path, name),
                                                (staging,) * count, hashed=True)
                except store.SourceChanged:
                    continue                            # the task reads it itself
                except OSError as exc:
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                        full = True                     # no room: the run's to judge
                    continue
                if copied.racy:
                    drop({name: copied})
                    continue
                copies[name] = copied
            upto = end if end < len(files) else len(batch.files)
            pickle.dump((index, upto, copies), out, protocol=pickle.HIGHEST_PROTOCOL)
            out.flush()
            sizes.append(size)
            sent += 1
            pos = end
            if pos >= len(files):
                break
