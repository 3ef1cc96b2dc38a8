"""Restore: a file or a folder as it was at a time, into a folder of the user's.

Safety first: every name is checked (no ``..``, no ``/``, nothing empty: a
tampered catalog cannot write outside DIR), no existing symlink in DIR is ever
followed, symlinks are restored last, and without ``--force`` nothing is
written at all when any target already exists.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from . import faults, store
from .catalog import CONTENT_KINDS, Catalog, Row
from .errors import SnapbackError, UsageError
from .paths import Target
from .rebuild import RebuildError, write_version
from .show import display


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


def versioned_items(catalog: Catalog, target: Target, upto: int | None
                    ) -> tuple[list[Item], list[bytes]]:
    """What the versioned history holds for ``target`` as of the row id ``upto`` (the
    state a run left, an exact version; None: the latest), and the paths (in the
    source) whose version then prune dropped: neither an older kept version nor
    nothing stands in for one of those."""
    rel = os.fsencode(target.rel)
    rows = catalog.rows_under(target.source.name, rel)
    histories: dict[bytes, list[Row]] = {}
    for row in rows:
        histories.setdefault(row.path, []).append(row)
    # per path, the newest trace of a dropped row at or below upto: (row id, was live,
    # was a folder's)
    traces: dict[bytes, tuple[int, bool, bool]] = {}
    for row_id, path, live, is_dir in catalog.pruned_under(target.source.name, rel):
        if upto is None or row_id <= upto:
            traces[path] = (row_id, live, is_dir)
    items: list[Item] = []
    lost: list[bytes] = []
    base = rel.rpartition(b"/")[0]
    for path in [*histories, *(p for p in traces if p not in histories)]:
        history = histories.get(path, [])
        state = [r for r in history if upto is None or r.id <= upto]
        trace = traces.get(path)
        if trace is not None and (not state or trace[0] > state[-1].id):
            if trace[1]:                   # its version then is no longer kept
                lost.append(path)
            continue
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
    # a folder is named only when nothing named lies below it (an empty folder then)
    above: set[bytes] = set()
    for path in lost:
        parent = path.rpartition(b"/")[0]
        while parent and parent not in above:
            above.add(parent)
            parent = parent.rpartition(b"/")[0]
    lost = [path for path in lost if not (traces[path][2] and path in above)]
    if rel and items and not any(i.rel == os.fsencode(os.path.basename(target.rel)) for i in items):
        # the folder itself has no row (the source root's own folder): restore it plainly
        items.append(Item(os.fsencode(os.path.basename(target.rel)), "dir", None, None))
    return items, lost


def exact_version(catalog: Catalog, target: Target, text: str) -> int | None:
    """The row id of ``target``'s version whose stamp is ``text`` (None: no such stamp).
    Stamps are unique per path: ``2026-11-23_14-30-15_2`` is the second version
    recorded in that second, exactly."""
    if not text or not target.rel:
        return None
    folder, _, name = os.fsencode(target.rel).rpartition(b"/")
    for row in catalog.history(target.source.name, folder, name):
        if row.time == text.strip():
            return row.id
    return None


def deleted_at(catalog: Catalog, target: Target) -> tuple[int, str] | None:
    """If ``target`` itself is deleted now: (its last live row, when it was deleted);
    else None."""
    folder, _, name = os.fsencode(target.rel).rpartition(b"/")
    rows = catalog.history(target.source.name, folder, name) if target.rel else []
    if not rows or rows[-1].live:
        return None
    live = [r for r in rows if r.live]
    if not live:
        return None
    return live[-1].id, rows[-1].time


def snapshot_items(mirror_root: Path, target: Target, catalog: Catalog | None = None,
                   protected: bool = False) -> list[Item]:
    """What the snapshot mirror holds for ``target`` now.  Modes are the source's
    as the catalog recorded them (a protected mirror is read-only itself)."""
    top = os.fsencode(mirror_root / target.rel if target.rel else mirror_root)
    # a path below a link (the mirror's copy of a source's symlink, or one planted in the
    # backup) is not in the mirror: nothing is read through it (helper-67)
    if store.real_dirs(os.fsencode(mirror_root.parent.parent), os.fsencode(os.path.join(
            mirror_root.parent.name, mirror_root.name, os.path.dirname(target.rel)))) \
            is not None or not os.path.lexists(top):
        return []
    name = os.fsencode(os.path.basename(target.rel)) if target.rel else b""
    base = os.fsencode(target.rel).rpartition(b"/")[0]
    modes: dict[bytes, int] = {}
    if catalog is not None and catalog.conn is not None:
        for src, folder, fname, _size, _mtime, _sha, mode in catalog.mirror_rows():
            if src == target.source.name and mode is not None:
                modes[folder + b"/" + fname if folder else fname] = mode
        for row in catalog.rows_under(target.source.name, os.fsencode(target.rel)):
            if row.entry == "dir" and row.mode is not None:
                modes[row.path] = row.mode if row.live else modes.get(row.path, row.mode)
    items: list[Item] = []

    def source_mode(rel: bytes, st: os.stat_result) -> int:
        full = base + b"/" + rel if base else rel
        if full in modes:
            return modes[full]
        return st.st_mode | stat.S_IWUSR if protected else st.st_mode

    def add(path: bytes, rel: bytes) -> None:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            items.append(Item(rel, "link", st.st_mode, st.st_mtime_ns, target=os.readlink(path)))
        elif stat.S_ISDIR(st.st_mode):
            if rel:
                items.append(Item(rel, "dir", source_mode(rel, st), st.st_mtime_ns))
            for entry in sorted(os.listdir(path)):
                if not store.is_tmp(os.fsdecode(entry)):
                    add(os.path.join(path, entry), rel + b"/" + entry if rel else entry)
        elif stat.S_ISREG(st.st_mode):
            items.append(Item(rel, "file", source_mode(rel, st), st.st_mtime_ns,
                              source_file=path))

    add(top, name)
    return items


def mirror_only(catalog: Catalog, target: Target, items: list[Item], mirror_root: Path,
                protected: bool) -> list[Item]:
    """What the mirror holds below ``target`` that the history never recorded (what
    the versioned mode leaves out by its own ignores: ``.git/`` by default)."""
    recorded = {row.path for row in catalog.rows_under(target.source.name,
                                                        os.fsencode(target.rel))}
    base = os.fsencode(target.rel).rpartition(b"/")[0]
    have = {i.rel for i in items}
    out = []
    for item in snapshot_items(mirror_root, target, catalog, protected):
        full = base + b"/" + item.rel if base else item.rel
        if item.rel not in have and full not in recorded:
            out.append(item)
    return out


def tops(items: list[Item]) -> list[str]:
    """The outermost paths of ``items``, as a person reads them (at most three)."""
    rels = sorted(i.rel for i in items)
    outer = [r for r in rels if not any(r.startswith(o + b"/") for o in rels if o != r)]
    shown = [display(os.fsdecode(r)) + ("/" if any(i.rel == r and i.kind == "dir"
                                                    for i in items) else "") for r in outer]
    return shown[:3] + ([f"and {len(shown) - 3} more"] if len(shown) > 3 else [])


def conflicts(items: list[Item], to: Path) -> list[str]:
    """Targets that already exist (a folder that exists as a folder is no conflict)."""
    out = []
    for item in items:
        path = os.path.join(os.fsencode(to), _safe(item.rel))
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        except NotADirectoryError:
            continue              # below a file where a folder goes: that file is the clash
        if item.kind == "dir" and stat.S_ISDIR(st.st_mode):
            continue
        out.append(os.fsdecode(path))
    return out


@dataclass
class Outcome:
    written: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)     # (path, why)


def restore(items: list[Item], to: Path, root: Path, force: bool) -> Outcome:
    """Write ``items`` below ``to``.  A file that cannot be rebuilt or written is
    named in the outcome and the rest is restored all the same."""
    clash = conflicts(items, to)
    if clash and not force:
        shown = "; ".join(display(c) for c in clash[:5]) + ("; ..." if len(clash) > 5 else "")
        raise Conflict(f"{len(clash)} path(s) exist already; nothing was written "
                       f"(--force overwrites them): {shown}")
    to_b = os.fsencode(os.path.realpath(to))       # DIR itself is the user's choice
    os.makedirs(to_b, exist_ok=True)
    order = {"dir": 0, "file": 1, "link": 2}          # symlinks last, never followed
    outcome = Outcome()
    made: set[bytes] = set()
    for item in sorted(items, key=lambda i: (order[i.kind], i.rel)):
        try:
            _write(item, to_b, root, force)
        except (SnapbackError, OSError) as exc:
            if isinstance(exc, UsageError):
                raise                                    # a refusal: stop, as before
            why = str(exc) if isinstance(exc, SnapbackError) else (exc.strerror or str(exc))
            outcome.failed.append((os.fsdecode(item.rel), why))
            continue
        if item.kind == "dir":
            made.add(item.rel)
        else:
            outcome.written += 1
    for folder in {os.path.dirname(os.path.join(to_b, i.rel)) for i in items}:
        _clear_leftovers(folder)
    for item in sorted((i for i in items if i.kind == "dir" and i.rel in made),
                       key=lambda i: i.rel, reverse=True):
        path = os.path.join(to_b, item.rel)
        try:
            if item.mode is not None:
                os.chmod(path, stat.S_IMODE(item.mode))
            if item.mtime_ns is not None:
                os.utime(path, ns=(item.mtime_ns, item.mtime_ns))
        except OSError as exc:
            outcome.failed.append((os.fsdecode(item.rel), exc.strerror or str(exc)))
    return outcome


def _clear_leftovers(folder: bytes) -> None:
    """Remove the temporary files and links a killed restore left in ``folder`` (ours
    by name; a link is removed, never followed)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if store.is_tmp(os.fsdecode(entry.name)) and not entry.is_dir(follow_symlinks=False):
            store._unlink_quiet(entry.path)


def _write(item: Item, to_b: bytes, root: Path, force: bool) -> None:
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
        return
    if item.kind == "link":
        assert item.target is not None
        tmp = store.tmp_name(parent)
        os.symlink(item.target, tmp)
        try:
            _clear_folder(path)
            faults.point("rename")
            os.replace(tmp, path)
        except BaseException:
            store._unlink_quiet(tmp)
            raise
        if item.mtime_ns is not None:
            os.utime(path, ns=(item.mtime_ns, item.mtime_ns), follow_symlinks=False)
        return
    src = _open_mirror_file(item.source_file) if item.source_file is not None else None
    try:
        # written under a temporary name, its mode and mtime set, then renamed: a kill
        # leaves the old file or the whole new one, never a partial file under the name;
        # holes stay holes (the mirror's, asked with SEEK_DATA; a rebuilt version's
        # zero blocks)
        tmp = store.tmp_name(parent)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except BaseException:
        if src is not None:
            os.close(src)
        raise
    try:
        try:
            if src is not None:
                store.copy_data(src, fd)
            else:
                _write_content(item, root, fd)
        finally:
            os.close(fd)
            if src is not None:
                os.close(src)
        if item.mode is not None:
            os.chmod(tmp, stat.S_IMODE(item.mode))
        if item.mtime_ns is not None:
            os.utime(tmp, ns=(item.mtime_ns, item.mtime_ns))
        _clear_folder(path)
        faults.point("rename")
        os.replace(tmp, path)
    except BaseException:
        store._unlink_quiet(tmp)
        raise


def _clear_folder(path: bytes) -> None:
    """--force: a folder where the file or link goes is removed, once what replaces
    it is written (a version that cannot be rebuilt leaves the folder as it is)."""
    if os.path.isdir(path) and not os.path.islink(path):
        store.remove(path)


def _open_mirror_file(path: bytes) -> int:
    """Open a mirror file for reading, never through a link, never a FIFO or device."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise store.NotAFile(errno.EINVAL, "is not a regular file", os.fsdecode(path))
    return fd


def _write_content(item: Item, root: Path, fd: int) -> None:
    """The version's bytes into ``fd``, streamed where the history allows (a 4 GB
    file restores in bounded memory: rebuild.write_version)."""
    assert item.row is not None and item.row.kind in (*CONTENT_KINDS, "meta")
    try:
        write_version(root, list(item.history), item.row, fd)
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
