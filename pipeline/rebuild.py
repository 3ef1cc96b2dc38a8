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
from .catalog import CHANGE_KINDS, CONTENT_KINDS, WHOLE_KINDS, Row


class RebuildError(Exception):
    """A version cannot be rebuilt (missing or damaged object)."""


def object_path(root: Path, row: Row) -> bytes:
    assert row.store is not None and row.object is not None
    return os.path.join(os.fsencode(root), row.store, row.object)


def versions(root: Path, history: list[Row]) -> Iterator[tuple[Row, bytes | None, str | None]]:
    """Each content version of a history in order: (row, bytes, None) or (row, None, why)."""
    with store.Under(os.fsencode(root)) as under:     # (each folder opened once)
        yield from _versions(root, history, under)


def _versions(root: Path, history: list[Row], under: store.Under
              ) -> Iterator[tuple[Row, bytes | None, str | None]]:
    data: bytes | None = None
    broken: str | None = None
    for row in history:
        if row.kind not in CONTENT_KINDS:
            continue
        obj = object_path(root, row)
        assert row.store is not None and row.object is not None    # a content row
        try:                     # never through a link, never a device (a tampered backup)
            stored = under.read(os.path.join(row.store, row.object))
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


def content_row(history: list[Row], target: Row) -> Row:
    """The row whose bytes ``target`` has: itself, or for a ``meta`` row (a new mode
    or mtime alone) the content version before it."""
    if target.kind == "meta":
        before = [r for r in history if r.id < target.id and r.kind in CONTENT_KINDS]
        if not before:
            raise RebuildError("no content version before this mode change")
        return before[-1]
    if target.kind not in CONTENT_KINDS:
        raise RebuildError(f"{target.kind} row has no content")
    return target


def open_chain(root: bytes, history: list[Row], target: Row, fds: list[int]
               ) -> bindelta.Chain | None:
    """``target`` (a content row) as a ``bindelta.Chain``: its whole file, or the last
    whole object before it and the binary deltas after it, opened (never through a
    link) into ``fds``, which the caller closes.  None when a text diff is in the way
    (those files are rebuilt in memory).  Raises OSError, bindelta.DeltaError."""
    def opened(row: Row, rel: bytes) -> int:
        assert row.store is not None
        fds.append(store.open_under(root, os.path.join(row.store, rel)))
        return fds[-1]

    if target.whole is not None:
        return bindelta.Chain(opened(target, target.whole))
    content = [r for r in history if r.id <= target.id and r.kind in CONTENT_KINDS]
    start = max((i for i, r in enumerate(content) if r.kind in WHOLE_KINDS), default=None)
    if start is None or any(r.kind != "delta" for r in content[start + 1:]):
        return None
    first = content[start]
    assert first.object is not None
    chain = bindelta.Chain(opened(first, first.object))
    for row in content[start + 1:]:
        assert row.object is not None
        chain.apply(opened(row, row.object))
    return chain


STREAM_ABOVE = 64 << 20     # binary histories of bigger files are checked as streams


def checked_versions(root: Path, history: list[Row]) -> Iterator[tuple[Row, str | None]]:
    """Each content version of a history, and why it cannot be rebuilt (None: it
    can), in memory bounded whatever the file's size: a history with binary deltas
    of files over ``STREAM_ABOVE`` is read version by version through its stored
    files (``open_chain``); any other one in order, in memory (``versions``)."""
    content = [r for r in history if r.kind in CONTENT_KINDS]
    if not any(r.kind == "delta" and (r.size or 0) > STREAM_ABOVE for r in content):
        for row, _data, error in versions(root, history):
            yield row, error
        return
    base = os.fsencode(root)
    for row in content:
        fds: list[int] = []
        try:
            chain = open_chain(base, history, row._replace(copy=None), fds)
            if chain is None:
                rebuild(root, history, row._replace(copy=None))
                yield row, None
                continue
            digest, pos = hashlib.sha256(), 0
            while pos < chain.size:
                data = chain.read(bindelta.READ, pos)
                digest.update(data)
                pos += len(data)
            yield row, None if digest.hexdigest() == row.sha256 else \
                "rebuilt bytes do not match the checksum"
        except (OSError, bindelta.DeltaError, RebuildError) as exc:
            yield row, str(exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)
        finally:
            for fd in fds:
                os.close(fd)


def write_version(root: Path, history: list[Row], target: Row, out: int) -> None:
    """Write the bytes of ``target`` into the new, empty file ``out`` (holes kept),
    without holding them in memory where the history allows: a whole object (the
    newest version's copy, a baseline, a full copy) is copied, and a chain of binary
    deltas is read through (``open_chain``); a chain with text diffs (files up to
    ``max_diff_bytes``) is rebuilt in memory.  Every result is checked against the
    catalog's sha256 (RebuildError)."""
    target = content_row(history, target)
    base = os.fsencode(root)
    if target.whole is not None and _copy_checked(base, target, target.whole, out):
        return
    os.ftruncate(out, 0)
    fds: list[int] = []
    try:
        chain = open_chain(base, history, target._replace(copy=None), fds) \
            if target.kind == "delta" else None
        if chain is None:
            sink = store.SparseSink(out)
            sink.write(rebuild(root, history, target))
            sink.close()
            return
        digest, sink, pos = hashlib.sha256(), store.SparseSink(out), 0
        while pos < chain.size:
            data = chain.read(bindelta.READ, pos)
            digest.update(data)
            sink.write(data)
            pos += len(data)
        sink.close()
    except (OSError, bindelta.DeltaError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise RebuildError(f"{os.fsdecode(target.path)} as of {target.time}: {detail}") from None
    finally:
        for fd in fds:
            os.close(fd)
    if digest.hexdigest() != target.sha256:
        raise RebuildError(f"{os.fsdecode(target.path)} as of {target.time}: rebuilt bytes "
                           "do not match the checksum")


def _copy_checked(base: bytes, row: Row, rel: bytes, out: int) -> bool:
    """Copy a stored whole file into ``out``; whether its bytes were the version's."""
    assert row.store is not None
    try:
        fd = store.open_under(base, os.path.join(row.store, rel))
    except OSError:
        return False
    try:
        return store.copy_data(fd, out, hashlib.sha256()) == row.sha256
    finally:
        os.close(fd)


def rebuild(root: Path, history: list[Row], target: Row) -> bytes:
    """The bytes of ``target`` (a baseline, diff or full row of ``history``; a ``meta``
    row, a new mode only, has the bytes of the content version before it)."""
    target = content_row(history, target)
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
