"""Coming back from the off-site copy: ``doit fetch`` and ``doit check``.

``fetch`` brings the backup back from the plan's rclone remote into the plan's
destination (a new machine, another path), then puts back from the catalog what
a remote may not have kept: the mirror's modes, mtimes and empty folders, the
history's symlinks and modes, the privacy of the destination and the catalog.
Symlinks travel as rclone does it (``--links``: ``<name>.rclonelink`` files
holding the target), so they reach every remote, Google Drive included.

``check`` compares the remote with the catalog: every mirror file and every
stored object by size and sha256 (asked of the remote when it has sha256,
otherwise downloaded by rclone and hashed as it streams, as for a ``crypt``
remote), every symlink, and the catalog itself; one line per missing, extra or
damaged file.

The catalog is the truth: what it records is put back from it, never hoped for
from the remote.  rclone is run through ``pipeline/rclone.py``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import store
from .catalog import CHANGE_KINDS, CONTENT_KINDS, Catalog, Row, open_catalog
from .errors import SnapbackError, UsageError
from .layout import CATALOG, HISTORY, META, MIRROR, RUNS, history_root, mirror_root
from .lock import Lock
from .plan import Plan
from .rclone import LINK_SUFFIX, NEVER_SENT, features, rclone, remote_path, remote_root, run
from .show import plural
from .store import make_destination
from .verify import leftovers

AREAS = (MIRROR, HISTORY, META)

# What the metadata area holds that is sent (and so compared and brought back).
META_FILES = (CATALOG, RUNS)


class OffsiteUsage(UsageError):
    """The command cannot be done as asked; nothing was done (exit status 2)."""


def on_terminal() -> bool:
    """rclone's own progress display, only where someone watches it (never in cron)."""
    return os.isatty(1)


# ---- fetch -------------------------------------------------------------------

@dataclass
class Fetched:
    files: dict[str, int]
    modes: int = 0
    links: int = 0
    folders: int = 0
    problems: list[str] | None = None
    refound: int = 0              # mirror entries newer than the catalog, taken as found


def fetch(plan: Plan, force: bool) -> Fetched:
    """Bring the backup back from the remote into the plan's destination."""
    target = remote_root(plan)
    catalog_path = plan.meta_dir / CATALOG
    if os.path.lexists(catalog_path) and not force:
        raise OffsiteUsage(f"{plan.destination} already holds a backup (its catalog "
                           f"{catalog_path} exists): fetch would replace it; move it aside, "
                           "or use doit fetch --force to make it the remote's copy")
    listing = run(["lsjson", remote_path(target, META), "--files-only"],
                   f"reading {remote_path(target, '.snapback')}", ok_codes=(0, 3))
    names = {e["Name"] for e in json.loads(listing.stdout or "[]")} if listing.returncode == 0 \
        else set()
    if CATALOG not in names:
        raise SnapbackError(f"no backup at {target}: no .snapback/catalog.sqlite3 there "
                            "(is remote.target the one doit sync sends to?)")
    make_destination(plan.destination)
    os.chmod(plan.destination, 0o700)
    lock = Lock(plan.meta_dir / "lock")
    lock.acquire(note="doit fetch")
    try:
        for suffix in ("-wal", "-shm", "-journal"):     # --force: a WAL left beside the old
            stale = plan.meta_dir / f"catalog.sqlite3{suffix}"   # catalog must never be
            if os.path.lexists(stale):                           # replayed onto the new one
                os.unlink(stale)
        out = Fetched(files={})
        excludes = ["--exclude", ".~snapback-*.tmp"]
        meta_excludes = [arg for p in NEVER_SENT for arg in ("--exclude", p)]
        progress = on_terminal()
        # The catalog comes last: a fetch killed before it leaves no catalog, and the
        # next fetch simply carries on (a destination without one is not refused).
        for area, verb, extra in ((MIRROR, "sync" if force else "copy", excludes),
                                  (HISTORY, "copy", excludes),
                                  (META, "copy", meta_excludes)):
            result = run([verb, remote_path(target, area), str(plan.destination / area),
                           "--links", "--create-empty-src-dirs", "-v", *extra],
                          f"fetching {remote_path(target, area)}", progress=progress,
                          ok_codes=(0, 3))
            out.files[area] = result.stderr.count(": Copied (")
        for sub in (history_root(plan.destination), mirror_root(plan.destination)):
            sub.mkdir(mode=0o700, exist_ok=True)
            os.chmod(sub, 0o700)
        _private_folders(history_root(plan.destination))
        catalog = open_catalog(plan.meta_dir, writable=False)
        for left in leftovers(plan.destination, catalog):    # a killed fetch's (or run's):
            store.remove(os.fsencode(left.path))             # never taken as found
        found = _mirror_as_found(mirror_root(plan.destination), catalog)
        if found:              # (the catalog is written only then: it stays the remote's)
            catalog.close()
            catalog = open_catalog(plan.meta_dir, writable=True)
            catalog.begin()
            for change in found:
                change(catalog)
            catalog.commit()
            out.refound = len(found)
        try:
            out.problems = []
            _mirror_back(mirror_root(plan.destination), catalog, out)
            _history_back(history_root(plan.destination), catalog, out)
        finally:
            catalog.close()
        for name in META_FILES:
            if (plan.meta_dir / name).exists():
                os.chmod(plan.meta_dir / name, 0o600)
        os.chmod(plan.meta_dir, 0o700)
    finally:
        lock.release()
    return out


def _private_folders(root: Path) -> None:
    """The history's folders are 0700, as snapback makes them (a remote keeps no modes);
    never entered through a symlink."""
    for dirpath, dirnames, _files in os.walk(os.fsencode(root)):
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if stat.S_ISDIR(os.lstat(path).st_mode):
                os.chmod(path, 0o700)


def _entry(root: Path, source: str, folder: bytes, name: bytes) -> bytes:
    return os.path.join(os.fsencode(root), source.encode(), folder, name) if folder \
        else os.path.join(os.fsencode(root), source.encode(), name)


def _lstat(path: bytes) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def _through_link(top: bytes, path: bytes, out: Fetched) -> bool:
    """Is a folder above ``path`` (below ``top``) a link or not a folder?  Then it is
    named as a problem: what came from the remote is never followed out of the
    destination."""
    bad = store.real_dirs(top, os.path.relpath(os.path.dirname(path), top))
    if bad is not None:
        assert out.problems is not None
        out.problems.append(f"not a folder (a link from the remote?), not followed  "
                            f"{os.fsdecode(bad)}")
    return bad is not None


def _mirror_as_found(root: Path, catalog: Catalog) -> list[Callable[[Catalog], None]]:
    """The catalog's record of the mirror, made to match what came back.

    A sync cut short after the catalog (before or while the mirror goes) leaves a
    remote whose mirror is older than its catalog.  The mirror is the
    latest state, not the record (the history is, and is checked strictly): its
    records take each file, link and folder as found where kind, size or bytes
    differ, and drop files and links that did not come back (folders stay: a remote
    without empty folders loses them, and they are made again from the catalog).
    ``doit check`` before a fetch names every difference.  Returns the changes."""
    recorded = {(s, d, n): (kind, size, sha) for s, d, n, kind, size, sha, _m, _t
                in catalog.mirror_entries()}
    top = os.fsencode(root)
    changes: list[Callable[[Catalog], None]] = []
    seen: set[tuple[str, bytes, bytes]] = set()
    for source in sorted(os.listdir(top)) if os.path.isdir(top) else []:
        base = os.path.join(top, source)
        if not stat.S_ISDIR(os.lstat(base).st_mode):
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            rel = os.path.relpath(dirpath, base)
            folder = b"" if rel == b"." else rel
            for name in [*dirnames, *filenames]:
                path = os.path.join(dirpath, name)
                key = (os.fsdecode(source), folder, name)
                st = os.lstat(path)
                kind = "dir" if stat.S_ISDIR(st.st_mode) else "link" \
                    if stat.S_ISLNK(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else ""
                if not kind:
                    continue
                seen.add(key)
                had = recorded.get(key)
                if kind == "link" and had is not None and had[0] != "link":
                    continue          # a link where a file or folder was: named, not taken
                if had is not None and had[0] == kind and (kind != "file" or (
                        had[1] == st.st_size and store.sha256_of(path) == had[2])):
                    continue
                sha = store.sha256_of(path) if kind == "file" else None
                changes.append(functools.partial(_record_found, key, st, sha, kind))
    for key in sorted(recorded.keys() - seen):
        if recorded[key][0] != "dir":
            changes.append(functools.partial(_drop_found, key))
    return changes


def _record_found(key: tuple[str, bytes, bytes], st: os.stat_result, sha: str | None,
                  kind: str, catalog: Catalog) -> None:
    catalog.set_mirror(key[0], key[1], key[2], st, sha, "fetch", kind=kind)


def _drop_found(key: tuple[str, bytes, bytes], catalog: Catalog) -> None:
    if catalog.mirror_entry(*key) is not None:       # (a folder's drop took it already)
        catalog.drop_mirror(*key)


def _mirror_back(root: Path, catalog: Catalog, out: Fetched) -> None:
    """The mirror as the catalog records it: folders (empty ones too), modes, mtimes."""
    assert out.problems is not None
    rows = catalog.mirror_entries()
    folders = []
    top = os.fsencode(root)
    for source, folder, name, kind, _size, _sha, mode, mtime in rows:
        path = _entry(root, source, folder, name)
        if _through_link(top, path, out):
            continue
        st = _lstat(path)
        if kind == "dir":
            if st is None:
                os.makedirs(path, mode=0o700, exist_ok=True)
                out.folders += 1
            elif not stat.S_ISDIR(st.st_mode):
                out.problems.append(f"not a folder, not followed  {os.fsdecode(path)}")
                continue
            folders.append((path, mode, mtime))
            continue
        if st is None:
            out.problems.append(f"missing  {os.fsdecode(path)}")
            continue
        if kind == "link":
            if stat.S_ISLNK(st.st_mode):
                _set_times(path, mtime, follow=False)
            else:
                out.problems.append(f"not a symlink  {os.fsdecode(path)}")
            continue
        if not stat.S_ISREG(st.st_mode):
            out.problems.append(f"not a file (a link from the remote?), not followed  "
                                f"{os.fsdecode(path)}")
            continue
        if mode is not None and stat.S_IMODE(st.st_mode) != stat.S_IMODE(mode):
            os.chmod(path, stat.S_IMODE(mode))
            out.modes += 1
        _set_times(path, mtime)
    for source in {r[0] for r in rows}:                 # each source's own folder
        seen = catalog.folders_seen("snapshot", source).get(b"")
        if seen is not None:
            folders.append((os.path.join(os.fsencode(root), source.encode()), seen.st_mode,
                            seen.mtime_ns))
    for path, mode, mtime in sorted(folders, key=lambda f: -f[0].count(b"/")):
        st = _lstat(path)
        if st is None or not stat.S_ISDIR(st.st_mode) or \
                store.real_dirs(top, os.path.relpath(os.path.dirname(path), top)) is not None:
            continue
        if mode is not None:
            os.chmod(path, stat.S_IMODE(mode))
        _set_times(path, mtime)


def _set_times(path: bytes, mtime_ns: int | None, follow: bool = True) -> None:
    if mtime_ns is None:
        return
    try:
        os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=follow)
    except (OSError, OverflowError, ValueError):
        pass                                 # a time this filesystem cannot hold


def _histories(catalog: Catalog) -> dict[tuple[str, bytes], list[Row]]:
    out: dict[tuple[str, bytes], list[Row]] = {}
    for row in catalog.all_rows():
        out.setdefault((row.source, row.path), []).append(row)
    return out


def _history_back(root: Path, catalog: Catalog, out: Fetched) -> None:
    """The history's symlinks from the catalog (their targets are recorded there), and
    each stored copy's mode: a remote that keeps no modes must not make a 0600 secret's
    copies readable to all."""
    assert out.problems is not None
    base = os.fsencode(root)
    for (source, _path), history in _histories(catalog).items():
        where = os.path.join(base, source.encode())
        for row in history:
            if row.kind not in CONTENT_KINDS or row.store is None or row.object is None:
                continue
            obj = os.path.join(where, row.store, row.object)
            if _through_link(base, obj, out):
                continue
            st = _lstat(obj)
            want = 0o600 if row.kind in CHANGE_KINDS else stat.S_IMODE(row.mode or 0o600)
            if st is not None and stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != want:
                os.chmod(obj, want)
                out.modes += 1
            if row.copy is not None:           # the newest version, whole
                copy = os.path.join(where, row.store, row.copy)
                st = _lstat(copy)
                want = stat.S_IMODE(row.mode or 0o600)
                if not _through_link(base, copy, out) and st is not None and \
                        stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != want:
                    os.chmod(copy, want)
                    out.modes += 1


def describe_fetch(plan: Plan, done: Fetched, seconds: float) -> list[str]:
    sent = ", ".join(f"{area} {n} file(s)" for area, n in done.files.items())
    lines = list(done.problems or [])
    if done.refound:
        entries = "entry" if done.refound == 1 else "entries"
        lines.append(f"note: {done.refound} mirror {entries} differed from the catalog (a "
                     "sync cut short?): the mirror's records now say what came back; the "
                     "history is checked as it was sent")
    lines.append(f"fetch: {sent} from {remote_root(plan)} into {plan.destination} in "
                 f"{seconds:.1f} s; from the catalog: {done.modes} mode(s), {done.links} "
                 f"symlink(s), {done.folders} empty folder(s) put back")
    if not done.problems:
        lines.append("next: snapback verify --deep (checks every version), then snapback "
                     "restore PATH")
    return lines


# ---- check -------------------------------------------------------------------

@dataclass(frozen=True)
class Want:
    size: int | None
    sha256: str | None


def expected(destination: Path, catalog: Catalog) -> dict[str, Want]:
    """Every file the remote must hold, by its path there, with what the catalog says
    of it (a symlink is its ``.rclonelink`` file: the target's bytes)."""
    out: dict[str, Want] = {}
    for source, folder, name, kind, size, sha, _mode, _mtime in catalog.mirror_entries():
        if kind == "dir":
            continue
        rel = os.fsdecode(folder + b"/" + name if folder else name)
        if kind == "link":
            local = mirror_root(destination, source) / rel
            target = os.readlink(local) if local.is_symlink() else None
            out[f"system_snapshot/{source}/{rel}{LINK_SUFFIX}"] = Want(
                None if target is None else len(os.fsencode(target)),
                None if target is None else hashlib.sha256(os.fsencode(target)).hexdigest())
        else:
            out[f"system_snapshot/{source}/{rel}"] = Want(size, sha)
    for (source, _path), history in _histories(catalog).items():
        for row in history:
            if row.kind in CONTENT_KINDS and row.store is not None and row.object is not None:
                rel = os.fsdecode(os.path.join(row.store, row.object))
                out[f"versioned_backup/{source}/{rel}"] = Want(
                    row.size if row.kind not in CHANGE_KINDS else None,
                    row.object_sha256 or row.sha256)
                if row.copy is not None:       # the newest version, whole
                    rel = os.fsdecode(os.path.join(row.store, row.copy))
                    out[f"versioned_backup/{source}/{rel}"] = Want(row.size, row.sha256)
    for name in META_FILES:
        path = destination / META / name
        if path.exists():
            data = path.read_bytes()
            out[f".snapback/{name}"] = Want(len(data), hashlib.sha256(data).hexdigest())
    return out


def remote_files(target: str, sha256: bool) -> dict[str, tuple[int, str | None]]:
    """path -> (size, sha256 or None) of every file under the three areas."""
    args = ["lsjson", "-R", "--files-only", "--links", target]
    if sha256:
        args += ["--hash", "--hash-type", "sha256"]
    result = run(args, f"listing {target}", ok_codes=(0, 3))
    if result.returncode == 3:
        return {}
    out = {}
    for entry in json.loads(result.stdout or "[]"):
        path = entry["Path"]
        if path.split("/", 1)[0] in AREAS:
            out[path] = (entry["Size"], (entry.get("Hashes") or {}).get("sha256"))
    return out


def downloaded_hashes(target: str, paths: list[str]) -> dict[str, str]:
    """sha256 of each file, downloaded by rclone and hashed as it streams."""
    if not paths:
        return {}
    listing = "\n".join(paths) + "\n"
    binary = rclone()
    result = subprocess.run([binary, "hashsum", "sha256", "--download", "--links",
                             "--files-from-raw", "-", target], input=listing,
                            capture_output=True, text=True, errors="surrogateescape",
                            timeout=24 * 3600)
    out = {}
    for line in result.stdout.splitlines():
        digest, sep, path = line.partition("  ")
        if sep and len(digest) == 64:
            out[path] = digest
    return out


def check(plan: Plan, catalog: Catalog) -> tuple[list[str], str]:
    """(one line per problem, the summary line)."""
    target = remote_root(plan)
    want = expected(plan.destination, catalog)
    started = time.monotonic()
    hashes = [h.lower() for h in (features(target).get("Hashes") or [])]
    has_sha = "sha256" in hashes
    have = remote_files(target, has_sha)
    problems: list[str] = []
    if not have:
        raise SnapbackError(f"nothing at {target}: run snapback sync first")
    to_download = [p for p, w in want.items() if p in have and
                   (w.size is None or have[p][0] == w.size) and have[p][1] is None]
    fetched = {} if has_sha else downloaded_hashes(target, to_download)
    for path in sorted(want):
        w = want[path]
        if path not in have:
            problems.append(f"missing  {path}")
            continue
        size, digest = have[path]
        digest = digest or fetched.get(path)
        if w.size is not None and size != w.size:
            problems.append(f"damaged  {path} (size {size}, the catalog says {w.size})")
        elif w.sha256 is not None and digest is None:
            problems.append(f"damaged  {path} (cannot be read back)")
        elif w.sha256 is not None and digest != w.sha256:
            what = "differs" if path.startswith(".snapback/") else "sha256 mismatch"
            problems.append(f"damaged  {path} ({what}"
                            + (": a run since the last doit sync, or damage)" if what ==
                               "differs" else ")"))
    for path in sorted(set(have) - set(want)):
        problems.append(f"extra    {path}")
    how = "sha256 from the remote" if has_sha else "downloaded and hashed"
    summary = (f"check: {plural(len(want), 'file')} of the catalog compared with {target} "
               f"({how}, {time.monotonic() - started:.1f} s): "
               f"{plural(len(problems), 'problem')}")
    return problems, summary


# ---- the commands ------------------------------------------------------------
