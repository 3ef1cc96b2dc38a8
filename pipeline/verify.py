"""Verify: every stored object against the checksum the catalog recorded.

Plain: each baseline, diff and full copy against the sha256 of its own bytes,
each newest version's whole copy against that version, each mirror file against
the sha256 of the copy made.  ``--deep`` also rebuilds every version of every file.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from . import layout
from .catalog import CONTENT_KINDS, Catalog
from .rebuild import checked_versions
from .store import NotAFile, is_tmp, sha256_under


@dataclass(frozen=True)
class Problem:
    what: str        # missing | corrupt | unrebuildable | changed kind | unreadable
    path: str        # "<source>/<path>"
    detail: str


def _hash(root: bytes, rel: bytes) -> str | None:
    """sha256 of a stored file, never through a link, never of a device: None when
    it is missing; ``NotAFile`` when it is something else now."""
    try:
        return sha256_under(root, rel)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None


def _check(root: bytes, rel: bytes, want: str | None, label: str,
           problems: list[Problem]) -> None:
    path = os.fsdecode(os.path.join(root, rel))
    try:
        digest = _hash(root, rel)
    except NotAFile as exc:
        problems.append(Problem("changed kind", label, f"{exc.filename}: {exc.strerror}"))
        return
    except OSError as exc:
        problems.append(Problem("unreadable", label, f"{path}: {exc.strerror or exc}"))
        return
    if digest is None:
        problems.append(Problem("missing", label, path))
    elif want is not None and digest != want:
        problems.append(Problem("corrupt", label, f"{path} (checksum mismatch)"))


# What rclone writes a file under until it is whole (``--partial-suffix``, its
# default): ``<name>.<8 hex digits>.partial``, renamed when done; a killed fetch
# leaves it.  A user's file of such a name is one the catalog names, never a leftover.
_PARTIAL = re.compile(rb"\.[0-9a-f]{8}\.partial\Z")


@dataclass(frozen=True)
class Leftover:
    path: str
    what: str             # "tmp": a killed run's temporary file; "partial": a killed fetch's


def leftovers(destination: Path, catalog: Catalog) -> list[Leftover]:
    """Temporary files a killed run left in the backup: ``.~snapback-*.tmp`` anywhere,
    whatever is in the staging folder, and a killed fetch's rclone ``*.partial``
    files that the catalog does not name; never through a link.  The walk comes
    first: the catalog is read only when a ``*.partial`` name is found (a set of
    every stored path would be a set of a million names in a big home)."""
    dest = os.fsencode(destination)
    found: list[Leftover] = []
    partial: list[bytes] = []
    for area in (layout.MIRROR, layout.HISTORY, os.path.join(layout.META, layout.STAGING)):
        top = os.path.join(dest, os.fsencode(area))
        if not layout.real_dir(top):
            continue
        staging = area.endswith(layout.STAGING)
        for dirpath, dirnames, filenames in os.walk(top):    # (os.walk never follows)
            links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
            for name in (*filenames, *links):              # (a link to a folder: dirnames)
                path = os.path.join(dirpath, name)
                if staging or is_tmp(os.fsdecode(name)):
                    found.append(Leftover(os.fsdecode(path), "tmp"))
                elif _PARTIAL.search(name):
                    partial.append(path)
            if staging:
                found += [Leftover(os.fsdecode(os.path.join(dirpath, d)), "tmp")
                          for d in dirnames if d not in links]
                dirnames.clear()
    if partial:
        named = _named(dest, catalog, set(partial))
        found += [Leftover(os.fsdecode(p), "partial") for p in partial if p not in named]
    return sorted(found, key=lambda left: left.path)


def _named(dest: bytes, catalog: Catalog, paths: set[bytes]) -> set[bytes]:
    """Which of ``paths`` (in the destination) the catalog names, read row by row."""
    named: set[bytes] = set()
    for history in catalog.histories():
        for row in history:
            if row.store is None:
                continue
            root = os.path.join(dest, os.fsencode(layout.HISTORY), os.fsencode(row.source))
            for name in (row.object, row.copy):
                if name is not None and os.path.join(root, row.store, name) in paths:
                    named.add(os.path.join(root, row.store, name))
    for source, folder, name in catalog.iter_mirror_names():
        path = os.path.join(dest, os.fsencode(layout.MIRROR), os.fsencode(source), folder, name)
        if path in paths:
            named.add(path)
    return named


def _unrecorded(mirror: bytes, rel: bytes, source: Path | None, mtime_ns: int | None) -> bool:
    """Is this mirror file, which does not hold the bytes its record names, a copy of
    the source file as it is now (same size and mtime), made after that record (another
    mtime)?  A run stopped between putting the copy in place and recording it leaves
    that; the next run records it.  Not damage: a restore of it gives the source's
    bytes of now.  (An edit in the mirror, or a source that is gone: damage.)"""
    if source is None:
        return False
    try:
        copy = os.lstat(os.path.join(mirror, rel))
        now = os.lstat(os.path.join(os.fsencode(source), rel))
    except OSError:
        return False
    return stat.S_ISREG(now.st_mode) and stat.S_ISREG(copy.st_mode) and \
        (copy.st_size, copy.st_mtime_ns) == (now.st_size, now.st_mtime_ns) and \
        now.st_mtime_ns != mtime_ns


def verify(destination: Path, catalog: Catalog, deep: bool,
           sources: dict[str, Path] | None = None
           ) -> tuple[int, list[Problem], list[str]]:
    """(objects checked, problems found, mirror files a stopped run copied and did not
    record: ``_unrecorded``, given the sources' folders by name)."""
    problems: list[Problem] = []
    unrecorded: list[str] = []
    checked = 0
    for history in catalog.histories():
        source, path = history[0].source, history[0].path
        root = layout.history_root(destination, source)
        label = f"{source}/{os.fsdecode(path)}"
        for row in history:
            if row.kind not in CONTENT_KINDS:
                continue
            checked += 1
            assert row.store is not None and row.object is not None
            _check(os.fsencode(root), os.path.join(row.store, row.object),
                   row.object_sha256 or row.sha256, label, problems)
            if row.copy is not None:
                checked += 1
                _check(os.fsencode(root), os.path.join(row.store, row.copy), row.sha256,
                       label, problems)
        if deep:
            for row, error in checked_versions(root, history):
                if error is not None:
                    problems.append(Problem("unrebuildable", label, f"version {row.time}: {error}"))
    for source, folder, name, _size, mtime, sha, _mode in catalog.iter_mirror_files():
        checked += 1
        rel = folder + b"/" + name if folder else name
        label = f"{source}/{os.fsdecode(rel)}"
        mirror = os.fsencode(layout.mirror_root(destination, source))
        found = len(problems)
        _check(mirror, rel, sha, label, problems)
        if len(problems) > found and problems[-1].what == "corrupt" and _unrecorded(
                mirror, rel, (sources or {}).get(source), mtime):
            problems.pop()
            unrecorded.append(label)
    return checked, problems, unrecorded
