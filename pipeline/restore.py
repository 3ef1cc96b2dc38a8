"""Restore: a file or a folder as it was at a time, into a folder of the user's.

Safety first: every name is checked (no ``..``, no ``/``, nothing empty: a
tampered catalog cannot write outside DIR), no existing symlink in DIR is ever
followed, symlinks are restored last, and without ``--force`` nothing is
written at all when any target already exists.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from . import store
from .catalog import CONTENT_KINDS, Catalog, Row
from .errors import SnapbackError, UsageError
from .paths import Target
from .rebuild import RebuildError, rebuild


@dataclass(frozen=True)
class Item:
    rel: bytes                  # below the restored path's parent, e.g. b"docs/a.txt"
    kind: str                   # file | link | dir
    mode: int | None
    mtime_ns: int | None
    target: bytes | None = None          # link target
    row: Row | None = None               # versioned: the version to rebuild
    history: tuple[Row, ...] = ()
    source_file: bytes | None = None     # snapshot: the mirror file to copy


class Conflict(UsageError):
    pass


def _safe(rel: bytes) -> bytes:
    parts = rel.split(b"/")
    if not rel or any(p in (b"", b".", b"..") for p in parts):
        raise SnapbackError(f"refusing the stored name {os.fsdecode(rel)!r}: not a plain path")
    return rel


def versioned_items(catalog: Catalog, target: Target, at: float | None) -> list[Item]:
    """What the versioned history holds for ``target`` at time ``at`` (None: latest)."""
    rel = os.fsencode(target.rel)
    rows = catalog.rows_under(target.source.name, rel)
    histories: dict[bytes, list[Row]] = {}
    for row in rows:
        histories.setdefault(row.path, []).append(row)
    items: list[Item] = []
    base = rel.rpartition(b"/")[0]
    for path, history in histories.items():
        state = [r for r in history if at is None or r.recorded <= at]
        if not state or not state[-1].live:
            continue
        row = state[-1]
        out = path[len(base) + 1:] if base else path
        if row.entry == "file":
            items.append(Item(out, "file", row.mode, row.mtime_ns, row=row,
                              history=tuple(h for h in history if h.id <= row.id)))
        elif row.entry == "link":
            items.append(Item(out, "link", row.mode, row.mtime_ns, target=row.target))
        else:
            items.append(Item(out, "dir", row.mode, row.mtime_ns))
    if rel and items and not any(i.rel == os.fsencode(os.path.basename(target.rel)) for i in items):
        # the folder itself has no row (the source root's own folder): restore it plainly
        items.append(Item(os.fsencode(os.path.basename(target.rel)), "dir", None, None))
    return items


def snapshot_items(mirror_root: Path, target: Target) -> list[Item]:
    """What the snapshot mirror holds for ``target`` now."""
    top = os.fsencode(mirror_root / target.rel if target.rel else mirror_root)
    if not os.path.lexists(top):
        return []
    name = os.fsencode(os.path.basename(target.rel)) if target.rel else b""
    items: list[Item] = []

    def add(path: bytes, rel: bytes) -> None:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            items.append(Item(rel, "link", st.st_mode, st.st_mtime_ns, target=os.readlink(path)))
        elif stat.S_ISDIR(st.st_mode):
            if rel:
                items.append(Item(rel, "dir", st.st_mode, st.st_mtime_ns))
            for entry in sorted(os.listdir(path)):
                if not store.is_tmp(os.fsdecode(entry)):
                    add(os.path.join(path, entry), rel + b"/" + entry if rel else entry)
        elif stat.S_ISREG(st.st_mode):
            items.append(Item(rel, "file", st.st_mode, st.st_mtime_ns, source_file=path))

    add(top, name)
    return items


def conflicts(items: list[Item], to: Path) -> list[str]:
    """Targets that already exist (a folder that exists as a folder is no conflict)."""
    out = []
    for item in items:
        path = os.path.join(os.fsencode(to), _safe(item.rel))
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if item.kind == "dir" and stat.S_ISDIR(st.st_mode):
            continue
        out.append(os.fsdecode(path))
    return out


def restore(items: list[Item], to: Path, root: Path, force: bool) -> int:
    """Write ``items`` below ``to``; return how many files and links were written."""
    clash = conflicts(items, to)
    if clash and not force:
        shown = "\n  ".join(clash[:20]) + ("\n  ..." if len(clash) > 20 else "")
        raise Conflict(f"{len(clash)} path(s) exist already; nothing was written "
                       f"(--force overwrites them):\n  {shown}")
    to_b = os.fsencode(os.path.realpath(to))       # DIR itself is the user's choice
    os.makedirs(to_b, exist_ok=True)
    order = {"dir": 0, "file": 1, "link": 2}          # symlinks last, never followed
    written = 0
    for item in sorted(items, key=lambda i: (order[i.kind], i.rel)):
        path = os.path.join(to_b, _safe(item.rel))
        parent = _make_parents(to_b, item.rel, force)
        if item.kind == "dir":
            if os.path.islink(path) and force:
                os.unlink(path)
            if not os.path.isdir(path):
                if os.path.lexists(path):
                    store.remove(path)
                os.mkdir(path, 0o700)
            _check_dir(path, force)
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            store.remove(path)                           # --force: a folder where a file was
        if item.kind == "link":
            assert item.target is not None
            tmp = store.tmp_name(parent)
            os.symlink(item.target, tmp)
            os.replace(tmp, path)
            if item.mtime_ns is not None:
                os.utime(path, ns=(item.mtime_ns, item.mtime_ns), follow_symlinks=False)
        else:
            data = _content(item, root)
            store.write_bytes(path, data, mode=0o600)
            if item.mode is not None:
                os.chmod(path, stat.S_IMODE(item.mode))
            if item.mtime_ns is not None:
                os.utime(path, ns=(item.mtime_ns, item.mtime_ns))
        written += 1
    for item in sorted((i for i in items if i.kind == "dir"), key=lambda i: i.rel, reverse=True):
        path = os.path.join(to_b, item.rel)
        if item.mode is not None:
            os.chmod(path, stat.S_IMODE(item.mode))
        if item.mtime_ns is not None:
            os.utime(path, ns=(item.mtime_ns, item.mtime_ns))
    return written


def _content(item: Item, root: Path) -> bytes:
    if item.source_file is not None:
        with open(item.source_file, "rb") as fh:
            return fh.read()
    assert item.row is not None and item.row.kind in CONTENT_KINDS
    try:
        return rebuild(root, list(item.history), item.row)
    except RebuildError as exc:
        raise SnapbackError(f"cannot rebuild {os.fsdecode(item.rel)}: {exc}") from None


def _make_parents(to: bytes, rel: bytes, force: bool) -> bytes:
    """Create the folders above ``rel`` inside ``to``, never through a symlink."""
    path = to
    for part in rel.split(b"/")[:-1]:
        path = os.path.join(path, part)
        if os.path.islink(path):
            if not force:
                raise SnapbackError(f"refusing to write through the symlink {os.fsdecode(path)}")
            os.unlink(path)
        if not os.path.exists(path):
            os.mkdir(path, 0o700)
        _check_dir(path, force)
    return path


def _check_dir(path: bytes, force: bool) -> None:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise SnapbackError(f"refusing to write into {os.fsdecode(path)}: not a plain folder")
