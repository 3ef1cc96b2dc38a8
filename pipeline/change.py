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

import struct
from collections.abc import Callable
from itertools import chain
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


# -- a folder's listing, as a mode brought it in line ------------------------------
# When a mode brings a folder in line it keeps, beside the folder's signature, the walk's
# kept files, links and subfolders with each entry's lstat (``listing``; the catalog's
# ``listings``, tied to the folder's row by the signature).  A later walk that finds the
# folder changed compares its entries with that listing: an entry whose lstat is the one
# listed still matches its record, by the same argument that lets an unchanged signature
# skip the whole folder (any change to the folder's records drops its row, and a listing
# counts only beside the row of the signature it was kept with), and only the others are
# judged (``differing``).
_LISTED = _OF_STAT["hash"]           # every field of either checker's rule
_FIELDS = len(FIELDS["hash"])


def _keys(files: dict[str, Any], links: dict[str, Any]) -> list[tuple[int, ...]]:
    return [*map(_LISTED, files.values()), *map(_LISTED, links.values())]


def _names(files: dict[str, Any], links: dict[str, Any], subdirs: list[str]) -> bytes:
    """The names, as the listing keeps them (a name holds no NUL)."""
    return "\0\0".join(("\0".join(files), "\0".join(links), "\0".join(sorted(subdirs)))
                       ).encode("utf-8", "surrogateescape")


def listing(files: dict[str, Any], links: dict[str, Any], subdirs: list[str]) -> bytes | None:
    """The bytes a folder's listing is kept as: the names' length, the names, then each
    file's and link's lstat fields as 64-bit integers (None: a time or inode past 64
    bits).  Plain bytes, read back without trusting a length it holds (a listing damaged
    by hand is told apart, never a cause for a large allocation)."""
    keys = _keys(files, links)
    names = _names(files, links, subdirs)
    try:
        ints = struct.pack(f"<{len(keys) * _FIELDS}q", *chain.from_iterable(keys))
    except struct.error:
        return None
    return struct.pack("<Q", len(names)) + names + ints


def same_names(kept: bytes | None, files: dict[str, Any], links: dict[str, Any],
               subdirs: list[str]) -> bool:
    """Does the listing ``kept`` list exactly these files, links and subfolders?"""
    if kept is None:
        return False
    names = _names(files, links, subdirs)
    return len(kept) == 8 + len(names) + (len(files) + len(links)) * _FIELDS * 8 and \
        kept.startswith(struct.pack("<Q", len(names)) + names)


def differing(kept: bytes | None, now: bytes | None, files: dict[str, Any],
              links: dict[str, Any]) -> list[str] | None:
    """The files and links whose lstat in the listing ``now`` (of ``files`` and ``links``,
    as ``listing`` makes it) is not the one ``kept`` lists, or None when the folder does
    not hold the entries listed (one come or gone, a kind changed: every entry is judged
    then) or a listing cannot be read."""
    if kept is None or now is None:
        return None
    if kept == now:
        return []
    if len(kept) != len(now) or len(kept) < 8:
        return None
    start = 8 + int.from_bytes(now[:8], "little")
    if kept[:start] != now[:start]:          # (the names' length and the names)
        return None
    entry = f"{_FIELDS * 8}s"
    return [name for name, (was,), (is_,) in zip(
        chain(files, links), struct.iter_unpack(entry, kept[start:]),
        struct.iter_unpack(entry, now[start:]), strict=True) if was != is_]
