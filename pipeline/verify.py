"""Verify: every stored object against the checksum the catalog recorded.

Plain: each baseline, diff and full copy against the sha256 of its own bytes,
each newest version's whole copy against that version, each mirror file against
the sha256 of the copy made.  ``--deep`` also rebuilds every version of every file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import layout
from .catalog import CONTENT_KINDS, Catalog, Row
from .rebuild import versions
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


def leftovers(destination: Path) -> list[str]:
    """Temporary files a killed run left in the backup (``.~snapback-*.tmp``; rclone's
    ``*.partial`` of a killed fetch): never through a link."""
    found = []
    for area in (layout.MIRROR, layout.HISTORY, os.path.join(layout.META, layout.STAGING)):
        top = os.path.join(os.fsencode(destination), os.fsencode(area))
        if not layout.real_dir(top):
            continue
        for dirpath, _dirnames, filenames in os.walk(top):    # (os.walk never follows)
            for name in filenames:
                text = os.fsdecode(name)
                if is_tmp(text) or text.endswith(".partial") or area.endswith(layout.STAGING):
                    found.append(os.fsdecode(os.path.join(dirpath, name)))
    return sorted(found)


def verify(destination: Path, catalog: Catalog, deep: bool) -> tuple[int, list[Problem]]:
    """(objects checked, problems found)."""
    problems: list[Problem] = []
    checked = 0
    histories: dict[tuple[str, bytes], list[Row]] = {}
    for row in catalog.all_rows():
        histories.setdefault((row.source, row.path), []).append(row)
    for (source, path), history in histories.items():
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
            for row, _data, error in versions(root, history):
                if error is not None:
                    problems.append(Problem("unrebuildable", label, f"version {row.time}: {error}"))
    for source, folder, name, _size, _mtime, sha, _mode in catalog.mirror_rows():
        checked += 1
        rel = folder + b"/" + name if folder else name
        label = f"{source}/{os.fsdecode(rel)}"
        _check(os.fsencode(layout.mirror_root(destination, source)), rel, sha, label, problems)
    return checked, problems
