"""Rebuild any version of a file from its history: baseline, then diff after diff.

A full copy stands alone; a diff (text) or a delta (binary, or text over
``max_diff_bytes``: ``pipeline/bindelta.py``) applies to the version before it;
the newest version is also kept whole (its ``copy``), read directly when it
checks.  Every rebuilt version is checked against the sha256 the catalog
recorded, so a damaged history is an error, never a silently wrong file; the
versions before a damaged diff still rebuild.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from . import bindelta, store, textdiff
from .catalog import CHANGE_KINDS, CONTENT_KINDS, Row


class RebuildError(Exception):
    """A version cannot be rebuilt (missing or damaged object)."""


def object_path(root: Path, row: Row) -> bytes:
    assert row.store is not None and row.object is not None
    return os.path.join(os.fsencode(root), row.store, row.object)


def versions(root: Path, history: list[Row]) -> Iterator[tuple[Row, bytes | None, str | None]]:
    """Each content version of a history in order: (row, bytes, None) or (row, None, why)."""
    data: bytes | None = None
    broken: str | None = None
    for row in history:
        if row.kind not in CONTENT_KINDS:
            continue
        obj = object_path(root, row)
        assert row.store is not None and row.object is not None    # a content row
        try:                     # never through a link, never a device (a tampered backup)
            stored = store.read_under(os.fsencode(root), os.path.join(row.store, row.object))
        except OSError as exc:
            data, broken = None, f"{os.fsdecode(obj)}: {exc.strerror or exc}"
            yield row, None, broken
            continue
        if row.kind in CHANGE_KINDS:
            if data is None:
                yield row, None, f"{os.fsdecode(obj)}: the version before it cannot be rebuilt"
                continue
            try:
                data = textdiff.apply(data, stored) if row.kind == "diff" \
                    else bindelta.apply(data, stored)
            except (textdiff.PatchError, bindelta.DeltaError) as exc:
                data = None
                yield row, None, f"{os.fsdecode(obj)}: {exc}"
                continue
        else:
            data = stored
        if hashlib.sha256(data).hexdigest() != row.sha256:
            data = None
            yield row, None, f"{os.fsdecode(obj)}: rebuilt bytes do not match the checksum"
            continue
        yield row, data, None


def rebuild(root: Path, history: list[Row], target: Row) -> bytes:
    """The bytes of ``target`` (a baseline, diff or full row of ``history``; a ``meta``
    row, a new mode only, has the bytes of the content version before it)."""
    if target.kind == "meta":
        before = [r for r in history if r.id < target.id and r.kind in CONTENT_KINDS]
        if not before:
            raise RebuildError("no content version before this mode change")
        target = before[-1]
    if target.kind not in CONTENT_KINDS:
        raise RebuildError(f"{target.kind} row has no content")
    if target.copy is not None:              # the newest version, kept whole
        assert target.store is not None
        try:
            whole = store.read_under(os.fsencode(root), os.path.join(target.store, target.copy))
            if hashlib.sha256(whole).hexdigest() == target.sha256:
                return whole
        except OSError:
            pass                             # damaged or gone: from the chain
    for row, data, error in versions(root, [r for r in history if r.id <= target.id]):
        if row.id == target.id:
            if data is None:
                raise RebuildError(error or "cannot be rebuilt")
            return data
    raise RebuildError("version not found in its history")
