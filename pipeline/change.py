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

from collections.abc import Callable
from operator import attrgetter
from typing import Any

from .catalog import Stored
from .lstat import AnyStat

Key = tuple[Any, ...]
FIELDS = {"hash": ("size", "mtime_ns", "mode", "ctime_ns", "ino"),
          "mtime": ("size", "mtime_ns", "mode")}
# attrgetter: one C call per entry (a no-change run compares every file)
_OF_STAT = {rule: attrgetter(*(f"st_{f}" for f in fields)) for rule, fields in FIELDS.items()}
_OF_STORED = {rule: attrgetter(*fields) for rule, fields in FIELDS.items()}


def key_function(checker: str) -> Callable[[Any], Key]:
    """What is compared of an entry's lstat, as a function (for doit's checker)."""
    return _OF_STAT[checker]


def stored_key_function(checker: str) -> Callable[[Any], Key]:
    return _OF_STORED[checker]


def key(st: AnyStat, checker: str) -> Key:
    """What is compared of an entry's lstat."""
    return _OF_STAT[checker](st)


def unchanged(stored: Stored | None, st: AnyStat, checker: str) -> bool:
    """Is the entry ``st`` exactly what the backup recorded (same kind, same key)?"""
    if stored is None:
        return False
    return _OF_STORED[checker](stored) == _OF_STAT[checker](st)
