"""Writing into the backup: every write is a temporary file, then a rename.

A run killed at any instant leaves each stored file old or new, never partial;
the temporary names (``.~snapback-*.tmp``) are built-in ignores and are swept
by the next run of the folder's task.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import hashlib
import os
import shutil
import stat
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple, Protocol

from . import faults
from .lstat import AnyStat

TMP_PREFIX = ".~snapback-"
TMP_SUFFIX = ".tmp"
CHUNK = 1 << 20
# A file modified this recently (ns) is read twice: in-place writes within one tick of
# the filesystem's clock (ext4: a few ms) leave the mtime unchanged.
RECENT_NS = 2_000_000_000


def recent(st: AnyStat, now: int | None = None) -> bool:
    """Was the file written within ``RECENT_NS`` of ``now`` (the moment its reading began;
    None: now), so that a write that follows may leave its stat as it is?  The ctime
    counts too: a file whose mtime was set back (``cp -p``, ``rsync --inplace``) was
    still written just then."""
    return (time.time_ns() if now is None else now) - \
        max(st.st_mtime_ns, st.st_ctime_ns) < RECENT_NS

# The clock the kernel stamps mtimes with (Linux: CLOCK_REALTIME_COARSE, 5).
_COARSE = 5 if sys.platform.startswith("linux") else time.CLOCK_REALTIME


def racy(st: AnyStat, now: int | None = None) -> bool:
    """Is the file ``st`` "racily clean" (git's term), read ``now`` (the kernel's coarse
    clock when None), after its content?

    A rewrite of the same size leaves the mtime as it was when it falls in the same
    tick of the filesystem's clock as the last write (``tick``): the same second on a
    filesystem with 1 s timestamps, the same 10 ms on exFAT, the same kernel clock tick
    elsewhere.  Such a file's record is compared by content on the next run, and its
    reading is not handed from one task to another.  The ctime counts as well: a file
    whose mtime was set back (``cp -p``, ``tar x``, ``rsync --inplace``) may be
    rewritten so in the ctime's tick, leaving its whole stat, ctime included, as it
    was."""
    if now is None:
        now = time.clock_gettime_ns(_COARSE)
    if st.st_mtime_ns < now - 2 * SECOND and st.st_ctime_ns < now - 2 * SECOND:
        return False                 # older than the coarsest tick: no tick holds now too
    for when in (st.st_mtime_ns, st.st_ctime_ns):
        step = tick(when)
        if now - now % step <= when:
            return True
    return False


def reading_starts() -> int:
    """The moment a reading begins, on the clock ``racy`` compares file times with."""
    return time.clock_gettime_ns(_COARSE)


def tick(when: int) -> int:
    """The granularity a file time shows, read from the time itself: a whole even
    second, two (FAT); a whole second, one (ext4 with small inodes, NFSv2, SMB, a time
    set by ``touch -d`` or ``tar x``); a whole 10 ms (exFAT), a millisecond or a
    microsecond, that; anything else, a nanosecond (the kernel's coarse clock stamps
    it).  A time that is a whole unit only by chance (one in a thousand for a
    microsecond) makes a reading racy within that unit: a content comparison more."""
    if when % (2 * SECOND) == 0:
        return 2 * SECOND
    for unit in (SECOND, 10_000_000, 1_000_000, 1_000):
        if when % unit == 0:
            return unit
    return 1


SECOND = 1_000_000_000


class SourceChanged(Exception):
    """The source file changed while it was being copied."""


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) as 0700: a backup of a home folder holds secrets.
    One that exists must be a real folder: a link there is never followed."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=False)
        os.chmod(path, 0o700)
    except FileExistsError:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            from .errors import SnapbackError
            raise SnapbackError(f"{os.fsdecode(os.fspath(path))} is not a folder (a link or a "
                                "file where the backup keeps its own data): not followed, "
                                "nothing was written") from None


def clear_staging(path: Path) -> None:
    """Empty the staging folder: what is there was left by a run that was killed."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        os.unlink(path)                  # not a folder: nothing of ours, make it one again
    ensure_private_dir(path)
    for entry in os.scandir(path):
        remove(os.fsencode(entry.path))


def make_destination(path: Path) -> None:
    """The destination folder, made (private) if missing; a destination that cannot be
    made is one line, nothing done (helper-62: a PermissionError's traceback, status 3)."""
    if not path.exists():
        try:
            ensure_private_dir(path)
            os.chmod(path, 0o700)
        except OSError as exc:
            from .errors import SnapbackError
            raise SnapbackError(f"the destination {path} cannot be made: "
                                f"{exc.strerror or exc}; nothing was done") from None


def tmp_name(folder: bytes) -> bytes:
    return os.path.join(folder, f"{TMP_PREFIX}{os.urandom(6).hex()}{TMP_SUFFIX}".encode())


def is_tmp(name: str) -> bool:
    return name.startswith(TMP_PREFIX) and name.endswith(TMP_SUFFIX)


def same_stat(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_mtime_ns, a.st_size, a.st_ino, a.st_ctime_ns) == \
        (b.st_mtime_ns, b.st_size, b.st_ino, b.st_ctime_ns)


def copy_to_tmp(src: bytes, folder: bytes, hashed: bool = False,
                progress: Callable[[int], None] | None = None
                ) -> tuple[bytes, os.stat_result, str | None]:
    """Copy ``src`` into a new temporary file in ``folder``, with its mode and mtime.

    Opens without following links and without blocking (a FIFO put in the
    file's place must not hang the run), and checks that the source did not
    change while it was read.  Returns (temporary path, the source's stat as
    copied, its sha256 when ``hashed``).  Raises ``SourceChanged`` when it
    changed, ``OSError`` for any other failure, leaving no temporary file.
    """
    copied = copy_to_tmps(src, (folder,), hashed, progress)
    return copied.tmps[0], copied.stat, copied.sha256


class Copied(NamedTuple):
    """A file read once into temporary copies (``copy_to_tmps``)."""
    tmps: list[bytes]
    stat: os.stat_result        # the source's, as it was read
    sha256: str | None
    written: int                # what each copy takes on disk (allocated, at most its size)
    lost: str | None = None     # why the second copy (``also``) could not be made
    # when its reading began (the kernel's coarse clock, ``reading_starts``): whether it
    # is racily clean is judged against that moment, not the end of a long reading
    # (helper-57: a write within the tick of the walk's lstat, during a reading of 200 MB
    # that ended in a later second, left a record that no later run looked at again)
    read_at: int | None = None

    @property
    def racy(self) -> bool:
        return racy(self.stat, self.read_at)


def copy_to_tmps(src: bytes, folders: tuple[bytes, ...], hashed: bool = False,
                 progress: Callable[[int], None] | None = None) -> Copied:
    """``copy_to_tmp`` into one new temporary file in each of ``folders``, from one
    reading of ``src`` (`doit all`: the mirror's copy and the history's)."""
    started = reading_starts()
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    tmps: list[bytes] = []
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise SourceChanged("is no longer a regular file")
        outs: list[int] = []
        try:
            for folder in folders:
                faults.point("write")
                tmp = tmp_name(folder)
                outs.append(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                                    0o600))
                tmps.append(tmp)
            digest = copy_data(fd, outs[0], hashlib.sha256() if hashed else None, before,
                               progress, also=tuple(outs[1:]))
            for out in outs:
                os.fchmod(out, stat.S_IMODE(before.st_mode))
                _chown(out, before)
                os.utime(out, ns=(before.st_atime_ns, before.st_mtime_ns))
            made = os.fstat(outs[0])
            written = min(made.st_size, made.st_blocks * 512)
        finally:
            for out in outs:
                os.close(out)
        after = os.fstat(fd)
        if not same_stat(before, after) \
                or not same_stat(after, os.stat(src, follow_symlinks=False)):
            raise SourceChanged("changed while it was read")
        if digest is not None and recent(before, started):
            # Written to within the filesystem's timestamp granularity: writes during
            # the read may have left the mtime as it was.  Read it again; a second
            # reading that differs means it is being written: try again later.
            os.lseek(fd, 0, os.SEEK_SET)
            again = hashlib.sha256()
            while chunk := os.read(fd, CHUNK):
                again.update(chunk)
            if again.hexdigest() != digest or not same_stat(before, os.fstat(fd)):
                raise SourceChanged("changed while it was read")
        return Copied(tmps, before, digest, written, read_at=started)
    except BaseException:
        for tmp in tmps:
            _unlink_quiet(tmp)
        raise
    finally:
        os.close(fd)


def copy_file(src: bytes, dst: bytes, progress: Callable[[int], None] | None = None,
              also: bytes | None = None) -> Copied:
    """Copy ``src`` to ``dst`` atomically (``copy_to_tmp``, hashed); when ``also`` names
    a folder, a second temporary copy is made there from the same reading: the
    result's ``tmps`` (the caller's to use or remove)."""
    copied = copy_to_tmps(src, (os.path.dirname(dst),) + ((also,) if also is not None
                                                           else ()), hashed=True,
                          progress=progress)
    return place_copy(copied, dst)


def made_ahead(copied: Copied, placed: int = 0) -> bool:
    """A copy another process made (pipeline.reader) is taken: its writes' fault points
    are passed here, in the run's own process, as ``copy_to_tmps`` passes them (a test
    kills the run, or fills its disk, at the same points with or without it).  False:
    a copy is gone (the staging folder emptied or replaced under the run): none is
    left, and the caller reads the file itself.  The first ``placed`` copies are not
    looked for: the caller renames them at once and reads the file itself when one is
    gone then (``place_ahead``)."""
    try:
        for _tmp in copied.tmps:
            faults.point("write")
        if all(os.path.lexists(tmp) for tmp in copied.tmps[placed:]):
            return True
    except BaseException:
        for tmp in copied.tmps:
            _unlink_quiet(tmp)
        raise
    for tmp in copied.tmps:
        _unlink_quiet(tmp)
    return False


class CopyGone(FileNotFoundError):
    """The temporary copy to rename is gone (the staging folder emptied under the run)."""


def place_ahead(copied: Copied, dst: bytes) -> Copied | None:
    """``place_copy`` for a copy read ahead (``made_ahead(copied, placed=1)``): None
    when that copy is gone from the staging folder (none of its copies is left then)."""
    try:
        return place_copy(copied, dst, staged=True)
    except CopyGone:
        return None


def place_copy(copied: Copied, dst: bytes, staged: bool = False) -> Copied:
    """Give ``copied``'s first copy the name ``dst`` (atomically); the rest are the
    result's ``tmps``.  On failure none is left.  ``staged``: the copy is in the staging
    folder, which may be replaced under the run by a file, a link or a folder this process
    cannot enter (ENOTDIR, ELOOP, EACCES rather than ENOENT): the copy is gone all the
    same when it cannot be seen."""
    try:
        faults.point("rename")
        os.replace(copied.tmps[0], dst)
    except BaseException as exc:
        gone = isinstance(exc, OSError if staged else FileNotFoundError) \
            and not os.path.lexists(copied.tmps[0])
        for tmp in copied.tmps:
            _unlink_quiet(tmp)
        if gone:
            raise CopyGone(errno.ENOENT, os.strerror(errno.ENOENT), copied.tmps[0]) from exc
        raise
    assert copied.sha256 is not None
    return copied._replace(tmps=copied.tmps[1:])


class Digest(Protocol):
    """What copies hash with (hashlib.sha256())."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


_ZEROS = bytes(CHUNK)
_SEEK_DATA = getattr(os, "SEEK_DATA", None)
_SEEK_HOLE = getattr(os, "SEEK_HOLE", None)


def data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """The data regions of ``fd`` below ``size``, as (start, end) pairs in order; what
    lies between them is a hole (reads as zeros, takes no disk space).  Asked of the
    filesystem with SEEK_DATA / SEEK_HOLE; where it cannot answer (EINVAL,
    EOPNOTSUPP, or no such call), the rest of the file is one data region.  Moves
    ``fd``'s offset."""
    pos = 0
    while pos < size:
        if _SEEK_DATA is None or _SEEK_HOLE is None:
            yield pos, size
            return
        try:
            start = os.lseek(fd, pos, _SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:     # no data at or after pos: the rest is a hole
                return
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
                yield pos, size              # not supported here: copy the rest plainly
                return
            raise
        if start >= size:
            return
        try:
            end = os.lseek(fd, start, _SEEK_HOLE)
        except OSError as exc:
            if exc.errno not in (errno.ENXIO, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            end = size
        end = size if end <= start else min(end, size)
        yield start, end
        pos = end


def copy_data(fd: int, out: int, digest: Digest | None = None,
              st: os.stat_result | None = None,
              progress: Callable[[int], None] | None = None,
              also: tuple[int, ...] = ()) -> str | None:
    """Copy all of ``fd`` into the new, empty file ``out``, leaving holes as holes:
    only the data regions are read and written, and ``out`` is then given the full
    size (ftruncate), so a sparse file stays sparse.  ``digest`` (a hashlib object)
    sees every logical byte, holes as zeros; its hexdigest is returned.  A file that
    shrinks during the copy ends the copy early (the caller's stat check catches it).
    ``st``: ``fd``'s fstat, when the caller has it (at its offset 0); ``progress``:
    told the bytes of each chunk read (holes move nothing); ``also``: more new, empty
    files given the same bytes and holes."""
    outs = (out, *also)
    if st is None:
        st = os.fstat(fd)
    size = st.st_size
    allocated = st.st_blocks * 512
    if size <= allocated < size + max(st.st_blksize, 4096):
        # as many bytes allocated as it has, and no more (most files): no hole to
        # keep, read it straight through without asking where its data is.  Blocks
        # reserved past the end (fallocate KEEP_SIZE, XFS's preallocation) count in
        # st_blocks too: a file with more blocks than bytes may have holes, so ask
        pos = _copy_run(fd, outs, 0, size, digest, progress)
        if pos < size:
            for each in outs:
                os.ftruncate(each, pos)      # it shrank while read
        return digest.hexdigest() if digest is not None else None
    pos = 0
    for start, end in data_extents(fd, size):
        if digest is not None:
            _hash_zeros(digest, start - pos)
        os.lseek(fd, start, os.SEEK_SET)
        for each in outs:
            os.lseek(each, start, os.SEEK_SET)
        pos = _copy_run(fd, outs, start, end, digest, progress)
        if pos < end:
            break                            # it shrank while read
    else:
        if digest is not None:
            _hash_zeros(digest, size - pos)
        pos = size
    for each in outs:
        os.ftruncate(each, pos)              # the trailing hole, if any
    return digest.hexdigest() if digest is not None else None


def _copy_run(fd: int, outs: tuple[int, ...], pos: int, end: int, digest: Digest | None,
              progress: Callable[[int], None] | None) -> int:
    """Copy ``fd`` into each of ``outs`` from their offsets (all at ``pos``) up to
    ``end``; returns where it stopped (before ``end``: the file shrank while read)."""
    while pos < end:
        chunk = os.read(fd, min(CHUNK, end - pos))
        if not chunk:
            break
        if digest is not None:
            digest.update(chunk)
        for out in outs:
            _write_all(out, chunk)
        pos += len(chunk)
        if progress is not None:
            progress(len(chunk))
    return pos


def _hash_zeros(digest: Digest, length: int) -> None:
    while length > 0:
        step = min(length, CHUNK)
        digest.update(_ZEROS if step == CHUNK else _ZEROS[:step])
        length -= step


def write_sparse(out: int, data: bytes, block: int = 4096) -> None:
    """Write ``data`` into the new, empty file ``out``, leaving each block-aligned run
    of zeros as a hole (as ``cp --sparse=always`` does): a version rebuilt in memory
    has no holes to ask the filesystem about, its holes are zeros."""
    size = len(data)
    pos, run = 0, None                       # run: where the data being gathered starts
    while pos < size:
        if pos % CHUNK == 0 and size - pos >= CHUNK and data[pos:pos + CHUNK] == _ZEROS:
            step, zero = CHUNK, True
        else:
            step = min(block, size - pos)
            zero = data[pos:pos + step] == _ZEROS[:step]
        if zero and run is not None:
            _write_at(out, data, run, pos)
            run = None
        elif not zero and run is None:
            run = pos
        pos += step
    if run is not None:
        _write_at(out, data, run, size)
    os.ftruncate(out, size)


class SparseSink:
    """Writes a stream of bytes into the new, empty file ``fd`` from offset 0, leaving
    each all-zero 4 KiB block (at a 4 KiB offset) as a hole; ``close`` sets the
    size.  A version rebuilt piece by piece keeps its holes and never sits whole in
    memory."""

    BLOCK = 4096

    def __init__(self, fd: int) -> None:
        self.fd, self.pos = fd, 0

    def write(self, data: bytes) -> None:
        view, n, i = memoryview(data), len(data), 0
        run = None                            # where the data being gathered starts
        while i < n:
            step = min(self.BLOCK - (self.pos + i) % self.BLOCK, n - i)
            zero = step == self.BLOCK and view[i:i + step] == _ZEROS[:self.BLOCK]
            if zero and run is not None:
                self._put(view[run:i], self.pos + run)
                run = None
            elif not zero and run is None:
                run = i
            i += step
        if run is not None:
            self._put(view[run:], self.pos + run)
        self.pos += n

    def _put(self, data: memoryview, at: int) -> None:
        while data:
            done = os.pwrite(self.fd, data, at)
            data, at = data[done:], at + done

    def close(self) -> None:
        os.ftruncate(self.fd, self.pos)


def _write_at(out: int, data: bytes, start: int, end: int) -> None:
    os.lseek(out, start, os.SEEK_SET)
    _write_all(out, memoryview(data)[start:end])


def _write_all(out: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(out, view):]


def write_bytes(dst: bytes, data: bytes, mode: int = 0o600, tmp_dir: bytes | None = None,
                sparse: bool = False) -> None:
    """Write ``data`` to ``dst`` atomically (diffs, records; ``sparse``: runs of zeros
    left as holes, for whole versions)."""
    tmp = _written(tmp_dir or os.path.dirname(dst), data, mode, sparse)
    try:
        faults.point("rename")
        os.replace(tmp, dst)
    except BaseException:
        _unlink_quiet(tmp)
        raise


def _written(folder: bytes, data: bytes, mode: int, sparse: bool) -> bytes:
    """``data`` in a new temporary file in ``folder`` (none is left if this fails)."""
    tmp = tmp_name(folder)
    faults.point("write")
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            if sparse:
                write_sparse(out, data)
            else:
                _write_all(out, data)
        finally:
            os.close(out)
    except BaseException:
        _unlink_quiet(tmp)
        raise
    return tmp


def place(tmp: bytes, dst: bytes, empty_folder: bool = False) -> None:
    """Give the finished temporary file ``tmp`` its final name ``dst``, a name no file
    has: stored objects are never renamed over (FileExistsError if one is there).
    ``empty_folder``: ``dst``'s folder was just made by this run and holds nothing, so
    a rename is enough (no link and unlink)."""
    faults.point("rename")
    try:
        if empty_folder:
            os.rename(tmp, dst)
            return
        try:
            os.link(tmp, dst)
        except FileExistsError:
            raise
        except OSError as exc:            # no hard links here (some FUSE, SMB): rename
            if exc.errno == errno.EXDEV:
                raise
            if os.path.lexists(dst):
                raise FileExistsError(errno.EEXIST, "exists", os.fsdecode(dst)) from None
            os.rename(tmp, dst)
            return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        # ``dst`` is on another filesystem than the staging folder (the history on a
        # mount of its own: a btrfs subvolume, another disk): the bytes are copied
        # into a temporary file beside ``dst``, which takes its name
        near = tmp_name(os.path.dirname(dst))
        faults.point("write")
        try:
            _copy_sparse(tmp, near)
            place(near, dst)
        except BaseException:
            _unlink_quiet(near)
            raise
    os.unlink(tmp)


def write_new(dst: bytes, data: bytes, tmp_dir: bytes, mode: int = 0o600,
              sparse: bool = False) -> None:
    """Write ``data`` as the new stored object ``dst`` (a name no file has)."""
    tmp = _written(tmp_dir, data, mode, sparse)
    try:
        place(tmp, dst)
    except BaseException:
        _unlink_quiet(tmp)
        raise


def settle(path: Path | bytes) -> None:
    """Put everything written on ``path``'s filesystem on stable storage: the files,
    and the folder entries that name them (``syncfs``; ``sync`` where it is missing).

    Called before each catalog commit that names new stored files, so a commit that
    survives a power cut never names a file the disk did not get (borg's SyncFile
    does the same per file).  POSIX promises no more than this: a disk that lies
    about its cache can still lose data, which the checksums verify checks then find.
    """
    faults.point("fsync")
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _syncfs()(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)


@functools.cache
def _syncfs() -> Callable[[int], int]:
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        fn: Callable[[int], int] = libc.syncfs
        return fn
    except AttributeError:                # not Linux: the whole system, once per commit
        def whole_system(_fd: int) -> int:
            os.sync()
            return 0
        return whole_system


def link_or_copy(existing: bytes, dst: bytes, tmp_dir: bytes | None = None) -> None:
    """Put a second name on a stored file (a hard link; a copy where links fail)."""
    tmp = tmp_name(tmp_dir or os.path.dirname(dst))
    try:
        try:
            os.link(existing, tmp)
        except OSError:
            _copy_sparse(existing, tmp)
        os.replace(tmp, dst)
    except BaseException:
        _unlink_quiet(tmp)
        raise


def _copy_sparse(src: bytes, dst: bytes) -> None:
    """Copy the stored (or staged) file ``src`` to the new file ``dst`` with its mode,
    owner and times, holes kept (where a hard link or a rename cannot be made); never
    through a link."""
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotAFile(errno.EINVAL, "is not a regular file", os.fsdecode(src))
        out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            copy_data(fd, out, st=st)
            os.fchmod(out, stat.S_IMODE(st.st_mode))
            _chown(out, st)
            os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(out)
    finally:
        os.close(fd)


class NotAFile(OSError):
    """A stored file is not a regular file any more (a folder, a link, a device...)."""


def open_under(root: bytes, rel: bytes) -> int:
    """Open ``root/rel`` for reading without following a symlink anywhere below
    ``root`` and without blocking or reading anything but a regular file: a backup
    changed by hand (a link to /dev/zero, a folder where a file was) is reported,
    never followed."""
    with Under(root) as under:
        return under.open(rel)


AREA_DEPTH = 2       # ``Under``'s root: destination/AREA/SOURCE


class Under:
    """Files below ``root`` opened as ``open_under`` opens them, each folder on the way
    opened once (a file's history read object after object: a folder's opening per
    object was most of the cost of checking a long chain)."""

    def __init__(self, root: bytes):
        self.root = root
        self.folders: dict[bytes, int] = {}

    def __enter__(self) -> Under:
        return self

    def __exit__(self, *_exc: object) -> None:
        for fd in self.folders.values():
            os.close(fd)
        self.folders.clear()

    def _folder(self, rel: bytes) -> int:
        fd = self.folders.get(rel)
        if fd is not None:
            return fd
        if not rel:
            fd = self._root()
        else:
            parent, _, name = rel.rpartition(b"/")
            try:
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             dir_fd=self._folder(parent))
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise NotAFile(exc.errno, "is not a folder (a link or a file where the "
                                   "backup has a folder)",
                                   os.fsdecode(os.path.join(self.root, rel))) from None
                raise
        self.folders[rel] = fd
        return fd

    def _root(self) -> int:
        """The root, an area's folder of one source (``destination/AREA/SOURCE``): those
        two folders are opened without following a link, as everything below them
        (helper-68: a link planted as ``versioned_backup/src`` led a restore's reading
        outside the backup); the destination's own path is the user's."""
        head, names = self.root.rstrip(b"/"), []
        for _ in range(AREA_DEPTH):
            head, _, name = head.rpartition(b"/")
            names.append(name)
        fd = os.open(head or b"/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        for name in reversed(names):
            head = os.path.join(head, name)
            try:
                inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise NotAFile(exc.errno, "is not a folder (a link or a file where the "
                                   "backup has a folder)", os.fsdecode(head)) from None
                raise
            finally:
                os.close(fd)
            fd = inner
        return fd

    def open(self, rel: bytes) -> int:
        parts = [p for p in rel.split(b"/") if p]
        if not parts:
            raise NotAFile(errno.EISDIR, "is a folder, expected a file", os.fsdecode(self.root))
        try:
            out = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                          dir_fd=self._folder(b"/".join(parts[:-1])))
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise NotAFile(exc.errno, "is a symlink, expected a file",
                               os.fsdecode(os.path.join(self.root, rel))) from None
            raise
        kind = stat.S_IFMT(os.fstat(out).st_mode)
        if kind != stat.S_IFREG:
            os.close(out)
            what = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a named pipe",
                    stat.S_IFSOCK: "a socket"}.get(kind, "a device")
            raise NotAFile(errno.EINVAL, f"is {what}, expected a file",
                           os.fsdecode(os.path.join(self.root, rel)))
        return out

    def sha256(self, rel: bytes) -> str:
        return _sha256_fd(self.open(rel))

    def read(self, rel: bytes) -> bytes:
        fd = self.open(rel)
        try:
            with os.fdopen(fd, "rb", closefd=False) as fh:
                return fh.read()
        finally:
            os.close(fd)


def inside(folder: bytes) -> bytes:
    """``folder`` as the prefix of its entries' paths: ``inside(f) + name`` is
    ``os.path.join(f, name)`` for a name from a listing (no slash), without its cost
    per file."""
    return folder if not folder or folder.endswith(b"/") else folder + b"/"


def real_dirs(base: bytes, rel: bytes) -> bytes | None:
    """Walk ``base/rel`` from the top with ``lstat`` (so no step follows a link): the
    first component that exists and is not a real folder, or None."""
    path = base
    for part in rel.split(b"/"):
        if not part:
            continue
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            return path
    return None


def ensure_real_dirs(base: bytes, rel: bytes) -> None:
    """Refuse to write below a link or a file planted where the backup has a folder."""
    bad = real_dirs(base, rel)
    if bad is not None:
        raise NotAFile(errno.ENOTDIR, "is not a folder (a link or a file where the backup "
                       "has a folder): not followed, nothing written there", os.fsdecode(bad))


def read_under(root: bytes, rel: bytes) -> bytes:
    with Under(root) as under:
        return under.read(rel)


def sha256_under(root: bytes, rel: bytes) -> str:
    return _sha256_fd(open_under(root, rel))


def _sha256_fd(fd: int) -> str:
    """The sha256 of what ``fd`` reads (closed after)."""
    digest = hashlib.sha256()
    try:
        while chunk := os.read(fd, CHUNK):
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


def sha256_of(path: bytes) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _chown(fd: int, st: os.stat_result) -> None:
    if os.geteuid() == 0:
        try:
            os.fchown(fd, st.st_uid, st.st_gid)
        except OSError:
            pass


def copy_link(src: bytes, dst: bytes) -> str:
    """Store the symlink ``src`` as a symlink (its target, never what it points to)."""
    target = os.readlink(src)
    tmp = tmp_name(os.path.dirname(dst))
    os.symlink(target, tmp)
    try:
        st = os.lstat(src)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        os.replace(tmp, dst)
    except BaseException:
        _unlink_quiet(tmp)
        raise
    return os.fsdecode(target)


def remove(path: bytes) -> int:
    """Remove a file, link or whole folder; return how many files went."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return 1
    _make_tree_writable(path)
    count = 0
    for _root, dirs, files in os.walk(path):
        count += len(files)
        for name in dirs:  # a symlink to a folder is listed here: count it as a file
            if os.path.islink(os.path.join(_root, name)):
                count += 1
    shutil.rmtree(path)
    return count


def _make_tree_writable(path: bytes) -> None:
    """rmtree lists, enters and writes each folder: one without those rights for its
    owner (a protected 0555 folder; a 0600 or 0000 one, its source's mode) blocks a run
    that is not root.  Each gets them, from the top down (os.walk would pass over a
    folder it cannot list, and everything below it)."""
    folders = [path]
    while folders:
        folder = folders.pop()
        st = os.lstat(folder)
        if not stat.S_ISDIR(st.st_mode):
            continue
        if st.st_mode & stat.S_IRWXU != stat.S_IRWXU:
            os.chmod(folder, stat.S_IMODE(st.st_mode) | stat.S_IRWXU)
        with os.scandir(folder) as entries:
            folders.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))


def kept_mode(mode: int, protected: bool) -> int:
    """The permission bits a stored copy of an entry with ``mode`` has (a protected
    backup keeps them without the write bits: ``doit protect``)."""
    return stat.S_IMODE(mode) & ~0o222 if protected else stat.S_IMODE(mode)


def set_file_meta(path: bytes, now: os.stat_result, want: AnyStat,
                  protected: bool = False) -> bool:
    """Give a stored copy (stat ``now``) the mode, owner and mtime of ``want``, writing
    only what differs (a no-change run changes nothing); True if it wrote anything."""
    wrote = False
    if stat.S_IMODE(now.st_mode) != kept_mode(want.st_mode, protected):
        os.chmod(path, stat.S_IMODE(want.st_mode))
        wrote = True
    if os.geteuid() == 0 and (now.st_uid, now.st_gid) != (want.st_uid, want.st_gid):
        os.lchown(path, want.st_uid, want.st_gid)
        wrote = True
    if now.st_mtime_ns != want.st_mtime_ns:
        os.utime(path, ns=(want.st_atime_ns, want.st_mtime_ns), follow_symlinks=False)
        wrote = True
    return wrote


def set_folder_meta(path: bytes, st: os.stat_result, protected: bool = False) -> None:
    """Give a mirror folder its source folder's mode and mtime (after its contents),
    writing only what differs."""
    now = os.lstat(path)
    if not stat.S_ISDIR(now.st_mode):
        return
    if stat.S_IMODE(now.st_mode) != stat.S_IMODE(st.st_mode) and \
            stat.S_IMODE(now.st_mode) != kept_mode(st.st_mode, protected):
        os.chmod(path, stat.S_IMODE(st.st_mode))
    if now.st_mtime_ns != st.st_mtime_ns:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _unlink_quiet(path: bytes) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def written_size(path: bytes, size: int) -> int:
    """What writing ``path`` (of ``size`` bytes) took on disk: its allocated blocks, at
    most its size (a sparse file's holes are not written; a small file's last block is
    not all data)."""
    try:
        st = os.lstat(path)
    except OSError:
        return size
    return min(st.st_size, st.st_blocks * 512)


def same_content(a: bytes, b: bytes) -> str | None:
    """The sha256 of the bytes two regular files both hold, or None when they differ.
    Read, never remembered (the standard library's filecmp caches answers by size and
    mtime, which a swap of two files of equal size and mtime defeats), never through a
    link."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    digest = hashlib.sha256()
    fa = os.open(a, flags)
    try:
        fb = os.open(b, flags)
        try:
            if not (stat.S_ISREG(os.fstat(fa).st_mode) and stat.S_ISREG(os.fstat(fb).st_mode)):
                return None
            while True:
                one, two = os.read(fa, CHUNK), os.read(fb, CHUNK)
                if one != two:
                    return None
                if not one:
                    return digest.hexdigest()
                digest.update(one)
        finally:
            os.close(fb)
    finally:
        os.close(fa)
