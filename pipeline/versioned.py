"""Versioned mode: every version of every file, as a baseline and standard diffs.

``record_folder`` is the action of one ``versioned:<source>/<dir>`` subtask.
For each file of the folder it keeps a history folder
``versioned_backup/<source>/<dir>/<file>/`` holding the baseline (first copy
ever), one ``diff -u`` per later change of a text file in ``<file>_diffs/`` and
whole copies in ``<file>_versions/``: binary files and text over
``max_diff_bytes``, and the newest version of a file whose newest change is a
diff (so the newest version is always whole).  Every version is a row of the
catalog.

Stored objects are immutable: each is written once under a name its history
folder never had, and never modified or renamed over.  Crash safety comes from
the order: (1) the new objects, (2) the folder's catalog transaction, committed
once they are on stable storage (``Catalog.commit``), (3) the whole copy the new
version supersedes is removed.  A run killed before (2) leaves objects no row
names, which the next writer of that history folder removes; killed before
(3), a copy no row names, removed the same way.  The source is compared with the
catalog's last version (its stat, then sha256), never only with doit's state,
so a rerun makes no duplicate and no empty diff.  Same bytes with another mode
or mtime is a ``meta`` row: no object, and each version restores with its own.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from doit.exceptions import TaskFailed

from . import bindelta, change, faults, layout, session, store, textdiff
from .catalog import CONTENT_KINDS, WHOLE_KINDS, Catalog, Row
from .layout import baseline_name, version_names
from .lstat import AnyStat
from .plan import Source
from .rebuild import RebuildError, open_chain, rebuild
from .session import DELETED, FAILED, NEW, UPDATED, Event, FolderJob, Session, SweepJob, action
from .show import plural
from .snapshot import folder_change

MODE = "versioned"
RETRIES = 3


@action(MODE)
def record_folder(job: FolderJob, current: Session) -> TaskFailed | None:
    """Record the new, changed and deleted entries of one source folder."""
    folder = job.folder
    # in line but for some files (``FolderJob.only``): the rows of those and of the links
    work = History(job.source, job.root, folder.rel, current, job.max_diff_bytes,
                   job.checker, None if job.only is None else
                   [os.fsencode(name) for name in job.only | folder.links.keys()])
    if current.writes and not job.vanished:   # committed with the first rows: a kill
        work.catalog.unset_folder(MODE, job.source.name, work.rel)   # leaves it out of line
    unknown = {name for name, _why in folder.unreadable}     # not gone: keep their history live
    for name, why in folder.unreadable:
        work._fail(os.fsencode(name), why)
    if job.cleanup:               # (not for a source that vanished: backup._vanished)
        work.deletions(set(folder.files) | unknown, set(folder.links) | unknown,
                       set(folder.subdirs) | unknown)
    try:
        for name, st in job.judged_files():
            work.file(name, st)
            current.tick(st.st_size)
    finally:
        current.drop_handed(work.handed)      # copies the snapshot task made, not used
        current.drop_handed(work.ahead)       # or read ahead for it
    for name in folder.links:
        work.link(name)
    if not work.failures and folder.stat is not None:
        work.folder_in_line(folder.stat,
                            empty=not (folder.files or folder.links or folder.subdirs))
        work.signed = job.in_line()
        work.listed = (job.rules, job.listing()) if work.signed[0] is not None else None
        if job.vanished:
            work.in_line = None       # what the last run kept stays the measure (the guard)
    work.finish()
    if work.failures:
        return TaskFailed(f"{job.label}: {work.failures} file(s) failed")
    return None


def unique_stamp(catalog: Catalog, source: str, folder: bytes, name: bytes, base: str) -> str:
    """``base`` (the run's time), or ``base_2``, ``base_3``...: never two versions
    of one path under one name, even for runs within the same second."""
    taken = catalog.times(source, folder, name)
    stamp, n = base, 2
    while stamp in taken:
        stamp, n = f"{base}_{n}", n + 1
    return stamp


COPY_AFTER = 16         # a diff's or delta's version is kept whole too from this many on


class History:
    """The versioned history of one source folder's entries."""

    def __init__(self, source: Source, root: Path, rel: str, current: Session, max_diff: int,
                 checker: str = "hash", names: list[bytes] | None = None):
        self.source, self.run, self.max_diff, self.checker = source, current, max_diff, checker
        self.root = os.fsencode(root)
        self.rel = os.fsencode(rel)
        self.src = os.path.join(os.fsencode(source.path), self.rel) if rel \
            else os.fsencode(source.path)
        self.root_in, self.src_in = store.inside(self.root), store.inside(self.src)
        self.writes = current.writes
        self.catalog: Catalog = current.open_catalog()
        # the newest row of each path of the folder (``names``: of these alone, the
        # entries judged in a folder whose others match their rows)
        self.latest = self.catalog.latest_in(source.name, self.rel, names)
        self.failures = 0
        self.racy = False                 # a record to compare by content next run
        self.linked: set[bytes] = set()   # new names of content the history held already
        # Whole copies a new version superseded: removed once its row is committed (3).
        self.superseded: list[bytes] = []
        self.done: list[Event] = []
        self.in_line: os.stat_result | None = None
        self.signed: tuple[bytes | None, bytes, int | None] = (None, b"", None)
        self.listed: tuple[bytes, bytes | None] | None = None   # (rules, listing) with it
        self._container_cache: bytes | None = None
        self._real: set[bytes] = set()    # folders above history folders, checked
        self._containers: set[bytes] = set()     # ... and made (``_made``)
        self._aliases: dict[bytes, bytes] | None = None   # this folder's files' aliases
        self._unowned: bool | None = None  # the catalog names nothing in the container
        self.catalog.begin_folder()
        self.opened = current.opening()
        # `doit all`: the copies of this folder's files its snapshot task made for it
        self.handed = current.take_over(source.name, self.rel) if self.writes else {}
        # `doit versioned`: the copies read ahead for it (pipeline.reader)
        self.ahead = current.read_ahead(MODE, source.name, self.rel)

    def finish(self) -> None:
        """The folder's rows, and the folder as in line, join the group's commit
        (``session.Group``: their objects on stable storage first, one sync a second);
        once committed, the whole copies they superseded are removed and their lines
        said."""
        try:
            if self.in_line is not None:
                sig = self.signed if not self.racy else (None, *self.signed[1:])
                self.catalog.set_folder(MODE, self.source.name, self.rel, self.in_line, *sig,
                                        listing=self.listed)
                self.in_line = None
        except (OSError, sqlite3.Error) as exc:
            self.run.group.abort(self.catalog, exc)
            self._not_recorded(exc)
            return
        self.run.group.done(self.catalog, self._committed, self._not_recorded)

    def _committed(self) -> None:
        for old in self.superseded:
            try:
                faults.point("remove")
                store.remove(old)
            except OSError:
                pass                      # still in the catalog's garbage: removed later
        self.opened.close()
        for event in self.done:
            self.run.emit(event)
        self.superseded.clear()
        self.done.clear()

    def _not_recorded(self, exc: BaseException) -> None:
        """The folder's changes could not be committed (a full disk): nothing of them
        is in the catalog (its objects are orphans the next writer removes, the copies
        they would supersede stay named).  Each file it would have recorded is a FAILED
        line; its deletions and the folder's own version are recorded by the next run."""
        reason = session.failure_reason(exc)
        files = [e for e in self.done if e.kind in (NEW, UPDATED) and not e.path.endswith("/")]
        for event in files:
            self.failures += 1
            self.run.emit(Event(FAILED, MODE, event.path, reason=reason))
        if not files:
            self.failures += 1
            where = f"{self.source.name}/{os.fsdecode(self.rel)}".rstrip("/") + "/"
            self.run.emit(Event(FAILED, MODE, where, reason=reason, files=0))
        self.in_line = None
        self.superseded.clear()
        self.done.clear()
        self.opened.close()

    # -- paths -----------------------------------------------------------------
    def _rel_of(self, name: bytes) -> bytes:
        return self.rel + b"/" + name if self.rel else name

    def _label(self, name: bytes, folder: bool = False) -> str:
        return f"{self.source.name}/{os.fsdecode(self._rel_of(name))}" + ("/" if folder else "")

    def _container(self) -> bytes:
        """Where this folder's children's history folders live, relative to the root:
        the folder's own name at each level, unless that place is some path's history
        folder or not a real folder (then ``name~N``, recorded in the catalog)."""
        if self._container_cache is not None:
            return self._container_cache
        parts = self.rel.split(b"/") if self.rel else []
        path = b""
        known = self.run.containers        # this run's answers for the folders above
        for index, part in enumerate(parts):
            rel = b"/".join(parts[: index + 1])
            cached = known.get((self.source.name, rel))
            if cached is not None:
                path = cached
                continue
            alias = self.catalog.alias(self.source.name, "dir", rel)
            if alias is None:
                def usable(place: bytes) -> bool:
                    full = os.path.join(self.root, place)
                    return self.catalog.store_owner(self.source.name, place) != "store" and (
                        not os.path.lexists(full) or layout.real_dir(full))
                alias = self._free(path, part, usable)
                if alias != os.path.join(path, part):
                    if self.writes:
                        self.catalog.set_alias(self.source.name, "dir", rel, alias)
                else:
                    # its own name, nothing recorded: an answer no folder's undoing can
                    # change (no file has a folder's name in this run's walk)
                    known[(self.source.name, rel)] = alias
            path = alias
        self._container_cache = path
        return path

    def _free(self, parent: bytes, name: bytes, ok: Callable[[bytes], bool]) -> bytes:
        """``name``, or the first ``name~N`` beside it, that ``ok`` accepts."""
        candidate, n = os.path.join(parent, name), 2
        while not ok(candidate):
            candidate, n = os.path.join(parent, layout.alias_name(name, n)), n + 1
        return candidate

    def _new_store(self, name: bytes, quick: bool = True) -> tuple[bytes, bool]:
        """A history folder for a path that has none: ``<container>/<name>/`` if that
        place is nobody's (the catalog says) and not a symlink or file on disk, else
        ``<name>~N``; always recorded in the catalog, with the path's first row.

        Returns (the place, whether it is still to be made and checked on disk): when
        the catalog names nothing in the container (a new folder, a first backup), the
        place is ``<container>/<name>`` if ``_made`` can make it, and nothing is asked
        per file; else (``quick`` False) each candidate is asked of the catalog and of
        the disk."""
        rel = self._rel_of(name)
        if self._aliases is None:                 # one query per folder, not per file
            self._aliases = self.catalog.aliases_in(self.source.name, "file", self.rel)
        alias = self._aliases.get(name)
        if alias is not None:
            return alias, False
        container = self._container()
        if quick and self.writes:
            if self._unowned is None:
                self._unowned = self.catalog.nothing_under(self.source.name, container)
            if self._unowned:
                return store.inside(container) + name, True

        def usable(place: bytes) -> bool:
            full = os.path.join(self.root, place)
            return self.catalog.store_owner(self.source.name, place) is None and (
                not os.path.lexists(full) or layout.real_dir(full))

        place = self._free(container, name, usable)
        if place != os.path.join(container, name) and self.writes:
            self.catalog.set_alias(self.source.name, "file", rel, place)
            self._aliases[name] = place
        return place, False

    def _made(self, store_rel: bytes) -> bool:
        """Make the new history folder ``store_rel`` (a place no row names: see
        ``_new_store``), its container checked for planted links and made once per
        folder task; False when something is at that place on disk already."""
        parent = os.path.dirname(store_rel)
        if parent not in self._containers:
            store.ensure_real_dirs(self.root, parent)
            self.opened.makedirs(os.path.join(self.root, parent) if parent else self.root)
            self._containers.add(parent)
        hist = self.root_in + store_rel
        try:
            os.mkdir(hist, 0o700)
        except FileExistsError:
            return False
        self.opened.wrote(hist)                  # (a protected backup: read-only after)
        return True

    def _stamp(self, name: bytes) -> str:
        """This run's version time, made unique for this path (a path with no row yet
        has no version time to avoid)."""
        if name not in self.latest:
            return self.run.stamp
        return unique_stamp(self.catalog, self.source.name, self.rel, name, self.run.stamp)

    def _ensure_real_dirs(self, store_rel: bytes) -> None:
        """Refuse to write below a link or file planted where the history has a folder
        (store.ensure_real_dirs); the folders above a history folder, checked once per
        folder task."""
        parent, _, last = store_rel.rpartition(b"/")
        if parent not in self._real:
            store.ensure_real_dirs(self.root, parent)
            self._real.add(parent)
        store.ensure_real_dirs(os.path.join(self.root, parent) if parent else self.root, last)

    # -- entries -----------------------------------------------------------------
    def file(self, name_s: str, st: AnyStat) -> None:
        name = os.fsencode(name_s)
        row = self.latest.get(name)
        live = row if row is not None and row.entry == "file" and row.live else None
        if live is not None and change.unchanged(live.stored, st, self.checker):
            return
        # a path with no row at all has no content version (one query fewer per new file);
        # a path whose newest row is content has it as its last content (one fewer per edit)
        prev = None if row is None else row if row.kind in CONTENT_KINDS else \
            self.catalog.last_content(self.source.name, self.rel, name)
        store_rel, maybe_new = (prev.store, False) if prev is not None \
            else self._new_store(name)
        assert store_rel is not None
        hist = self.root_in + store_rel
        if not self.writes:
            self._dry_file(name, st, prev, live)
            return
        if not maybe_new:
            self._ensure_real_dirs(store_rel)
        copied = self._copy(name, hist, st.st_size)
        if copied is None:
            return
        tmp, cst, sha = copied.tmps[0], copied.stat, copied.sha256
        assert sha is not None
        racy = copied.racy             # (from the moment its reading began)
        self.racy |= racy
        if prev is not None and prev.sha256 == sha and live is not None:
            store.remove(tmp)
            self._same_bytes(name, live, cst, racy, store_rel)
            return
        try:
            fresh = maybe_new and self._made(store_rel)
            if maybe_new and not fresh:      # something is at that place: the careful way
                store_rel = self._new_store(name, quick=False)[0]
                hist = os.path.join(self.root, store_rel)
                self._ensure_real_dirs(store_rel)
            if not fresh:
                fresh = not os.path.lexists(hist)     # a new history folder holds no orphans
                self.opened.makedirs(hist)
            kind, obj, stamp, obj_sha, copy = self._store_version(name, hist, tmp, cst, prev,
                                                                  sha, fresh)
        except OSError as exc:
            store.remove(tmp)
            self._fail(name, exc.strerror or str(exc))
            return
        # the version before keeps its whole copy when its chain no longer rebuilds it
        # (a damaged object): that copy is then its only good record
        supersedes = prev is not None and prev.copy is not None and self._chain_intact(
            name, prev)
        row_id = self.catalog.add(
            returning=supersedes,
            source=self.source.name, dir=self.rel, name=name, entry="file", kind=kind,
            time=stamp, run_id=self.run.run_id, note=self.run.options.note, store=store_rel,
            object=obj, size=cst.st_size, sha256=sha, mode=cst.st_mode,
            mtime_ns=cst.st_mtime_ns, ctime_ns=cst.st_ctime_ns, ino=cst.st_ino, target=None,
            recorded=self.run.started, object_sha256=obj_sha, racy=int(racy) or None,
            copy=copy)
        if supersedes:
            assert row_id is not None
            self.catalog.set_copy(self.source.name, self.rel, name, row_id, copy)
        # what the history grows by: the object, and the new whole copy less the one it
        # supersedes (removed once this commits)
        # (the copy just read, when it is the object or the whole copy: its size known)
        placed = store.inside(hist) + obj
        if self.linked and placed in self.linked:
            written = 0
        else:
            written = copied.written if kind in WHOLE_KINDS else \
                store.written_size(placed, cst.st_size)
        whole = os.path.join(hist, copy) if copy is not None else None
        if whole is not None and whole not in self.linked:
            written += copied.written
        if supersedes:
            assert prev is not None and prev.copy is not None
            old = os.path.join(hist, prev.copy)
            self.superseded.append(old)
            self.catalog.discard(os.path.relpath(old, os.path.dirname(os.path.dirname(
                self.root))))                    # (removed after the commit; see finish)
            written = max(written - store.written_size(old, prev.size or 0), 0)
        self.done.append(Event(NEW if live is None else UPDATED, MODE, self._label(name),
                               size=written, target=whole or placed))

    def _chain_intact(self, name: bytes, prev: Row) -> bool:
        """Do the objects from ``prev``'s last whole object on still hold what they
        held when stored (their checksums)?  Then the chain rebuilds ``prev``, as it
        did when each object was checked at writing, and its whole copy may go."""
        chain = self.catalog.chain(self.source.name, self.rel, name, prev.id)
        if chain is None:
            return False
        with store.Under(self.root) as under:
            for store_rel, obj, sha in chain:
                try:
                    if under.sha256(os.path.join(store_rel, obj)) != sha:
                        return False
                except OSError:
                    return False
        return True

    def _same_bytes(self, name: bytes, live: Row, cst: os.stat_result, racy: bool,
                    store_rel: bytes) -> None:
        """The file holds its last version's bytes.  A new mode or mtime (a chmod, a
        touch) is a version of its own without an object (``meta``), so each run
        restores with its own; only a new mode is shown as updated.  Same mode and
        mtime (another inode or ctime, or a racily clean file read again): the record
        takes the new stat, which no restore uses."""
        if (live.mode, live.mtime_ns) == (cst.st_mode, cst.st_mtime_ns):
            if (live.ctime_ns, live.ino, bool(live.racy)) != (cst.st_ctime_ns, cst.st_ino, racy):
                self.catalog.touch(live.id, (self.source.name, self.rel), cst, racy)
            return
        self.catalog.add(source=self.source.name, dir=self.rel, name=name, entry="file",
                         kind="meta", time=self._stamp(name), run_id=self.run.run_id,
                         note=self.run.options.note, store=store_rel, object=None,
                         size=cst.st_size, sha256=live.sha256, mode=cst.st_mode,
                         mtime_ns=cst.st_mtime_ns, ctime_ns=cst.st_ctime_ns, ino=cst.st_ino,
                         target=None, recorded=self.run.started, racy=int(racy) or None)
        if live.mode is None or stat.S_IMODE(live.mode) != stat.S_IMODE(cst.st_mode):
            self.done.append(Event(UPDATED, MODE, self._label(name),
                                   reason=f"mode {stat.S_IMODE(cst.st_mode):04o}"))

    def _copy(self, name: bytes, hist: bytes, size: int = 0) -> store.Copied | None:
        """The file read into one temporary copy (its sha256 known), or None."""
        src = self.src_in + name
        handed = self.handed.pop(name, None)
        ahead = False
        if handed is None:                    # read ahead by pipeline.reader?
            handed = self.ahead.pop(name)
            ahead = handed is not None
        if handed is not None and handed.lost is not None:
            self._fail(name, handed.lost)     # the disk had no room for it in this run
            return None
        if handed is not None:                # read by the snapshot task of this run
            try:
                now: os.stat_result | None = os.lstat(src)
            except OSError:
                now = None
            if now is not None and store.same_stat(handed.stat, now) and \
                    not handed.racy:
                if not ahead:
                    return handed             # unchanged since: the same bytes
                try:
                    if store.made_ahead(handed):
                        return handed
                except OSError as exc:
                    self._fail(name, exc.strerror or str(exc))
                    return None
            self.run.drop_handed({name: handed})
        for _attempt in range(RETRIES):
            try:
                return store.copy_to_tmps(src, (self.run.staging,), hashed=True,
                                          progress=self.run.mover(size))
            except store.SourceChanged:
                continue
            except FileNotFoundError as exc:
                if not os.path.lexists(src):
                    return None                  # deleted since the scan: next run records it
                self._fail(name, exc.strerror or str(exc))    # (the staging folder is gone)
                return None
            except OSError as exc:
                self._fail(name, exc.strerror or str(exc))
                return None
        self._fail(name, "kept changing while it was read; will retry next run")
        return None

    def _store_version(self, name: bytes, hist: bytes, tmp: bytes, cst: os.stat_result,
                       prev: Row | None, sha: str, fresh: bool = False
                       ) -> tuple[str, bytes, str, str, bytes | None]:
        """Write the version's object (step 1): the baseline of a new file, else a diff
        or a binary delta from the version before it, else a full copy.  Once
        ``COPY_AFTER`` changes follow the last whole object, the new version is kept
        whole as well (its copy), so that no change reads through a longer chain
        first.  Every name is new in this history folder.

        Returns (kind, object, version time, sha256 of the object, whole copy or None).
        """
        stamp = self._stamp(name)
        if not fresh:
            self._remove_orphans(name, hist)
        if prev is None:
            obj = baseline_name(name, self.run.stamp[:10])
            if not fresh:
                obj = self._unused(hist, obj)
            self._place(tmp, store.inside(hist) + obj, sha, cst.st_size, fresh)
            return "baseline", obj, stamp, sha, None
        diff_name, full_name = version_names(name, stamp)
        diff_name, full_name = self._unused(hist, diff_name), self._unused(hist, full_name)
        diff = self._diff(name, hist, tmp, cst, prev)
        delta = None if diff is not None else self._delta(hist, tmp, cst, prev, sha)
        copy = (diff is None and delta is None) or self.catalog.chain_length(
            self.source.name, self.rel, name) + 1 >= COPY_AFTER
        if copy:
            self.opened.makedirs(os.path.join(hist, layout.versions_dir(name)))
        if diff is not None or delta is not None:
            self.opened.makedirs(os.path.join(hist, layout.diffs_dir(name)))
        if diff is not None:
            store.write_new(os.path.join(hist, diff_name), diff, self.run.staging)
            self.opened.wrote(os.path.join(hist, diff_name))
        elif delta is not None:
            delta_tmp = delta[0]
            diff_name = self._unused(hist, layout.delta_name(name, stamp))
            try:
                store.place(delta_tmp, os.path.join(hist, diff_name))
            finally:
                store.remove(delta_tmp)
            self.opened.wrote(os.path.join(hist, diff_name))
        if copy:
            self._place(tmp, os.path.join(hist, full_name), sha, cst.st_size)
        else:
            store.remove(tmp)
        if diff is not None:
            return ("diff", diff_name, stamp, hashlib.sha256(diff).hexdigest(),
                    full_name if copy else None)
        if delta is not None:
            return "delta", diff_name, stamp, delta[1], full_name if copy else None
        return "full", full_name, stamp, sha, None

    def _place(self, tmp: bytes, dst: bytes, sha: str, size: int, fresh: bool = False
               ) -> None:
        """Give the new version's bytes the name ``dst``: a hard link to a stored file
        that holds them already (a renamed, moved or copied file: objects are immutable,
        so sharing one is safe; never the mirror's, which a person may edit), checked
        against the checksum first; else the copy just read (``fresh``: ``dst`` is in
        the history folder this task just made, which holds nothing: renamed there)."""
        if size > 0:
            for source, rel in self.catalog.holding(sha, size):
                root = os.path.join(os.path.dirname(self.root), os.fsencode(source))
                try:
                    if store.sha256_under(root, rel) != sha:
                        continue                 # damaged: verify names it; not shared
                    faults.point("rename")
                    os.link(os.path.join(root, rel), dst)
                except OSError:
                    continue                     # gone, a link, too many links: next
                store.remove(tmp)
                self.linked.add(dst)
                self.opened.wrote(dst)
                return
        store.place(tmp, dst, empty_folder=fresh)
        self.opened.wrote(dst)

    def _unused(self, hist: bytes, rel: bytes) -> bytes:
        """``rel``, or ``rel~N``: a name nothing in the history folder has."""
        candidate, n = rel, 2
        while os.path.lexists(os.path.join(hist, candidate)):
            head, _, base = rel.rpartition(b"/")
            candidate = (head + b"/" if head else b"") + layout.alias_name(base, n)
            n += 1
        return candidate

    def _inside(self, hist: bytes) -> bytes:
        """A history folder's path relative to the root (``hist`` is below it)."""
        prefix = self.root + b"/"
        return hist[len(prefix):] if hist.startswith(prefix) else os.path.relpath(hist, self.root)

    def _remove_orphans(self, name: bytes, hist: bytes) -> None:
        """Objects of a run killed before their rows were committed, and whole copies
        superseded by a run killed before it removed them: no row names them, and a
        user applying diffs by hand must not meet them.  What is an orphan is what no
        row of this history folder names."""
        try:
            if not stat.S_ISDIR(os.lstat(hist).st_mode):
                return
        except FileNotFoundError:
            return                 # (a symlink's history is its rows: it has no folder)
        store_rel = self._inside(hist)
        referenced = self.catalog.referenced(self.source.name, store_rel)
        layout.sweep(hist, name, referenced, keep_current=False, opening=self.opened.folder)

    def _diff(self, name: bytes, hist: bytes, tmp: bytes, cst: os.stat_result,
              prev: Row) -> bytes | None:
        """The unified diff previous -> new, or None when the version is kept whole.
        The previous version is its whole file, or rebuilt from its chain (a text file
        under ``max_diff_bytes``, fewer than ``COPY_AFTER`` diffs)."""
        whole = prev.whole
        if cst.st_size > self.max_diff or (prev.size or 0) > self.max_diff:
            return None
        with open(tmp, "rb") as fh:
            new = fh.read()
        if not textdiff.is_text(new):
            return None                          # (binary now: the version before not read)
        if whole is None:
            try:
                old = rebuild(Path(os.fsdecode(self.root)),
                              self.catalog.history(self.source.name, self.rel, name), prev)
            except RebuildError:
                return None                      # damaged: keep the new version whole
        else:
            try:  # never through a link, never from a device: the backup may be tampered
                old = store.read_under(self.root, os.path.join(self._inside(hist), whole))
            except OSError:
                return None
            if hashlib.sha256(old).hexdigest() != prev.sha256:
                return None                      # damaged: keep the new version whole
        if old == new or not textdiff.is_text(old):
            return None                          # (same bytes: a re-created file, kept whole)
        label = os.path.basename(name)
        return textdiff.make_diff(old, new, label, label)

    def _delta(self, hist: bytes, tmp: bytes, cst: os.stat_result, prev: Row, sha: str
               ) -> tuple[bytes, str] | None:
        """A binary delta from the version before to the new one, in a temporary
        file: (its path, its sha256); None when the version is kept whole (too small,
        not much smaller than the file, a version before that is not the one the
        catalog names, or one rebuilt from text diffs).  The version before is read
        where it is stored: its whole file, or its last whole object and the deltas
        after it (``rebuild.open_chain``), never written out."""
        if cst.st_size < bindelta.MIN_SIZE:
            return None
        fds: list[int] = []
        out = store.tmp_name(self.run.staging)
        try:
            try:
                chain = open_chain(self.root, self.catalog.history(
                    self.source.name, self.rel, prev.name) if prev.whole is None else [prev],
                    prev, fds)
            except (OSError, bindelta.DeltaError):
                return None                      # damaged or gone: keep the new version whole
            if chain is None:
                return None
            new_fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
            try:
                faults.point("write")
                with os.fdopen(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                                       0o600), "wb") as fh:
                    size, basis = bindelta.make(chain.read, chain.size, new_fd, fh,
                                                cst.st_size // 2)
            finally:
                os.close(new_fd)
            # the delta is used only if the version before is the one the catalog names
            # and the delta rebuilds the new version from it (digests are never trusted)
            if size is None or basis != prev.sha256 or \
                    bindelta.sha256_patched(chain.read, chain.size, out) != sha:
                store.remove(out)
                return None
            return out, store.sha256_of(out)
        except bindelta.DeltaError:
            store.remove(out)
            return None
        except BaseException:
            store.remove(out)
            raise
        finally:
            for fd in fds:
                os.close(fd)

    def _dry_file(self, name: bytes, st: AnyStat, prev: Row | None,
                  live: Row | None) -> None:
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
        live = row is not None and row.entry == "link" and row.live
        if live and row is not None and row.target == target:
            if change.unchanged(row.stored, st, self.checker) or not self.writes:
                return
            if row.mtime_ns == st.st_mtime_ns and row.mode == st.st_mode:
                # same link, another ctime or inode
                self.catalog.touch(row.id, (self.source.name, self.rel), st)
                return
        if self.writes:
            store_rel = row.store if row is not None and row.store else \
                self._new_store(name, quick=False)[0]
            # the target is the version: the catalog holds it, no object on disk
            self.catalog.add(source=self.source.name, dir=self.rel, name=name, entry="link",
                             kind="link", time=self._stamp(name),
                             run_id=self.run.run_id, note=self.run.options.note, store=store_rel,
                             object=None, size=st.st_size, sha256=None, mode=st.st_mode,
                             mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns, ino=st.st_ino,
                             target=target, recorded=self.run.started)
        if live and row is not None and row.target == target:
            return                                 # a new mtime alone: not shown
        event = Event(UPDATED if live else NEW, MODE, self._label(name))
        if self.writes:
            self.done.append(event)
        else:
            self.run.emit(event)

    def folder_in_line(self, st: os.stat_result, empty: bool = False) -> None:
        """Every entry of this folder was handled: record the folder's own mode and mtime
        as a version when they changed (a restore at any time gives that time's), and
        the folder as in line with the backup, as the walk saw it."""
        if not self.writes:
            return
        if self.rel:
            parent, _, name = self.rel.rpartition(b"/")
            row = self.catalog.latest(self.source.name, parent, name)
            live = row if row is not None and row.live else None
            change = folder_change(live.entry if live else None, live.mode if live else None,
                                   live.mtime_ns if live else None, st, empty)
            if change is not None:
                kind, reason, shown = change
                self.done.append(Event(kind, MODE, f"{self.source.name}/{os.fsdecode(self.rel)}/",
                                       reason=reason, files=0, shown=shown))
                self.catalog.add(source=self.source.name, dir=parent, name=name, entry="dir",
                                 kind="dir", time=unique_stamp(self.catalog, self.source.name,
                                                               parent, name, self.run.stamp),
                                 run_id=self.run.run_id, note=self.run.options.note, store=None,
                                 object=None, size=None, sha256=None, mode=st.st_mode,
                                 mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns,
                                 ino=st.st_ino, target=None, recorded=self.run.started)
        self.in_line = st

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
            if row.entry == "dir":
                self.catalog.forget_folders(MODE, self.source.name, row.path)
            for item in [*below, row]:
                if item.store is not None and item.entry != "dir":
                    # objects of a killed run no row names (a diff, a copy on its way):
                    # no later version will sweep them, so the deletion does
                    self._remove_orphans(item.name, os.path.join(self.root, item.store))
                self.catalog.add(source=self.source.name, dir=item.dir, name=item.name,
                                 entry=item.entry, kind="deleted",
                                 time=unique_stamp(self.catalog, self.source.name, item.dir,
                                                   item.name, self.run.stamp),
                                 run_id=self.run.run_id,
                                 note=self.run.options.note, store=item.store, object=None,
                                 size=None, sha256=None, mode=None, mtime_ns=None, target=None,
                                 recorded=self.run.started)
        if row.entry == "dir":
            event = Event(DELETED, MODE, self._label(row.name, folder=True), files=files,
                          reason=plural(files, "file"))
        else:
            event = Event(DELETED, MODE, self._label(row.name))
        if self.writes:
            self.done.append(event)           # said once recorded (``finish``)
        else:
            self.run.emit(event)

    def _fail(self, name: bytes, reason: str) -> None:
        self.failures += 1
        self.run.emit(Event(FAILED, MODE, self._label(name), reason=reason))


@action(MODE)
def sweep(job: SweepJob, current: Session) -> TaskFailed | None:
    """Record a deletion for every path the catalog has live that the source lost."""
    current.settle()      # the folder tasks' lines first: what they deleted is said
    catalog = current.open_catalog()
    folders = {os.fsencode(f.rel): f for f in job.folders}
    unknown = [rel for rel, f in folders.items() if f.error is not None]
    # an entry the walk could not examine (no lstat: its folder at 0600) may be a folder:
    # nothing below it is known gone either (helper-34: its files were said deleted)
    unknown += [os.fsencode(f.child(name)) for f in job.folders for name, _why in f.unreadable]
    said = current.deleted(MODE)          # by the folder tasks of this run (a dry run's too)
    failures = session.unexamined(current, MODE, job.source.name, job.folders)
    gone: list[bytes] = []               # folders this sweep deleted, files below them too
    # a folder before what is below it: said once, with its files, as the mirror says it
    for row in sorted(catalog.live_below(job.source.name, b""),
                      key=lambda r: (r.path.count(b"/"), r.path)):
        if any(row.dir == g or row.dir.startswith(g + b"/") for g in gone):
            continue
        if f"{job.source.name}/{os.fsdecode(row.path)}" in said:
            if row.entry == "dir":
                gone.append(row.path)            # (a dry run's: what is below is live)
            continue
        if any(not u or row.dir == u or row.dir.startswith(u + b"/") for u in unknown):
            continue                             # cannot be listed: delete nothing
        folder = folders.get(row.dir)
        if folder is not None:
            kinds: dict[str, dict[str, Any]] = {"file": folder.files, "link": folder.links,
                                                "dir": dict.fromkeys(folder.subdirs)}
            names = kinds[row.entry]
            if os.fsdecode(row.name) in names or os.fsdecode(row.name) in dict(folder.unreadable):
                continue
        work = History(job.source, job.root, os.fsdecode(row.dir), current, job.max_diff_bytes)
        latest = work.latest.get(row.name)
        if latest is not None and latest.live:
            work.delete(latest)
            if latest.entry == "dir":
                gone.append(latest.path)
        work.finish()
        failures += work.failures
    if failures:
        return TaskFailed(f"{job.source.name}: {failures} path(s) not examined or "
                          "deletion(s) not recorded")
    return None
