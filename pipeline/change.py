"""The one rule that says whether a source entry is already in the backup.

A file is skipped only when the backup records a stored copy whose metadata
matches the source now.  doit's checker (``pipeline.doit_glue``) and the
actions (``snapshot``, ``versioned``) both ask this module, so they cannot
disagree.

``checker: hash`` (the default) compares size, mtime_ns, mode, ctime_ns and
inode, as restic and borg do: a file swapped for a twin of the same size and
mtime (``tar x``, ``cp -p``, ``unzip``) has another inode or ctime, and a
chmod changes mode and ctime.  When they differ the action compares content,
so a touched, unchanged file gets no new version.  ``checker: mtime`` is
rsync's quick check (size and mtime) plus the mode.
"""

from __future__ import annotations

import os

from .catalog import Stored

Key = tuple


def key(st: os.stat_result, checker: str) -> Key:
    """What is compared of an entry's lstat."""
    if checker == "mtime":
        return (st.st_size, st.st_mtime_ns, st.st_mode)
    return (st.st_size, st.st_mtime_ns, st.st_mode, st.st_ctime_ns, st.st_ino)


def stored_key(stored: Stored, checker: str) -> Key:
    """The same, of what the backup recorded when it stored the entry."""
    if checker == "mtime":
        return (stored.size, stored.mtime_ns, stored.mode)
    return (stored.size, stored.mtime_ns, stored.mode, stored.ctime_ns, stored.ino)


def unchanged(stored: Stored | None, st: os.stat_result, checker: str) -> bool:
    """Is the entry ``st`` exactly what the backup recorded (same kind, same key)?"""
    if stored is None:
        return False
    return stored_key(stored, checker) == key(st, checker)
