"""Protection: the backup read-only between runs, and runs that still update it.

`doit protect` takes every write bit off the mirror and the history (a 0644
file becomes 0444, a 0600 secret 0400: no bit is ever added) and leaves a
marker; `doit unprotect` gives the owner write permission back.  A backup run
on a protected backup makes writable only the folders it writes into, for the
moment it writes, and takes the write bits off again, with what it wrote.  A
no-change run touches no permission.  `.snapback/` stays writable by the
owner (the lock, the catalog); the destination itself stays 0700.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

from .layout import AREAS, META

WRITE = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH


def marker(meta_dir: Path) -> Path:
    return meta_dir / "protected"


def opening(meta_dir: Path) -> Path:
    """Present while a run may hold folders of a protected backup writable (from its
    taking the lock to its end): one a killed run left says the whole backup is to be
    protected again, by the next run that takes the lock."""
    return meta_dir / "opening"


def raise_flag(meta_dir: Path) -> tuple[bool, str | None]:
    """Put up the ``opening`` flag: (whether one was there already, a killed run's,
    whatever it is now: a link or a folder in its place counts too; where a folder
    that stood there was moved, ``lower_flag``).  Raises OSError when the flag cannot be
    made; the answer is then lost with it, so the caller takes it as True."""
    flag = opening(meta_dir)
    there = os.path.lexists(flag)
    moved = None
    if there and not stat.S_ISREG(os.lstat(flag).st_mode):
        moved = lower_flag(meta_dir)
    fd = os.open(flag, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.close(fd)
    return there, moved


def lower_flag(meta_dir: Path) -> str | None:
    """Take the ``opening`` flag down, whatever stands in its place, never followed and
    never entered (helper-56: a walk through a folder there could meet a mount point,
    or too deep a tree): an empty folder is removed, any other is moved aside in
    ``.snapback`` (``opening.N``), whose name is returned for the run to say."""
    flag = opening(meta_dir)
    try:
        if not stat.S_ISDIR(os.lstat(flag).st_mode):
            flag.unlink()
            return None
        os.rmdir(flag)
        return None
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    number = 1
    while os.path.lexists(aside := meta_dir / f"opening.{number}"):
        number += 1
    os.rename(flag, aside)
    return str(aside)


def is_protected(meta_dir: Path, plan_says: bool) -> bool:
    return plan_says or marker(meta_dir).exists()


def read_only(path: bytes | str, st: os.stat_result | None = None) -> None:
    """Take the write bits off one file or folder (never a symlink's target)."""
    st = st or os.lstat(path)
    if not stat.S_ISLNK(st.st_mode) and st.st_mode & WRITE:
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~WRITE)


def _chmod_all(destination: Path, new_mode: Callable[[int], int | None]) -> int:
    """Apply ``new_mode(mode) -> mode | None`` to everything in the mirror and the
    history (never a symlink); return how many entries changed."""
    changed = 0
    for area in AREAS:
        for dirpath, dirnames, filenames in os.walk(destination / area):
            for path in [*(os.path.join(dirpath, n) for n in filenames + dirnames), dirpath]:
                st = os.lstat(path)
                mode = None if stat.S_ISLNK(st.st_mode) else new_mode(stat.S_IMODE(st.st_mode))
                if mode is not None:
                    os.chmod(path, mode)
                    changed += 1
    return changed


def protect(destination: Path) -> int:
    # the marker first: a backup whose modes changed is one every run knows is protected
    # (a marker that cannot be written changes nothing)
    marker(destination / META).touch(mode=0o600)
    return _chmod_all(destination, lambda mode: mode & ~WRITE if mode & WRITE else None)


def unprotect(destination: Path) -> int:
    meta = destination / META
    if marker(meta).exists() and not os.access(meta, os.W_OK | os.X_OK):
        # the marker could not be removed after the modes: change none
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(marker(meta)))
    changed = _chmod_all(destination, lambda mode: None if mode & stat.S_IWUSR
                         else mode | stat.S_IWUSR)
    marker(meta).unlink(missing_ok=True)
    return changed


class Opened:
    """Folders a run made writable, to be made read-only again when it is done."""

    def __init__(self, protected: bool):
        self.protected = protected
        self.paths: list[bytes] = []

    def folder(self, path: bytes) -> None:
        """Make an existing folder writable for the run (and remember it)."""
        st = os.lstat(path)
        if not st.st_mode & stat.S_IWUSR or not st.st_mode & stat.S_IXUSR:
            os.chmod(path, stat.S_IMODE(st.st_mode) | stat.S_IWUSR | stat.S_IXUSR)
        if self.protected:
            self.paths.append(path)

    def makedirs(self, path: bytes) -> None:
        """os.makedirs that can create below read-only folders."""
        missing = []
        probe = path
        while True:                  # never through a symlink: lstat, not isdir
            try:
                st = os.lstat(probe)
            except FileNotFoundError:
                missing.append(probe)
                probe = os.path.dirname(probe)
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, "not a folder in the backup "
                                         "(a symlink or a file where a folder belongs)",
                                         os.fsdecode(probe))
            break
        if not missing:
            if self.protected:
                self.folder(path)
            return
        self.folder(probe)
        for folder in reversed(missing):
            os.mkdir(folder, 0o700)
            if self.protected:
                self.paths.append(folder)

    def wrote(self, path: bytes) -> None:
        if self.protected:
            self.paths.append(path)

    def close(self) -> None:
        """Take the write bits off again: files first, then folders, deepest first."""
        for path in sorted(set(self.paths), key=len, reverse=True):
            try:
                read_only(path)
            except FileNotFoundError:
                pass
        self.paths.clear()
