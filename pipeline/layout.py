"""Every path and name in the destination, and what belongs to whom.

The destination holds ``system_snapshot/<source>/`` (the mirror, ``MIRROR``),
``versioned_backup/<source>/`` (the history, ``HISTORY``) and ``.snapback/``
(``META``: the catalog, the run log, the lock, the staging folder ``tmp``).

In the versioned history:

Every path with a history has a history folder of its own (its ``store``,
recorded in the catalog): the baseline
``<stem>-baseline-<date><ext>``, ``<name>_diffs/<name>_v<stamp>.diff`` and
``<name>_versions/<name>_v<stamp>``.  A folder's children's history folders
sit in a *container* folder named after it.  What belongs to which path is what
the catalog says, never a name pattern:

- a store is owned by one path only; a container is never anybody's store
  (a file ``x`` and a folder ``x`` get ``x/`` and ``x~2/``, whichever came
  second taking the ``~N`` name, recorded in the catalog);
- what may be removed from a store is what no row of the source refers to
  (``sweep``), whatever it is called;
- a name too long for the filesystem once decorated (``-baseline-...``,
  ``_diffs``, ``_v<stamp>.diff``) is shortened to fit NAME_MAX: its start, a
  ``~`` and 8 hex digits of its sha1, then the decoration; the catalog records
  the shortened name as the object, so nothing else needs to know.

Nothing here follows a symlink: a history folder is entered only when
``lstat`` says it is a folder (``real_dir``).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

from . import faults, store

NAME_MAX = 255

MIRROR, HISTORY, META = "system_snapshot", "versioned_backup", ".snapback"
MODES = ("snapshot", "versioned")          # the backup modes, in the order they run
AREAS = (MIRROR, HISTORY)                   # what holds the user's files
CATALOG, RUNS, LOCK, STAGING = "catalog.sqlite3", "runs.jsonl", "lock", "tmp"


def mirror_root(destination: Path, source: str = "") -> Path:
    """The mirror (of one source, given its name)."""
    return destination / MIRROR / source if source else destination / MIRROR


def history_root(destination: Path, source: str = "") -> Path:
    """The versioned history (of one source, given its name)."""
    return destination / HISTORY / source if source else destination / HISTORY


def meta_dir(destination: Path) -> Path:
    return destination / META


def fit(name: bytes, decoration: bytes = b"") -> bytes:
    """``name + decoration``, shortened (``name`` only) to fit one path component."""
    if len(name) + len(decoration) <= NAME_MAX:
        return name + decoration
    tag = b"~" + hashlib.sha1(name).hexdigest()[:8].encode()
    keep = NAME_MAX - len(decoration) - len(tag)
    head = name[:keep]
    while head and not _complete_utf8(head):
        head = head[:-1]                          # never cut a character in two
    return head + tag + decoration


def _complete_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(data) - 3           # only a broken tail matters
    return True


def baseline_name(name: bytes, date: str) -> bytes:
    stem, dot, ext = name.rpartition(b".")
    if not dot or not stem or stem.endswith(b"."):    # no extension, or a dotfile
        stem, ext = name, b""
    else:
        ext = b"." + ext
    if len(ext) > 32:
        stem, ext = name, b""
    return fit(stem, b"-baseline-" + date.encode() + ext)


def version_names(name: bytes, stamp: str) -> tuple[bytes, bytes]:
    """The diff and full-copy names of one version, relative to the history folder."""
    tag = b"_v" + stamp.encode()
    return (diffs_dir(name) + b"/" + fit(name, tag + b".diff"),
            versions_dir(name) + b"/" + fit(name, tag))


def delta_name(name: bytes, stamp: str) -> bytes:
    """The binary delta of one version (librsync's format: ``rdiff patch`` applies it)."""
    return diffs_dir(name) + b"/" + fit(name, b"_v" + stamp.encode() + b".rdiff")


def diffs_dir(name: bytes) -> bytes:
    return fit(name, b"_diffs")


def versions_dir(name: bytes) -> bytes:
    return fit(name, b"_versions")


def alias_name(name: bytes, n: int) -> bytes:
    return fit(name, b"~" + str(n).encode())


def mount_table() -> dict[int, tuple[bytes, bytes]]:
    """The kernel's mounts, as /proc/self/mountinfo lists them (none where there is no
    such file): mount id -> (its root within its filesystem, its mount point), as bytes
    (space, tab, newline and backslash are written there in octal; a name in bytes
    that are not UTF-8 is read like any other: helper-63)."""
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    table: dict[int, tuple[bytes, bytes]] = {}
    for line in lines:
        fields = line.split(b" ")
        try:
            table[int(fields[0])] = (_unescape(fields[3]), _unescape(fields[4]))
        except (ValueError, IndexError):
            continue                              # (a line of another shape: the next)
    return table


def _unescape(field: bytes) -> bytes:
    return re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), field)


def mounts_under(destination: bytes, table: dict[int, tuple[bytes, bytes]] | None = None
                 ) -> list[tuple[bytes, os.stat_result]]:
    """The mount points below ``destination``, with their lstat (``mount_table``, or
    ``table`` read already): an area, a source's folder in one, or a folder deeper in
    one on a disk of its own (``versioned_backup/``, ``versioned_backup/<source>/photos``).
    (A btrfs subvolume is no mount point, and the destination's own filesystem holds
    it.)"""
    try:
        real = os.path.realpath(destination)
    except OSError:
        return []
    out: list[tuple[bytes, os.stat_result]] = []
    for _root, point in (mount_table() if table is None else table).values():
        if point.startswith(real + b"/"):
            try:
                st = os.lstat(point)
            except OSError:
                continue                   # (gone, or not ours to read)
            if stat.S_ISDIR(st.st_mode):
                out.append((point, st))
    return out


def real_dir(path: bytes) -> bool:
    """A folder, not a symlink to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def sweep(store_path: bytes, name: bytes, referenced: set[bytes], keep_current: bool,
          opening: Callable[[bytes], None] | None = None) -> int:
    """Remove from one history folder what no row refers to: objects of a killed run,
    renames a killed prune left.  ``referenced`` holds paths relative to the store.
    Only the store itself and its two version folders are looked into, and never
    through a symlink.  ``opening`` makes a folder writable before anything is removed
    from it (a protected backup's: ``protect.Opened.folder``).  Returns how many
    entries went."""
    removed = 0
    if not real_dir(store_path):
        return 0
    for sub in (b"", diffs_dir(name), versions_dir(name)):
        where = os.path.join(store_path, sub) if sub else store_path
        if sub and not real_dir(where):
            continue
        opened = opening is None
        for entry in os.listdir(where):
            rel = sub + b"/" + entry if sub else entry
            path = os.path.join(where, entry)
            if rel in referenced or (not sub and entry in (diffs_dir(name), versions_dir(name))):
                continue
            if not sub and entry == name and keep_current:
                continue
            if not sub and real_dir(path):
                continue                          # another path's history: never ours
            if not opened:
                assert opening is not None
                opening(where)
                opened = True
            faults.point("remove")
            store.remove(path)
            removed += 1
    return removed
