"""Versioned mode: every version of every file, as a baseline and standard diffs.

``record_folder`` is the action of one ``versioned:<source>/<dir>`` subtask.
For each file of the folder it keeps a history folder
``versioned_backup/<source>/<dir>/<file>/`` holding the current copy, the
baseline (first copy ever), one ``diff -u`` per later change of a text file in
``<file>_diffs/`` and full copies (binary, or text over ``max_diff_bytes``) in
``<file>_versions/``.  Every version is a row of the catalog.

Crash safety comes from the order of writes, each atomic: (1) the new object
(baseline, diff or full copy), (2) the catalog row, (3) the current copy.  A
run killed before (2) leaves an unreferenced object that the next run removes
before it writes its own; killed between (2) and (3), the next run finds the
current copy out of step with the catalog and repairs it.  The source is
compared with the catalog's last version (size and mtime, then sha256), never
only with doit's state, so a rerun makes no duplicate and no empty diff.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from doit.exceptions import TaskFailed

from . import run, store, textdiff
from .catalog import Catalog, Row
from .plan import Source
from .run import DELETED, FAILED, NEW, UPDATED, Event
from .protect import Opened
from .scan import Folder

MODE = "versioned"
RETRIES = 3


@dataclass(frozen=True)
class FolderJob:
    source: Source
    folder: Folder
    root: Path                 # <destination>/versioned_backup/<source name>
    max_diff_bytes: int

    @property
    def label(self) -> str:
        return self.folder.label(self.source.name)


@run.action(MODE)
def record_folder(job: FolderJob, current: run.Run) -> TaskFailed | None:
    """Record the new, changed and deleted entries of one source folder."""
    work = History(job.source, job.root, job.folder.rel, current, job.max_diff_bytes)
    folder = job.folder
    unknown = {name for name, _why in folder.unreadable}     # not gone: keep their history live
    for name, why in folder.unreadable:
        work._fail(os.fsencode(name), why)
    work.deletions(set(folder.files) | unknown, set(folder.links) | unknown,
                   set(folder.subdirs) | unknown)
    for name, st in folder.files.items():
        work.file(name, st)
    for name in folder.links:
        work.link(name)
    for name in folder.subdirs:
        work.subdir(name)
    work.finish()
    if work.failures:
        return TaskFailed(f"{job.label}: {work.failures} file(s) failed")
    return None


def version_names(name: bytes, stamp: str) -> tuple[bytes, bytes]:
    """The diff and full-copy names of one version, relative to the history folder."""
    tag = name + b"_v" + stamp.encode()
    return name + b"_diffs/" + tag + b".diff", name + b"_versions/" + tag


def unique_stamp(catalog: Catalog, source: str, folder: bytes, name: bytes, base: str) -> str:
    """``base`` (the run's time), or ``base_2``, ``base_3``...: never two versions
    of one path under one name, even for runs within the same second."""
    taken = catalog.times(source, folder, name)
    stamp, n = base, 2
    while stamp in taken:
        stamp, n = f"{base}_{n}", n + 1
    return stamp


def baseline_name(name: bytes, date: str) -> bytes:
    stem, dot, ext = name.rpartition(b".")
    if not dot or not stem or stem.endswith(b"."):    # no extension, or a dotfile
        stem, ext = name, b""
    else:
        ext = b"." + ext
    return stem + b"-baseline-" + date.encode() + ext


class History:
    """The versioned history of one source folder's entries."""

    def __init__(self, source: Source, root: Path, rel: str, current: run.Run, max_diff: int):
        self.source, self.run, self.max_diff = source, current, max_diff
        self.root = os.fsencode(root)
        self.rel = os.fsencode(rel)
        self.src = os.fsencode(source.path / rel if rel else source.path)
        self.writes = current.writes
        self.catalog: Catalog = current.open_catalog()
        self.latest = self.catalog.latest_in(source.name, self.rel)
        self.failures = 0
        # Current copies are replaced only once their rows are committed (step 3).
        self.after_commit: list[tuple[bytes, bytes]] = []   # (prepared file, its place)
        self.done: list[tuple[str, list[int], Event | None]] = []
        self.catalog.begin()
        self.opened = Opened(current.protected)

    def finish(self) -> None:
        """Commit the folder's rows, then put the current copies in place."""
        self.catalog.commit()
        for tmp, current in self.after_commit:
            os.replace(tmp, current)
            self.opened.wrote(current)
        self.opened.close()
        for key, stored, event in self.done:
            self.run.verified[key] = stored
            if event is not None:
                self.run.emit(event)
        self.after_commit.clear()
        self.done.clear()

    # -- paths -----------------------------------------------------------------
    def _rel_of(self, name: bytes) -> bytes:
        return self.rel + b"/" + name if self.rel else name

    def _label(self, name: bytes, folder: bool = False) -> str:
        return f"{self.source.name}/{os.fsdecode(self._rel_of(name))}" + ("/" if folder else "")

    def _container(self) -> bytes:
        """Where this folder's histories live, relative to the root (aliases apply)."""
        parts = self.rel.split(b"/") if self.rel else []
        path = b""
        for index, part in enumerate(parts):
            rel = b"/".join(parts[: index + 1])
            alias = self.catalog.alias(self.source.name, "dir", rel)
            if alias is None:
                candidate = os.path.join(path, part)
                full = os.path.join(self.root, candidate)
                if os.path.lexists(full) and not os.path.isdir(full) and self.writes:
                    alias = self._free(path, part, lambda p: not os.path.lexists(p)
                                       or os.path.isdir(p) and not os.path.islink(p))
                    self.catalog.set_alias(self.source.name, "dir", rel, alias)
                else:
                    alias = candidate
            path = alias
        return path

    def _free(self, parent: bytes, name: bytes, ok) -> bytes:
        """The first ``name~N`` beside ``name`` that ``ok`` accepts (kind changes)."""
        n = 2
        while True:
            candidate = os.path.join(parent, name + b"~" + str(n).encode())
            if ok(os.path.join(self.root, candidate)):
                return candidate
            n += 1

    def _new_store(self, name: bytes) -> bytes:
        """A history folder for a path that has none: ``<dir>/<name>/``, unless that
        place is taken by another history (a path that changed kind)."""
        rel = self._rel_of(name)
        alias = self.catalog.alias(self.source.name, "file", rel)
        if alias is not None:
            return alias
        container = self._container()
        candidate = os.path.join(container, name)

        def free(folder: bytes) -> bool:
            return ((not os.path.lexists(folder) or os.path.isdir(folder)
                     and not os.path.islink(folder))
                    and not os.path.lexists(os.path.join(folder, name)))

        if free(os.path.join(self.root, candidate)):
            return candidate
        alias = self._free(container, name, free)
        if self.writes:
            self.catalog.set_alias(self.source.name, "file", rel, alias)
        return alias

    def _stamp(self, name: bytes) -> str:
        """This run's version time, made unique for this path."""
        return unique_stamp(self.catalog, self.source.name, self.rel, name, self.run.stamp)

    # -- entries -----------------------------------------------------------------
    def file(self, name_s: str, st: os.stat_result) -> None:
        name = os.fsencode(name_s)
        key = os.fsdecode(os.path.join(self.src, name))
        row = self.latest.get(name)
        live = row if row is not None and row.entry == "file" and row.live else None
        if live is not None and (live.size, live.mtime_ns) == (st.st_size, st.st_mtime_ns) \
                and self._current_ok(live):
            self.run.verified[key] = [st.st_mtime_ns, st.st_size]
            return
        prev = self.catalog.last_content(self.source.name, self.rel, name)
        store_rel = prev.store if prev is not None else self._new_store(name)
        assert store_rel is not None
        hist = os.path.join(self.root, store_rel)
        if not self.writes:
            self._dry_file(name, st, prev, live)
            return
        self.opened.makedirs(hist)
        copied = self._copy(name, hist)
        if copied is None:
            return
        tmp, cst, sha = copied
        current = os.path.join(hist, name)
        if prev is not None and prev.sha256 == sha and live is not None:
            # Same bytes (a touch, or a run killed before the current copy was
            # replaced): no new version; the current copy takes these bytes and mtime.
            os.replace(tmp, current)
            if prev.mtime_ns != cst.st_mtime_ns:
                self.catalog.touch(prev.id, cst.st_mtime_ns)
            self.run.verified[key] = [cst.st_mtime_ns, cst.st_size]
            return
        try:
            kind, obj, stamp, obj_sha = self._store_version(name, hist, tmp, cst, prev, sha)
        except OSError as exc:
            store.remove(tmp)
            self._fail(name, exc.strerror or str(exc))
            return
        self.catalog.add(source=self.source.name, dir=self.rel, name=name, entry="file",
                         kind=kind, time=stamp, run_id=self.run.run_id,
                         note=self.run.options.note, store=store_rel, object=obj,
                         size=cst.st_size, sha256=sha, mode=cst.st_mode, mtime_ns=cst.st_mtime_ns,
                         target=None, recorded=self.run.started, object_sha256=obj_sha)
        self.after_commit.append((tmp, current))
        self.done.append((key, [cst.st_mtime_ns, cst.st_size],
                          Event(NEW if live is None else UPDATED, MODE, self._label(name),
                                size=cst.st_size, target=Path(os.fsdecode(current)))))

    def _current_ok(self, row: Row) -> bool:
        """Is the current copy the row's version? (A crash can leave it one behind.)"""
        assert row.store is not None
        try:
            st = os.lstat(os.path.join(self.root, row.store, row.name))
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) and (st.st_size, st.st_mtime_ns) == (row.size, row.mtime_ns)

    def _copy(self, name: bytes, hist: bytes) -> tuple[bytes, os.stat_result, str] | None:
        src = os.path.join(self.src, name)
        for _attempt in range(RETRIES):
            try:
                tmp, cst, sha = store.copy_to_tmp(src, self.run.staging, hashed=True)
                assert sha is not None
                return tmp, cst, sha
            except store.SourceChanged:
                continue
            except FileNotFoundError:
                return None                      # deleted since the scan: next run records it
            except OSError as exc:
                self._fail(name, exc.strerror or str(exc))
                return None
        self._fail(name, "kept changing while it was read; will retry next run")
        return None

    def _store_version(self, name: bytes, hist: bytes, tmp: bytes, cst: os.stat_result,
                       prev: Row | None, sha: str) -> tuple[str, bytes, str, str]:
        """Write the version's object (step 1 of 3).

        Returns (kind, object name, version time, sha256 of the object's bytes).
        """
        stamp = self._stamp(name)
        self._remove_orphans(name, hist)
        if prev is None:
            obj = baseline_name(name, self.run.stamp[:10])
            store.link_or_copy(tmp, os.path.join(hist, obj), self.run.staging)
            self.opened.wrote(os.path.join(hist, obj))
            return "baseline", obj, stamp, sha
        diff_name, full_name = version_names(name, stamp)
        diff = self._diff(name, hist, tmp, cst, prev)
        if diff is not None:
            self.opened.makedirs(os.path.join(hist, name + b"_diffs"))
            store.write_bytes(os.path.join(hist, diff_name), diff, tmp_dir=self.run.staging)
            self.opened.wrote(os.path.join(hist, diff_name))
            return "diff", diff_name, stamp, hashlib.sha256(diff).hexdigest()
        self.opened.makedirs(os.path.join(hist, name + b"_versions"))
        store.link_or_copy(tmp, os.path.join(hist, full_name), self.run.staging)
        self.opened.wrote(os.path.join(hist, full_name))
        return "full", full_name, stamp, sha

    def _remove_orphans(self, name: bytes, hist: bytes) -> None:
        """Objects written by a run killed before their rows were committed: no
        version refers to them, and a user applying diffs by hand must not meet them."""
        known = self.catalog.objects(self.source.name, self.rel, name)
        stem = baseline_name(name, "").rpartition(b"-baseline-")[0] + b"-baseline-"
        places = [(b"", lambda entry: entry.startswith(stem))]
        places += [(name + b"_diffs/", lambda entry: True), (name + b"_versions/", lambda e: True)]
        for prefix, ours in places:
            try:
                entries = os.listdir(os.path.join(hist, prefix) if prefix else hist)
            except FileNotFoundError:
                continue
            for entry in entries:
                if ours(entry) and prefix + entry not in known:
                    self.opened.folder(os.path.join(hist, prefix) if prefix else hist)
                    store.remove(os.path.join(hist, prefix + entry))

    def _diff(self, name: bytes, hist: bytes, tmp: bytes, cst: os.stat_result,
              prev: Row) -> bytes | None:
        """The unified diff previous -> new, or None when the version is kept whole."""
        if cst.st_size > self.max_diff or (prev.size or 0) > self.max_diff:
            return None
        try:
            with open(os.path.join(hist, name), "rb") as fh:
                old = fh.read()
        except OSError:
            return None
        if hashlib.sha256(old).hexdigest() != prev.sha256:
            return None                          # the current copy is not the last version
        with open(tmp, "rb") as fh:
            new = fh.read()
        if old == new or not (textdiff.is_text(old) and textdiff.is_text(new)):
            return None                          # (same bytes: a re-created file, kept whole)
        label = os.path.basename(name)
        return textdiff.make_diff(old, new, label, label)

    def _dry_file(self, name: bytes, st: os.stat_result, prev: Row | None, live: Row | None) -> None:
        if live is not None and prev is not None and prev.size == st.st_size:
            try:
                if store.sha256_of(os.path.join(self.src, name)) == prev.sha256:
                    return                       # touched only
            except OSError:
                pass
        self.run.emit(Event(NEW if live is None else UPDATED, MODE, self._label(name),
                            size=st.st_size))

    def link(self, name_s: str) -> None:
        name = os.fsencode(name_s)
        src = os.path.join(self.src, name)
        try:
            target = os.readlink(src)
            st = os.lstat(src)
        except FileNotFoundError:
            return
        except OSError as exc:
            self._fail(name, exc.strerror or str(exc))
            return
        row = self.latest.get(name)
        key = os.fsdecode(src)
        if row is not None and row.entry == "link" and row.live and row.target == target:
            self.run.verified[key] = [st.st_mtime_ns, st.st_size]
            return
        if self.writes:
            store_rel = row.store if row is not None and row.entry == "link" and row.store \
                else self._new_store(name)
            hist = os.path.join(self.root, store_rel)
            self.opened.makedirs(hist)
            tmp = store.tmp_name(self.run.staging)
            os.symlink(target, tmp)
            self.after_commit.append((tmp, os.path.join(hist, name)))
            self.catalog.add(source=self.source.name, dir=self.rel, name=name, entry="link",
                             kind="link", time=self._stamp(name),
                             run_id=self.run.run_id, note=self.run.options.note, store=store_rel,
                             object=name, size=st.st_size, sha256=None, mode=st.st_mode,
                             mtime_ns=st.st_mtime_ns, target=target, recorded=self.run.started)
        live = row is not None and row.entry == "link" and row.live
        event = Event(UPDATED if live else NEW, MODE, self._label(name))
        if self.writes:
            self.done.append((key, [st.st_mtime_ns, st.st_size], event))
        else:
            self.run.emit(event)

    def subdir(self, name_s: str) -> None:
        name = os.fsencode(name_s)
        try:
            st = os.lstat(os.path.join(self.src, name))
        except OSError:
            return
        row = self.latest.get(name)
        if row is not None and row.entry == "dir" and row.live and row.mode == st.st_mode:
            return
        if self.writes:
            self.catalog.add(source=self.source.name, dir=self.rel, name=name, entry="dir",
                             kind="dir", time=self._stamp(name), run_id=self.run.run_id,
                             note=self.run.options.note, store=None, object=None, size=None,
                             sha256=None, mode=st.st_mode, mtime_ns=st.st_mtime_ns, target=None,
                             recorded=self.run.started)

    def deletions(self, files: set[str], links: set[str], subdirs: set[str]) -> None:
        """Record what left this folder (or changed kind), keeping all its history."""
        kept = {"file": {os.fsencode(n) for n in files}, "link": {os.fsencode(n) for n in links},
                "dir": {os.fsencode(n) for n in subdirs}}
        for name, row in sorted(self.latest.items()):
            if row.live and name not in kept[row.entry]:
                self.delete(row)

    def delete(self, row: Row) -> None:
        """A deletion row for ``row``'s path (and, for a folder, everything below it)."""
        below = self.catalog.live_below(self.source.name, row.path) if row.entry == "dir" else []
        files = sum(1 for r in below if r.entry != "dir")
        if self.writes:
            for item in [*below, row]:
                self.catalog.add(source=self.source.name, dir=item.dir, name=item.name,
                                 entry=item.entry, kind="deleted",
                                 time=unique_stamp(self.catalog, self.source.name, item.dir,
                                                       item.name, self.run.stamp), run_id=self.run.run_id,
                                 note=self.run.options.note, store=item.store, object=None,
                                 size=None, sha256=None, mode=None, mtime_ns=None, target=None,
                                 recorded=self.run.started)
        if row.entry == "dir":
            self.run.emit(Event(DELETED, MODE, self._label(row.name, folder=True), files=files,
                                reason=f"{files} files"))
        else:
            self.run.emit(Event(DELETED, MODE, self._label(row.name)))

    def _fail(self, name: bytes, reason: str) -> None:
        self.failures += 1
        self.run.emit(Event(FAILED, MODE, self._label(name), reason=reason))


@dataclass(frozen=True)
class SweepJob:
    source: Source
    folders: tuple[Folder, ...]
    root: Path
    max_diff_bytes: int


@run.action(MODE)
def sweep(job: SweepJob, current: run.Run) -> TaskFailed | None:
    """Record a deletion for every path the catalog has live that the source lost."""
    catalog = current.open_catalog()
    folders = {os.fsencode(f.rel): f for f in job.folders}
    unknown = [rel for rel, f in folders.items() if f.error is not None]
    for row in catalog.live_below(job.source.name, b""):
        if any(row.dir == u or row.dir.startswith(u + b"/") for u in unknown):
            continue                             # cannot be listed: delete nothing
        folder = folders.get(row.dir)
        if folder is not None:
            names = {"file": folder.files, "link": folder.links,
                     "dir": dict.fromkeys(folder.subdirs)}[row.entry]
            if os.fsdecode(row.name) in names or os.fsdecode(row.name) in dict(folder.unreadable):
                continue
        work = History(job.source, job.root, os.fsdecode(row.dir), current, job.max_diff_bytes)
        latest = work.latest.get(row.name)
        if latest is not None and latest.live:
            work.delete(latest)
        work.finish()
    return None
