"""Snapshot mode: the actions that keep ``system_snapshot/<source>/`` a mirror.

``mirror_folder`` is the action of one ``snapshot:<source>/<dir>`` subtask.
doit decides *whether* a folder's task runs, against what the catalog records
(``pipeline.tasks``); the action then reconciles that one folder with its
mirror by the same rule (``pipeline.change``): an entry whose record matches
its lstat and whose mirror copy is in place is left alone; one whose bytes are
the same (compared, or by size and mtime with ``checker: mtime``) gets its new
mode and mtime; anything else is copied; what left the folder is removed, with
its records.  So the action is idempotent: a run killed at any point costs a
re-check, never a wrong mirror.  ``sweep`` (the cleanup task) is the same reconciliation for a whole
source, for ``doit cleanup`` and for runs where folders came or went.
"""

from __future__ import annotations

import errno
import os
import stat

from doit.exceptions import TaskFailed

from . import change, session, store
from .catalog import Catalog, Stored
from .lstat import AnyStat
from .scan import Folder
from .session import DELETED, FAILED, NEW, UPDATED, Event, FolderJob, Session, SweepJob, action
from .show import plural

MODE = "snapshot"
RETRIES = 3
_OWNER_RX = stat.S_IRUSR | stat.S_IXUSR


@action(MODE)
def mirror_folder(job: FolderJob, current: Session) -> TaskFailed | None:
    """Bring one mirror folder in line with its source folder."""
    folder = job.folder
    work = _Folder(job, current)
    for name, why in folder.unreadable:
        work._fail(name, why)
    try:
        work.open()
        for name, st in job.judged_files(also=work.misplaced_names()):
            work.file(name, st)
            current.tick(st.st_size)
    finally:
        current.drop_handed(work.ahead)       # copies read ahead for it, not used
    for name in folder.links:
        work.link(name)
    for name in folder.subdirs:
        work.subdir(name)
    if job.cleanup:
        for name in leftovers(folder, work.existing):
            work.delete(name)
        if job.only is None:          # (else the folder's records are its entries)
            work.forget_gone()
    work.close(complete=not work.failures)
    if work.failures:
        return TaskFailed(f"{job.label}: {work.failures} file(s) failed")
    return None


def leftovers(folder: Folder, existing: dict[str, os.stat_result]) -> list[str]:
    """Entries of a mirror folder that are no longer in the source folder (an
    entry that could not be examined is not "gone": its copy stays)."""
    kept = folder.files.keys() | folder.links.keys() | set(folder.subdirs)
    kept |= {name for name, _why in folder.unreadable}
    return sorted(name for name in existing if name not in kept)


class _Rows:
    """A folder's mirror records, read one entry at a time as they are asked for."""

    def __init__(self, catalog: Catalog, source: str, folder: bytes):
        self.catalog, self.source, self.folder = catalog, source, folder
        self.read: dict[bytes, Stored | None] = {}

    def get(self, name: bytes) -> Stored | None:
        if name not in self.read:
            self.read[name] = self.catalog.entry(self.source, self.folder, name)
        return self.read[name]


class _Folder:
    """One folder's reconciliation; in a dry run it decides and reports, writes nothing."""

    def __init__(self, job: FolderJob, current: Session):
        self.job, self.run = job, current
        self.writes = current.writes
        rel = job.folder.rel
        rel_b = os.fsencode(rel)      # (os.path.join: pathlib's / costs more, per folder)
        self.src = os.path.join(os.fsencode(job.source.path), rel_b) if rel \
            else os.fsencode(job.source.path)
        self.dst = os.path.join(os.fsencode(job.root), rel_b) if rel else os.fsencode(job.root)
        self.src_in, self.dst_in = store.inside(self.src), store.inside(self.dst)
        self.existing: dict[str, os.stat_result] = {}
        self.failures = 0
        # entries gone, removed (and said) once committed
        self.removals: list[tuple[str, bytes, Event]] = []
        self.racy = False                  # a record to compare by content next run
        self.catalog = current.open_catalog()
        self.folder_b = os.fsencode(rel)
        # the folder's records; in line but for some files (``FolderJob.only``), those of
        # the entries judged, read as they are (a few files of a large folder)
        self.rows: dict[bytes, Stored] | _Rows = \
            self.catalog.mirror_in(job.source.name, self.folder_b) if job.only is None \
            or self.catalog.keeps("mirror", job.source.name, self.folder_b) \
            else _Rows(self.catalog, job.source.name, self.folder_b)
        self.shas: dict[bytes, str] | None = None    # the records' checksums, when asked
        self.catalog.begin_folder()
        self.opened = current.opening()
        self.writable = False
        key = (job.source.name, self.folder_b)
        # its files read ahead (pipeline.reader; before its tee is taken: they are read
        # for that too)
        self.ahead = current.read_ahead(MODE, job.source.name, self.folder_b)
        self.tee = current.tee.pop(key, set()) if current.writes else set()
        self.twin = key in current.twins          # its versioned task runs next (`all`)
        current.twins.discard(key)

    def _searchable(self, st: os.stat_result) -> int | None:
        """The mirror folder has its source folder's mode (set when its task ends): one
        the run itself cannot list or enter (0600: its source could not be searched
        then) is opened for the task, which sets the source's mode again.  Returns the
        mode it had, if it was changed."""
        if not self.writes or st.st_mode & _OWNER_RX == _OWNER_RX:
            return None
        self.opened.folder(self.dst)
        os.chmod(self.dst, stat.S_IMODE(os.lstat(self.dst).st_mode) | _OWNER_RX)
        return stat.S_IMODE(st.st_mode)

    def _writing(self) -> None:
        """Before the first write into the mirror folder (a protected backup's folders
        are made writable only when something is written into them)."""
        if not self.writable:
            self.opened.folder(self.dst)
            self.writable = True

    def _label(self, name: str) -> str:
        return f"{self.job.label}/{name}"

    def open(self) -> None:
        # A link (or file) where the mirror has a folder is never followed: it goes, with
        # the records below it, and the folder is made again (only this run's own
        # symlinks, the copies of the source's, are links in the mirror).
        top = os.fsencode(self.job.root.parent.parent)        # the destination
        rel = self.dst[len(top):].lstrip(b"/")                # (dst is below it)
        bad = store.real_dirs(top, rel)
        if bad is not None and bad != self.dst and self.writes:
            inside = os.path.relpath(bad, os.fsencode(self.job.root))
            if inside.startswith(b".."):                   # system_snapshot/ or its source
                raise store.NotAFile(20, "is not a folder (a link or a file where the backup "
                                     "has a folder): not followed", os.fsdecode(bad))
            self.opened.folder(os.path.dirname(bad))
            os.unlink(bad)
            parent, _, name = inside.rpartition(b"/")
            self.catalog.drop_mirror(self.job.source.name, parent, name)
        try:
            st = os.lstat(self.dst)
        except FileNotFoundError:
            if self.writes:
                self.opened.makedirs(self.dst)
            return
        if not stat.S_ISDIR(st.st_mode):           # a file where a folder now is
            if self.writes:
                self.opened.folder(os.path.dirname(self.dst))
                store.remove(self.dst)
                self.opened.makedirs(self.dst)
            return
        self._searchable(st)
        with os.scandir(os.fsdecode(self.dst)) as entries:    # (names decoded as fsdecode
            for entry in entries:                              # does, in C)
                self.existing[entry.name] = entry.stat(follow_symlinks=False)

    def misplaced_names(self) -> set[str] | None:
        """The source files whose mirror copy is ``misplaced``, in one pass (a folder
        judged in part: ``FolderJob.only``); None when every file is judged."""
        if self.job.only is None:
            return None
        existing, regular = self.existing, stat.S_ISREG
        return {name for name, st in self.job.folder.files.items()
                if (old := existing.get(name)) is None or not regular(old.st_mode)
                or old.st_size != st.st_size or old.st_mtime_ns != st.st_mtime_ns}

    def misplaced(self, name: str, st: AnyStat) -> bool:
        """Is the mirror's copy of a source file not as a run left it, a regular file of
        the source's size and mtime (removed, replaced or edited there by hand)?"""
        old = self.existing.get(name)
        return old is None or not stat.S_ISREG(old.st_mode) or \
            (old.st_size, old.st_mtime_ns) != (st.st_size, st.st_mtime_ns)

    def file(self, name: str, st: AnyStat) -> None:
        name_b = os.fsencode(name)
        src, dst = self.src_in + name_b, self.dst_in + name_b
        rec = self.rows.get(name_b)
        old = self.existing.get(name)
        if not self.misplaced(name, st) and change.unchanged(rec, st, self.job.checker):
            return                                 # stored, and the copy is where it was put
        self._was_folder(name_b, rec)
        racy = rec is not None and rec.kind == "file" and rec.size is None
        same, unsure = self._same_bytes(src, dst, st, old, compare=racy) \
            if old is not None and stat.S_ISREG(old.st_mode) else (None, False)
        if old is not None and same is not None:
            self._metadata(name, dst, st, rec, old, same or None, racy=unsure)
            return
        if not self.writes:
            self.run.emit(Event(NEW if old is None else UPDATED, MODE, self._label(name),
                                size=st.st_size, target=dst))
            return
        self._writing()
        if old is not None and stat.S_ISDIR(old.st_mode):
            self._replace_folder(name, dst)        # a folder where a file now is
        # `doit all`: one reading gives the folder's versioned task its copy as well
        # (not of a file written to within the timestamps' tick, its mtime's or its
        # ctime's: a write after this reading could leave its stat as it was; the
        # versioned task reads it again)
        also = self.run.staging if name_b in self.tee and not store.racy(st) else None
        lost = None
        for _attempt in range(RETRIES):
            try:
                made = self._take_ahead(name_b, src, dst) or \
                    store.copy_file(src, dst, self.run.mover(st.st_size), also=also)
                break
            except store.SourceChanged:
                continue
            except FileNotFoundError as exc:
                if not os.path.lexists(src):
                    return                         # deleted since the scan: next run removes it
                # not the file: a folder it is copied into is gone (the staging folder or
                # the mirror folder removed under the run)
                self._fail(name, exc.strerror or str(exc))
                return
            except OSError as exc:
                if also is not None and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    # room for one copy may be left: the mirror's, read again alone; the
                    # history's copy failed, and its task says so
                    also, lost = None, exc.strerror or str(exc)
                    continue
                self._fail(name, exc.strerror or str(exc))
                return
        else:
            self._fail(name, "kept changing while it was read; will retry next run")
            return
        self.opened.wrote(dst)
        copied, digest = made.stat, made.sha256
        assert digest is not None
        racy = made.racy               # (from the moment its reading began)
        if lost is not None:
            self.run.hand_over(self.job.source.name, self.folder_b, name_b,
                               made._replace(lost=lost))
        elif made.tmps and not racy:
            self.run.hand_over(self.job.source.name, self.folder_b, name_b, made)
        elif made.tmps:          # written since the walk, within the tick: not handed over
            self.run.drop_handed({name_b: made})
        self.racy |= racy
        self.catalog.set_mirror(self.job.source.name, self.folder_b, name_b, copied,
                                digest, self.run.run_id, racy=racy)
        self.run.emit(Event(NEW if old is None else UPDATED, MODE, self._label(name),
                            size=made.written, target=dst))

    def _take_ahead(self, name: bytes, src: bytes, dst: bytes) -> store.Copied | None:
        """The file's copy read ahead (pipeline.reader), put in place, if the file is
        still as it was read (its lstat); its second copy, for the versioned task, is
        the result's ``tmps``.  None: the task reads the file itself."""
        copied = self.ahead.pop(name, None)
        if copied is None:
            return None
        try:
            now: os.stat_result | None = os.lstat(src)
        except OSError:
            now = None                         # (reading it says why, if it goes on)
        if now is None or not store.same_stat(copied.stat, now):
            self.run.drop_handed({name: copied})
            return None
        if not store.made_ahead(copied, placed=1):
            return None
        try:
            return store.place_ahead(copied, dst)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
        # The mirror is on a mount of its own (a btrfs subvolume, a bind mount): no copy
        # made in the staging folder can be renamed into it; the tasks read themselves
        self.run.read_ahead_off()
        return None

    def _same_bytes(self, src: bytes, dst: bytes, st: AnyStat,
                    old: os.stat_result, compare: bool = False) -> tuple[str | None, bool]:
        """Does the mirror copy hold the source's bytes?  (None: no; else their sha256,
        or "" when they were not read; whether the record is to be kept racily clean,
        so that the next run compares the bytes again whatever the checker).  checker:
        mtime trusts size and mtime, as rsync does, except for a racily clean record
        (``compare``); checker: hash compares the bytes."""
        if old.st_size != st.st_size:
            return None, False
        if self.job.checker == "mtime" and not compare:
            # (not read: kept racily clean; its new ctime and inode must not let
            # ``checker: hash`` take a file never compared as unchanged, helper-39)
            return ("", True) if old.st_mtime_ns == st.st_mtime_ns else (None, False)
        try:
            started = store.reading_starts()
            sha = store.same_content(src, dst)
            if sha is None:
                return None, False
            now = os.lstat(src)
        except OSError:
            return None, False
        # (not changed meanwhile; a new ctime alone, a chown or an indexer's mark during
        # the run, is no new content (helper-55: a `chown -R` during a run made the mirror
        # copy and report every file it compared as updated); the record keeps the
        # walk's stat and is kept racily clean (helper-56: with ``checker: mtime`` a write
        # that set the mtime back within that window went unseen), as is one whose
        # reading began within its times' tick, however late it ended (helper-57))
        if change.key(now, "hash") == change.key(st, "hash"):
            return sha, store.racy(st, started)
        same = (now.st_size, now.st_mtime_ns, now.st_mode, now.st_ino) == \
            (st.st_size, st.st_mtime_ns, st.st_mode, st.st_ino)
        return (sha, True) if same else (None, False)

    def _metadata(self, name: str, dst: bytes, st: AnyStat, rec: object,
                  old: os.stat_result, sha: str | None = None, racy: bool = False) -> None:
        """Same bytes (``sha``: their checksum, when they were compared): the copy takes
        the source's mode and mtime, the record its stat, kept racily clean when
        ``racy`` (``_same_bytes`` says when: the next run compares the bytes again)."""
        # a new mode is the source's, against its record (a protected backup's copy has
        # no write bits: helper-54 saw every file of a recreated tree "updated (mode)")
        if isinstance(rec, Stored) and rec.mode is not None:
            mode_changed = stat.S_IMODE(rec.mode) != stat.S_IMODE(st.st_mode)
        else:
            mode_changed = stat.S_IMODE(old.st_mode) not in (
                stat.S_IMODE(st.st_mode), store.kept_mode(st.st_mode, self.opened.protected))
        if self.writes:
            if store.set_file_meta(dst, old, st, self.opened.protected):
                self.opened.wrote(dst)
            # the recorded checksum holds only if the copy is the one the record describes
            # (a run killed between the copy and its record left a newer one, maybe of
            # the same size and mtime: the bytes compared are the measure, when read)
            described = isinstance(rec, Stored) and (rec.size, rec.mtime_ns) == \
                (old.st_size, old.st_mtime_ns)
            if sha is None and described and self.shas is None:   # (read once a folder)
                self.shas = self.catalog.mirror_shas(self.job.source.name, self.folder_b)
            if sha is None:
                sha = (self.shas.get(os.fsencode(name)) if self.shas and described
                       else None) or store.sha256_of(dst)
            self.racy |= racy
            same = isinstance(rec, Stored) and described and not racy and \
                change.unchanged(rec, st, "hash")
            if not same:                         # (a racily clean file read again: no write)
                self.catalog.set_mirror(self.job.source.name, self.folder_b,
                                        os.fsencode(name), st, sha, self.run.run_id, racy=racy)
        if mode_changed:
            self.run.emit(Event(UPDATED, MODE, self._label(name),
                                reason=f"mode {stat.S_IMODE(st.st_mode):04o}",
                                target=dst))

    def link(self, name: str) -> None:
        src = os.path.join(self.src, os.fsencode(name))
        dst = os.path.join(self.dst, os.fsencode(name))
        old = self.existing.get(name)
        try:
            target = os.readlink(src)
            now = os.lstat(src)
        except FileNotFoundError:
            return
        except OSError as exc:
            self._fail(name, exc.strerror or str(exc))
            return
        same = old is not None and stat.S_ISLNK(old.st_mode) and os.readlink(dst) == target
        if same and change.unchanged(self.rows.get(os.fsencode(name)), now, self.job.checker):
            return
        self._was_folder(os.fsencode(name), self.rows.get(os.fsencode(name)))
        if self.writes:
            self._writing()
            if old is not None and stat.S_ISDIR(old.st_mode):
                self._replace_folder(name, dst)
            try:
                store.copy_link(src, dst)
            except OSError as exc:
                self._fail(name, exc.strerror or str(exc))
                return
            self.catalog.set_mirror(self.job.source.name, self.folder_b, os.fsencode(name),
                                    now, None, self.run.run_id, kind="link")
        if not same:
            self.run.emit(Event(NEW if old is None else UPDATED, MODE, self._label(name),
                                target=dst))

    def subdir(self, name: str) -> None:
        """Make sure the subfolder exists; its own task fills it, sets its mode and
        records it."""
        old = self.existing.get(name)
        if old is not None and stat.S_ISDIR(old.st_mode):
            return
        if self.writes:
            self._writing()
            dst = os.path.join(self.dst, os.fsencode(name))
            if old is not None:
                store.remove(dst)
            os.mkdir(dst, 0o700)
            self.opened.wrote(dst)      # (read-only again even if its own task never runs)

    def _was_folder(self, name: bytes, rec: Stored | None) -> None:
        """The catalog still has a folder where a file or link now is (a run killed after
        the folder left the mirror, before its records went): its records go now."""
        if self.writes and rec is not None and rec.kind == "dir":
            self.catalog.drop_mirror(self.job.source.name, self.folder_b, name)

    def _replace_folder(self, name: str, dst: bytes) -> None:
        """A mirror folder gives way to a file or link: it goes with every record below it."""
        store.remove(dst)
        self.catalog.drop_mirror(self.job.source.name, self.folder_b, os.fsencode(name))

    def delete(self, name: str) -> None:
        dst = os.path.join(self.dst, os.fsencode(name))
        if store.is_tmp(name):                     # left by a killed run
            if self.writes:
                self._writing()
                store.remove(dst)
            return
        if self.writes:
            self._writing()
        is_dir = stat.S_ISDIR(self.existing[name].st_mode)
        try:
            count = _count(dst)
        except OSError as exc:
            self._fail(name, f"cannot remove from the mirror: {exc.strerror or exc}")
            return
        event = Event(DELETED, MODE, self._label(name) + ("/" if is_dir else ""),
                      files=count, reason=plural(count, "file") if is_dir else "")
        if self.writes:
            # removed once the catalog no longer names it (the group's commit), and said
            # then: a commit that fails (a full disk) leaves the copy where its record
            # says it is, and the run does not say it went
            self.catalog.drop_mirror(self.job.source.name, self.folder_b, os.fsencode(name))
            self.removals.append((name, dst, event))
        else:
            self.run.emit(event)

    def forget_gone(self) -> None:
        """Records of entries that are neither in the source folder nor in the mirror
        (a mirror copy removed by hand): the folder must not look stored for ever."""
        folder = self.job.folder
        kept = folder.files.keys() | folder.links.keys() | set(folder.subdirs)
        kept |= {name for name, _why in folder.unreadable}
        assert isinstance(self.rows, dict)       # (every record read: ``only`` is None)
        for name_b in self.rows:
            name = os.fsdecode(name_b)
            if name not in kept and name not in self.existing and self.writes:
                self.catalog.drop_mirror(self.job.source.name, self.folder_b, name_b)

    def close(self, complete: bool = True) -> None:
        """Commit; a folder whose entries were all handled is recorded as in line, as the
        walk saw it (changed since: the next run looks again)."""
        st = self.job.folder.stat
        if self.writes and complete and st is not None:
            rel = self.job.folder.rel
            if rel:
                parent, _, name = self.folder_b.rpartition(b"/")
                old = self.catalog.mirror_entry(self.job.source.name, parent, name)
                folder = self.job.folder
                change = folder_change(old.kind if old else None, old.mode if old else None,
                                       old.mtime_ns if old else None, st,
                                       empty=not (folder.files or folder.links or folder.subdirs))
                if change is not None:
                    kind, reason, shown = change
                    self.run.emit(Event(kind, MODE, self.job.label + "/", reason=reason,
                                        files=0, shown=shown))
                self.catalog.set_mirror(self.job.source.name, parent, name, st, None,
                                        self.run.run_id, kind="dir")
        if self.writes and st is not None:
            store.set_folder_meta(self.dst, st, self.opened.protected)
            if complete and not self.job.vanished:     # (the guard's measure stays)
                # in line, with the mirror folder's mtime as its filesystem keeps it (FAT,
                # exFAT, SMB keep coarser times than the source's), in the same commit as
                # the folder's records (one commit per folder, each a sync; in `doit all` the
                # versioned twin's commit takes them: ``hold``)
                sig, entered, count = self.job.in_line()
                sig = None if self.racy else sig
                self.catalog.set_folder(MODE, self.job.source.name, self.folder_b, st,
                                        sig, entered, count,
                                        mirror_mtime=os.lstat(self.dst).st_mtime_ns,
                                        listing=(self.job.rules, self.job.listing())
                                        if sig is not None else None)
            elif not complete:
                # not in line: an earlier run's row would say it is, while this task may
                # have changed the mirror folder (its mode, its entries), and the next
                # run would pass it by (helper-33)
                self.catalog.unset_folder(MODE, self.job.source.name, self.folder_b)
        self.run.group.done(self.catalog, self._committed, self._not_recorded, hold=self.twin)

    def _committed(self) -> None:
        """What the commit no longer names leaves the mirror; read-only again."""
        if self.removals:
            try:
                self.opened.folder(self.dst)      # (a read-only source folder's mode)
            except OSError:
                pass
        for name, dst, event in self.removals:
            try:
                store.remove(dst)
            except FileNotFoundError:
                pass
            except OSError as exc:         # (it stays, unnamed: the next run removes it)
                self._fail(name, f"cannot remove from the mirror: {exc.strerror or exc}")
                continue
            self.run.emit(event)
        st = self.job.folder.stat
        if self.removals and st is not None:   # the folder's mtime again, as recorded
            store.set_folder_meta(self.dst, st, self.opened.protected)
        self.removals.clear()
        self.opened.close()

    def _not_recorded(self, exc: BaseException) -> None:
        """The group's commit failed (a full disk): the catalog keeps what it had; the
        mirror, what was copied (its lines stand: the next run records them)."""
        self.failures += 1
        self.run.emit(Event(FAILED, MODE, self.job.label + "/", files=0, reason=(
            f"{session.failure_reason(exc)}: not recorded in the catalog; "
            "the next run records it")))
        self.removals.clear()             # named still: they stay
        self.opened.close()

    def _fail(self, name: str, reason: str) -> None:
        self.failures += 1
        self.run.emit(Event(FAILED, MODE, self._label(name), reason=reason))


def folder_change(kind: str | None, mode: int | None, mtime_ns: int | None,
                  st: os.stat_result, empty: bool) -> tuple[str, str, bool] | None:
    """How a folder's own change is reported, given what the backup recorded of it:
    new (printed when it is empty: otherwise its entries' lines say it), a new mode
    (printed), a new mtime alone (recorded, not printed: it moves whenever an entry
    comes or goes), or nothing."""
    if kind != "dir":
        return NEW, "", empty
    if mode != st.st_mode:
        return UPDATED, f"mode {stat.S_IMODE(st.st_mode):04o}", True
    if mtime_ns != st.st_mtime_ns:
        return UPDATED, "", False
    return None


def _count(path: bytes) -> int:
    """The files a removal of ``path`` takes (a folder: those below it)."""
    if not os.path.isdir(path) or os.path.islink(path):
        return 1
    return sum(len(files) for _r, _d, files in os.walk(path))


@action(MODE)
def sweep(job: SweepJob, current: Session) -> TaskFailed | None:
    """Remove from a source's whole mirror what is not in the source any more."""
    current.settle()      # the folder tasks' lines first: what they deleted is said
    kept = {folder.rel: folder for folder in job.folders}
    failures = session.unexamined(current, MODE, job.source.name, job.folders)
    said = current.deleted(MODE)          # by the folder tasks of this run (a dry run's too)
    for _rel, folder in kept.items():
        if folder.error is not None:
            continue                                # unknown content: remove nothing
        fjob = FolderJob(job.source, folder, job.root, "mtime", cleanup=True)
        work = _Folder(fjob, current)
        gone: list[str] = []
        was: int | None = None
        if os.path.isdir(work.dst) and not os.path.islink(work.dst):
            try:
                was = work._searchable(os.lstat(work.dst))
                with os.scandir(work.dst) as entries:
                    work.existing = {os.fsdecode(e.name): e.stat(follow_symlinks=False)
                                     for e in entries}
            except OSError as exc:                  # said, never taken as nothing gone
                failures += 1
                current.emit(Event(FAILED, MODE, fjob.label + "/",
                                   reason=f"cannot list the mirror folder: "
                                          f"{exc.strerror or exc}"))
            gone = [n for n in leftovers(folder, work.existing) if work._label(n) not in said]
        for name in gone:
            work.delete(name)
        if gone:
            work.close(complete=False)            # (the mirror folder's mode: its source's)
        else:
            if was is not None:
                os.chmod(work.dst, was)           # nothing to remove: as it was
            work.catalog.end_folder()             # nothing to remove: its savepoint goes
        failures += work.failures
    if failures:
        return TaskFailed(f"{job.source.name}: {failures} path(s) not examined or "
                          "removal(s) failed")
    return None
