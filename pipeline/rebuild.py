"""Rebuild any version of a file from its history: baseline, then diff after diff.

A full copy (binary, or text over ``max_diff_bytes``) stands alone; a diff
applies to the version before it.  Every rebuilt version is checked against
the sha256 the catalog recorded, so a damaged history is an error, never a
silently wrong file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from . import textdiff
from .catalog import CONTENT_KINDS, Row


class RebuildError(Exception):
    """A version cannot be rebuilt (missing or damaged object)."""


def rebuild(root: Path, history: list[Row], target: Row) -> bytes:
    """The bytes of ``target`` (a baseline, diff or full row of ``history``)."""
    if target.kind not in CONTENT_KINDS:
        raise RebuildError(f"{target.kind} row has no content")
    data: bytes | None = None
    for row in history:
        if row.kind not in CONTENT_KINDS:
            continue
        assert row.store is not None and row.object is not None
        obj = os.path.join(os.fsencode(root), row.store, row.object)
        try:
            with open(obj, "rb") as fh:
                stored = fh.read()
        except OSError as exc:
            raise RebuildError(f"{os.fsdecode(obj)}: {exc.strerror or exc}") from None
        if row.kind == "diff":
            if data is None:
                raise RebuildError(f"{os.fsdecode(obj)}: a diff with no version before it")
            try:
                data = textdiff.apply(data, stored)
            except textdiff.PatchError as exc:
                raise RebuildError(f"{os.fsdecode(obj)}: {exc}") from None
        else:
            data = stored
        if hashlib.sha256(data).hexdigest() != row.sha256:
            raise RebuildError(f"{os.fsdecode(obj)}: version {row.time} does not match "
                               "its recorded checksum")
        if row.id == target.id:
            return data
    raise RebuildError("version not found in its history")
