"""Verify: every stored object against the checksum the catalog recorded.

Plain: each baseline, diff and full copy against the sha256 of its own bytes,
each current copy against its last version, each mirror file against the sha256
of the copy made.  ``--deep`` also rebuilds every version of every file.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .catalog import CONTENT_KINDS, Catalog, Row
from .rebuild import object_path, versions
from .store import sha256_of


@dataclass(frozen=True)
class Problem:
    what: str        # missing | corrupt | unrebuildable
    path: str        # "<source>/<path>"
    detail: str


def _hash(path: bytes) -> str | None:
    try:
        return sha256_of(path)
    except FileNotFoundError:
        return None


def verify(destination: Path, catalog: Catalog, deep: bool) -> tuple[int, list[Problem]]:
    """(objects checked, problems found)."""
    problems: list[Problem] = []
    checked = 0
    histories: dict[tuple[str, bytes], list[Row]] = {}
    for row in catalog.all_rows():
        histories.setdefault((row.source, row.path), []).append(row)
    for (source, path), history in histories.items():
        root = destination / "versioned_backup" / source
        label = f"{source}/{os.fsdecode(path)}"
        for row in history:
            if row.kind not in CONTENT_KINDS:
                continue
            checked += 1
            obj = object_path(root, row)
            digest = _hash(obj)
            want = row.object_sha256 or row.sha256
            if digest is None:
                problems.append(Problem("missing", label, os.fsdecode(obj)))
            elif digest != want:
                problems.append(Problem("corrupt", label, f"{os.fsdecode(obj)} (checksum mismatch)"))
        problems += _check_current(root, label, history)
        checked += 1
        if deep:
            for row, _data, error in versions(root, history):
                if error is not None:
                    problems.append(Problem("unrebuildable", label, f"version {row.time}: {error}"))
    for source, folder, name, size, _mtime, sha, _mode in catalog.mirror_rows():
        checked += 1
        rel = folder + b"/" + name if folder else name
        path = os.path.join(os.fsencode(destination / "system_snapshot" / source), rel)
        label = f"{source}/{os.fsdecode(rel)}"
        digest = _hash(path)
        if digest is None:
            problems.append(Problem("missing", label, os.fsdecode(path)))
        elif sha is not None and digest != sha:
            problems.append(Problem("corrupt", label, f"{os.fsdecode(path)} (checksum mismatch)"))
    return checked, problems


def _check_current(root: Path, label: str, history: list[Row]) -> list[Problem]:
    """The current copy must hold the last version (a link: the last target)."""
    live = [r for r in history if r.kind != "deleted"]
    if not live or live[-1].entry == "dir" or live[-1].store is None:
        return []
    last = live[-1]
    path = os.path.join(os.fsencode(root), last.store, last.name)
    if last.entry == "link":
        try:
            if os.readlink(path) != last.target:
                return [Problem("corrupt", label, f"{os.fsdecode(path)} (wrong link target)")]
        except OSError:
            return [Problem("missing", label, os.fsdecode(path))]
        return []
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return [Problem("corrupt", label, f"{os.fsdecode(path)} (not a file)")]
    except FileNotFoundError:
        return [Problem("missing", label, os.fsdecode(path))]
    if _hash(path) != last.sha256:
        return [Problem("corrupt", label, f"{os.fsdecode(path)} (current copy does not match "
                        f"version {last.time})")]
    return []
