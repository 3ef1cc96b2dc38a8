"""One doit invocation's backup run: its options, what each task did, the lock.

``dodo.py`` makes one ``Session`` per doit invocation (``doit_glue.configure``)
and hands it to everything that needs it: the task creators, each action (as
an argument), doit's checker and the reporter.  doit runs every action in this
process, one after the other; actions append events, the reporter prints them
as each task ends, the report task turns them into the run record.  Nothing
here is module-level state: two invocations in one process share nothing.
"""

from __future__ import annotations

import errno
import functools
import inspect
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from doit.exceptions import TaskFailed

from . import change, child
from .catalog import Catalog, InLine, Stored
from .commands import MODES_OF
from .control import RunControl
from .errors import PARTIAL, Failed, LockHeld, SnapbackError
from .layout import HISTORY, MODES
from .lock import Lock
from .plan import Plan, Source
from .protect import Opened, is_protected, lower_flag, opening, protect, raise_flag
from .reader import Ahead, Batch, Planned, Reader, drop
from .show import plural
from .store import Copied, clear_staging, real_dirs, remove

if TYPE_CHECKING:
    from .cmdline import CommandLine
    from .lstat import AnyStat
    from .scan import Folder, Scan

MOVE_ABOVE = 8 << 20    # files from this size move the progress display as they are copied
READ_AHEAD_FROM = 2     # files to copy in a run from which a second process reads ahead

# Kinds of per-file events, as printed.
NEW, UPDATED, DELETED, FAILED = "new", "updated", "deleted", "FAILED"


@dataclass
class Event:
    kind: str                 # NEW, UPDATED, DELETED, FAILED
    mode: str                 # "snapshot" / "versioned"
    path: str                 # "<source name>/<rel>" as the user sees it
    size: int = 0             # bytes written for this event
    reason: str = ""          # for FAILED, and detail for DELETED folders
    files: int = 1            # a deleted folder counts its files; a folder's own change 0
    target: bytes | None = None          # where it was stored (a link on a terminal)
    shown: bool = True        # False: recorded (the run is in the history), not printed


@dataclass
class Tally:
    """What the run's events add up to: the run record and the summary need counts,
    bytes, the failures and (for the cleanup tasks) the paths deleted, never a list
    of every file (a first backup of 240,000 files would hold 480,000 events)."""
    files: dict[tuple[str, str], int] = field(default_factory=dict)   # (mode, kind) ->
    written: dict[str, int] = field(default_factory=dict)    # mode -> bytes (new, updated)
    failed: list[Event] = field(default_factory=list)
    deleted: dict[str, set[str]] = field(default_factory=dict)   # mode -> paths, no "/"
    modes: set[str] = field(default_factory=set)             # modes with any event

    def add(self, event: Event) -> None:
        mode, kind = event.mode, event.kind
        self.modes.add(mode)
        self.files[(mode, kind)] = self.files.get((mode, kind), 0) + event.files
        if kind in (NEW, UPDATED):
            self.written[mode] = self.written.get(mode, 0) + event.size
        elif kind == FAILED:
            self.failed.append(event)
        elif kind == DELETED:
            self.deleted.setdefault(mode, set()).add(event.path.rstrip("/"))

    def any(self, modes: tuple[str, ...] | list[str]) -> bool:
        """Did the run do anything (or fail) in one of ``modes``?"""
        return any(m in self.modes for m in modes)


# Folder tasks' changes are committed together once the oldest of them is this many
# seconds old ($SNAPBACK_COMMIT_EVERY; 0: each folder its own commit).  Each commit
# costs the disk a flush (a ``syncfs``, then the catalog's own fsync).  With a commit
# per folder, a first backup of 50,000 files in 5,085 folders onto a new ext4 took
# 16-22 s (`snapshot`) and 30-41 s (`all`) against 4.1-4.3 s for rsync and `sync`;
# with a commit a second, 5.2-6.5 s and 16-18 s; a run after a 1% change, 2.6-3.9 s
# against 1.8-2.2 s (rsync 0.9-1.2 s); on tmpfs, where a flush costs nothing, 4-9%
# less (bench/RESULTS.md, session 11).  A kill loses the records of the folder at
# work and of those done in the last second: the next run finds their files and
# stores them again.
GROUP_SECONDS = 1.0


class Group:
    """The folder tasks' catalog changes, committed together every ``GROUP_SECONDS``
    (or each folder, with 0).

    Each commit first puts everything it names on stable storage (a ``syncfs``).
    Each folder is a savepoint of the open transaction
    (``Catalog.begin_folder``): a folder that fails is undone alone.  What a folder
    does once its changes are committed (its history lines, removing the whole
    copies it superseded, read-only again) waits for the commit; when the commit
    cannot be made (a full disk), every folder of the group says so instead.  A run
    killed before the commit loses the group's records: their files are found and
    stored again (or removed, when no row names them) by the next run.
    """

    def __init__(self) -> None:
        self.waiting: list[tuple[Callable[[], None], Callable[[BaseException], None]]] = []
        self.since: float | None = None
        try:
            self.every = float(os.environ.get("SNAPBACK_COMMIT_EVERY", GROUP_SECONDS))
        except ValueError:
            self.every = GROUP_SECONDS

    def done(self, catalog: Catalog, after: Callable[[], None],
             failed: Callable[[BaseException], None], hold: bool = False) -> None:
        """A folder's changes are complete: they join the group, committed when due
        (``hold``: with the next folder's, its versioned twin in `doit all`: one
        commit, one sync, for both records of a folder)."""
        catalog.end_folder()
        self.waiting.append((after, failed))
        if self.since is None:
            self.since = time.monotonic()
        if not hold and time.monotonic() - self.since >= self.every:
            self.flush(catalog)

    def flush(self, catalog: Catalog | None) -> None:
        """Commit the group now (the run's end, a cleanup task's start)."""
        waiting, self.waiting, self.since = self.waiting, [], None
        if catalog is None:
            return
        try:
            catalog.commit()
        except (OSError, sqlite3.Error) as exc:
            catalog.rollback()          # (a sync that failed left the transaction open)
            for _after, failed in waiting:
                failed(exc)
            return
        for after, _failed in waiting:
            after()

    def abort(self, catalog: Catalog, exc: BaseException) -> None:
        """The folder at work failed: its changes are undone; if SQLite dropped the
        whole transaction (a full disk), the folders waiting in it fail too."""
        if not catalog.abort_folder():
            waiting, self.waiting, self.since = self.waiting, [], None
            for _after, failed in waiting:
                failed(exc)


@dataclass
class Options:
    note: str = ""
    dry_run: bool = False
    verbose: bool = False
    quiet: bool = False
    report: str = ""
    allow_mass_delete: bool = False

    def merge(self, **given: Any) -> None:
        """Options reach several task creators; a value given to any of them wins."""
        for key, value in given.items():
            if value and hasattr(self, key):
                setattr(self, key, value)


def clock() -> float:
    """Now; or $SNAPBACK_NOW (an ISO time), to simulate histories of days and weeks
    (the tests of retention use it; a run's version times come from here)."""
    fixed = os.environ.get("SNAPBACK_NOW")
    if fixed:
        moment = datetime.fromisoformat(fixed)
        return (moment if moment.tzinfo else moment.astimezone()).timestamp()
    return time.time()




def modes_of(task_names: list[str]) -> list[str]:
    """The modes the tasks named on a command line run, in their fixed order."""
    wanted = {m for name in task_names for m in MODES_OF.get(name.split(":", 1)[0], ())}
    return [m for m in MODES if m in wanted]



class FolderJob(NamedTuple):
    """One folder task's work: bring ``folder`` of ``source`` in line in ``root``."""
    source: Source
    folder: Folder
    root: Path                # the mode's folder of this source in the destination
    checker: str              # "hash" or "mtime"
    cleanup: bool = True      # remove what left the folder (snapshot.cleanup)
    max_diff_bytes: int = 0   # versioned: larger files get full copies, not diffs
    sig: bytes | None = None  # the folder's signature for this mode (pipeline.scan)
    entered: bytes = b""      # the subfolders the walk entered, NUL-separated
    vanished: bool = False    # its source lost most of its files: nothing deleted, and
                              # the folder not recorded as in line (backup._vanished)
    # In line but for these files and links (an edit, a touch, a chmod): the others match
    # their records by pipeline.change's rule, and the folder's entries are the ones the
    # catalog records (for the mirror, the ones its folder held): the files judged are
    # these (and, in the mirror, those whose copy is not as the run left it).  None: all.
    only: frozenset[str] | None = None
    rules: bytes = b""        # the mode's rules (backup.fingerprint), kept with the listing
    listed: bytes | None = None   # its listing, when task creation made it already

    def judged_files(self, also: Collection[str] | None = None
                     ) -> Iterator[tuple[str, AnyStat]]:
        """The folder's files the task judges, (name, lstat): every file, or those in
        ``only`` and in ``also``."""
        files, only = self.folder.files, self.only
        if only is None:
            return iter(files.items())
        if not also:
            return ((name, st) for name, st in files.items() if name in only)
        return ((name, st) for name, st in files.items() if name in only or name in also)

    @property
    def label(self) -> str:
        return self.folder.label(self.source.name)

    def in_line(self) -> tuple[bytes | None, bytes, int]:
        """What the catalog keeps of the folder once it is in line, besides its stat."""
        return self.sig, self.entered, len(self.folder.files) + len(self.folder.links)

    def listing(self) -> bytes | None:
        """What the walk kept of the folder, kept with its signature (change.listing)."""
        if self.listed is not None:
            return self.listed
        folder = self.folder
        return change.listing(folder.files, folder.links, folder.subdirs)


class SweepJob(NamedTuple):
    """A cleanup task's work: what left the whole of ``source``."""
    source: Source
    folders: tuple[Folder, ...]
    root: Path
    max_diff_bytes: int = 0


@dataclass
class Session:
    plan: Plan
    options: Options = field(default_factory=Options)
    modes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    t0: float = field(default_factory=time.perf_counter)    # for durations, whatever the clock
    tally: Tally = field(default_factory=Tally)   # what every event of the run adds up to
    group: Group = field(default_factory=Group)   # folder changes waiting for their commit
    pending: list[Event] = field(default_factory=list)     # not yet printed
    selected: list[str] = field(default_factory=list)
    views: dict[tuple[str, str], list[Folder]] = field(default_factory=dict)  # (mode, source)
    scans: dict[str, Scan] = field(default_factory=dict)     # source -> its one walk
    # The catalog's folder rows the walk's shortcut read, for the first task creation
    # that judges with them (taken once: a later command on the line reads them anew)
    folder_rows: dict[tuple[str, str], dict[bytes, InLine]] = field(default_factory=dict)
    # What the catalog records for each folder task's files (task -> path -> record), and
    # the walk's lstat of each file: doit's checker compares them (pipeline.doit_glue).
    expected: dict[str, dict[str, Stored]] = field(default_factory=dict)
    stats: dict[str, AnyStat] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)    # for stderr, each said once
    lines: list[str] = field(default_factory=list)    # for stdout (what auto-prune did)
    progress: Callable[[int, int], None] | None = None   # the reporter's bar: (bytes, files)
    moved: int = 0                          # bytes of the file at work the bar has shown
    protected: bool = False                 # the backup is kept read-only between runs
    protect_pending: bool = False           # plan says protect, the backup is not yet
    # A protected backup: this run flagged on disk that it may hold folders writable
    # (``protect.opening``), and whether a killed run had left that flag (then the whole
    # backup is protected again when this run ends)
    flagged: bool = False
    protect_again: bool = False
    run_id: str = ""
    line: CommandLine | None = None         # the command line as read (None: not known)
    ends_process: bool = False              # doit's own process: the reporter ends it
    first_run: bool = False                 # the catalog held no run before this one
    # `doit all` reads each file once: the files a folder's versioned task will record
    # ((source, folder) -> names), the folders whose versioned task will run (their
    # snapshot task's commit waits for it), and the copies the snapshot task made for
    # it, ready in the staging folder (``handoff``: (source, folder) -> name -> copy).
    tee: dict[tuple[str, bytes], set[bytes]] = field(default_factory=dict)
    twins: set[tuple[str, bytes]] = field(default_factory=set)
    # (source, folder) -> where its children's history folders live, when that is the
    # folder's own name at each level (pipeline.versioned.History._container)
    containers: dict[tuple[str, bytes], bytes] = field(default_factory=dict)
    handoff: dict[tuple[str, bytes], dict[bytes, Copied]] = field(default_factory=dict)
    # The files each folder task of the run's first mode will copy, in the order the
    # tasks run (pipeline.reader reads them ahead, in a second process):
    # (mode, source, folder) -> its path, its files' names and sizes
    ahead: dict[tuple[str, str, bytes], Planned] = field(default_factory=dict)
    reader: Reader | None = None
    index: dict[tuple[str, str, bytes], int] = field(default_factory=dict)
    first: int = 0             # the batch the reader started from
    ahead_next: int = 0        # the batch the next folder task asks for, in the plan's order
    # What task creation read of a folder's records, for its task (``Catalog.kept``)
    kept: dict[tuple[str, str, bytes], Any] = field(default_factory=dict)
    # A protected backup: what each folder task made writable (``opening``), made
    # read-only again at the run's end if its task could not (it failed on its way)
    opened: list[Opened] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.meta_dir: Path = self.plan.meta_dir
        self.control = RunControl(self.meta_dir)   # the lock, the catalog, the status
        self.started = clock()
        local = datetime.fromtimestamp(self.started, timezone.utc).astimezone()
        self.run_id = local.strftime("%Y%m%d-%H%M%S-") + f"{os.getpid() % 10000:04d}"
        self.stamp = local.strftime("%Y-%m-%d_%H-%M-%S")   # version times of this run

    # The run's lock and catalog are the controller's (pipeline.control).
    @property
    def lock(self) -> Lock | None:
        return self.control.lock

    @property
    def catalog(self) -> Catalog | None:
        return self.control.catalog

    @property
    def lock_error(self) -> str | None:
        return self.control.lock_error

    def open_catalog(self) -> Catalog:
        """The catalog, opened once per run: writable under the lock, else read-only."""
        catalog, opened = self.control.open_catalog()
        if opened:
            catalog.kept = self.kept
        if opened and catalog.writable:
            self._enter_order(catalog)
            self.empty_garbage(catalog)              # what a killed run left to remove
        return catalog

    def empty_garbage(self, catalog: Catalog) -> None:
        """Remove the stored files the catalog's commits no longer name (this run's, or
        a killed run's), then their rows."""
        gone = catalog.discarded()
        if not gone:
            return
        top = os.fsencode(self.plan.destination)
        for rel in gone:
            if type(rel) is not bytes or b"\0" in rel:
                continue        # (edited by hand: no path at all)
            parts = rel.split(b"/")
            if parts[0] != os.fsencode(HISTORY) or any(p in (b"", b".", b"..") for p in parts) \
                    or len(parts) < 4 or real_dirs(top, os.path.dirname(rel)) is not None \
                    or catalog.names(os.fsdecode(parts[1]), b"/".join(parts[2:])):
                continue        # only a plain file of the history no row names (a catalog
                                # edited by hand)
            try:
                remove(os.path.join(top, rel))
            except FileNotFoundError:
                pass
        catalog.forget_discarded(gone)

    def _enter_order(self, catalog: Catalog) -> None:
        """This run comes after every run the catalog holds, whatever the clock says:
        its id is made unique, and a clock behind the last run's is said once."""
        while catalog.run_taken(self.run_id):   # a clock set back into an earlier run's second
            head, _, pid = self.run_id.rpartition("-")
            self.run_id = f"{head}-{(int(pid) + 1) % 10000:04d}"
        catalog.run = (self.run_id, self.started)
        last = catalog.last_run()
        self.first_run = last is None
        if last is not None:
            self._record_stopped(catalog)
        if last is not None and last[1] > self.started:
            def local(t: float) -> str:
                return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")
            self.notes.append(
                f"snapback: this machine's clock ({local(self.started)}) is behind the last "
                f"run's ({local(last[1])}, run {last[0]}): this run still comes after it "
                "(runs are kept in the order they ran); check the clock")

    def _record_stopped(self, catalog: Catalog) -> None:
        """Every run whose versions the catalog holds is in the run log: a run that did
        not write its record (killed, interrupted, the machine went down, a log it could
        not write) gets one now, of mode ``stopped``, from what the catalog holds of it.
        The runs not yet known logged are checked against the log (normally the run
        before this one, whose record ends it), and noted as logged with this run's first
        commit.  (With a log or catalog that cannot be read or written, a later run does
        it.)"""
        from . import runlog  # (it imports this module; every backup run has loaded it)
        try:
            unlogged = catalog.unlogged_runs()
            if not unlogged:
                return
            done = []
            for run_id, started in unlogged:
                if not runlog.has_record(self.meta_dir, run_id):
                    changes = catalog.run_changes(run_id)
                    if any(changes):       # (one that recorded nothing owes no record)
                        runlog.append(self.meta_dir,
                                      runlog.stopped_record(run_id, started, changes))
                done.append(run_id)
            catalog.note_logged(done, self.started)
        except (OSError, sqlite3.Error):
            # a log or catalog that cannot be read or written: this run's own record or
            # writes say so; a later run records them
            return

    def settle(self) -> None:
        """Commit the folders' changes that wait for their group's commit."""
        self.group.flush(self.catalog)

    def emit(self, event: Event) -> None:
        self.tally.add(event)
        self.pending.append(event)

    def take_pending(self) -> list[Event]:
        pending, self.pending = self.pending, []
        return pending

    def start(self, selected: list[str], options: list[dict[str, Any]]) -> None:
        """The tasks the command line names, and their options (``--note``,
        ``--dry-run``...), as doit parsed them before any task is created."""
        self.selected = list(selected)
        self.modes = modes_of(self.selected)
        for given in options:
            self.options.merge(**given)

    def deleted(self, mode: str) -> set[str]:
        """The paths this run said ``mode`` deleted (without a folder's trailing /)."""
        return self.tally.deleted.get(mode, set())

    def tick(self, size: int) -> None:
        """A file of the folder at work was handled (the progress display moves by what
        its copy did not move it already)."""
        if self.progress is not None:
            self.progress(max(size - self.moved, 0), 1)
        self.moved = 0

    def mover(self, size: int) -> Callable[[int], None] | None:
        """For the copy of a file of ``size`` bytes: a function its copy loop calls with
        the bytes of each chunk, so that the display moves within a big file (None: no
        display, or a file too small to show movement)."""
        progress = self.progress
        if progress is None or size < MOVE_ABOVE:
            return None

        def move(nbytes: int) -> None:
            step = min(nbytes, size - self.moved)    # a copy tried again moves it no further
            if step > 0:
                self.moved += step
                progress(step, 0)
        return move

    # -- doit's uptodate of the report task (checked when it is reached) --
    def changed_nothing(self, modes: tuple[str, ...]) -> bool:
        """The report task is up to date when its modes' tasks changed nothing (their
        group committed first: the history's lines come with the commit)."""
        self.settle()
        return not self.protect_pending and not self.recorded(modes)

    def recorded(self, modes: tuple[str, ...]) -> bool:
        """Did the run record anything: a file's line, or a row in the catalog (a new
        mtime alone is a version without a line)?  Such a run has a run record: one
        the catalog holds rows of and the log does not list has ended before it
        (``_record_stopped``)."""
        return self.tally.any(modes) or (self.catalog is not None and
                                         self.catalog.rows_added > 0)

    def in_catalog(self) -> bool:
        """Does the catalog hold this run (a commit of it made)?  Asked once its commits
        are made or given up (the report task)."""
        catalog = self.catalog
        if catalog is None or not catalog.writable:
            return False
        try:
            return catalog.run_taken(self.run_id)
        except sqlite3.Error:
            return False

    @property
    def writes(self) -> bool:
        """May this run change the destination? Not in a dry run."""
        return not self.options.dry_run

    def acquire(self) -> None:
        """Take the destination's lock before the first write of the run."""
        if not self.writes:
            return
        first = self.lock is None
        named = dict.fromkeys(t.split(":", 1)[0] for t in self.selected)
        taken_over = self.control.acquire(f"doit {' '.join(named) or ' '.join(self.modes)}")
        if first and self.lock is not None and is_protected(self.meta_dir, self.plan.protect):
            self.flagged = True
            try:
                self.protect_again, moved = raise_flag(self.meta_dir)
                self._moved_aside(moved)
            except OSError:           # (a .snapback that cannot be written: the run says
                self.protect_again = True             # so; the whole backup, at its end)
        if taken_over and not self.options.quiet:
            self.notes.append(f"snapback: taking over the lock left by a run that is gone "
                              f"({taken_over})")

    @functools.cached_property
    def staging(self) -> bytes:
        """Where writes of the versioned history are prepared (same filesystem)."""
        return os.fsencode(self.meta_dir / "tmp")

    def hand_over(self, source: str, folder: bytes, name: bytes, copied: Copied) -> None:
        """The snapshot task's second copy of a file, for the folder's versioned task."""
        self.handoff.setdefault((source, folder), {})[name] = copied

    def take_over(self, source: str, folder: bytes) -> dict[bytes, Copied]:
        """The copies handed over for a folder's versioned task (``drop_handed`` what it
        does not use)."""
        return self.handoff.pop((source, folder), {})

    def read_ahead(self, mode: str, source: str, folder: bytes) -> Ahead:
        """The copies of a folder's files made ahead for its task (``pipeline.reader``),
        to take as the versioned task takes a handed copy (``drop_handed`` the rest).
        The reader starts with the first folder task of a run that copies at least
        ``READ_AHEAD_FROM`` files, on two CPUs or more; ``SNAPBACK_READ_AHEAD=0`` turns
        it off."""
        key = (mode, source, folder)
        if not self.writes or key not in self.ahead:
            return Ahead()
        if not self.index:
            if os.environ.get("SNAPBACK_READ_AHEAD") == "0" or child.cores() < 2 \
                    or sum(len(planned.sizes) for planned in self.ahead.values()) \
                    < READ_AHEAD_FROM:
                self.ahead.clear()
                return Ahead()
            self.index = {k: i for i, k in enumerate(self.ahead)}
        index = self.index.get(key)          # (None: planned after the reader started)
        if index is None:
            return Ahead()
        if self.reader is not None and index > self.ahead_next:
            # Not the planned order (folder tasks named on the command line: doit
            # snapshot:src/a snapshot:src/z): the reader starts again from this folder
            # rather than read every folder planned between into the staging folder
            self.reader.close()
            self.reader = None
        if self.reader is None:
            order = list(self.ahead)[index:]      # (made into batches by the child alone)
            try:
                self.reader = Reader(self.staging, (self._batch(k) for k in order))
            except OSError:                       # no process or pipe to be had (a limit)
                self.ahead.clear()
                return Ahead()
            self.first = index
        self.ahead_next = max(self.ahead_next, index + 1)
        if index < self.first:
            return Ahead()                   # before the reader's start: read it yourself
        return self.reader.folder(index - self.first,
                                  [name for name, _size in self.ahead[key].files()])

    def _batch(self, key: tuple[str, str, bytes]) -> Batch:
        """What the reader reads of a folder: each file once, twice for `doit all`'s
        files the history records too (``tee``)."""
        mode, source, folder = key
        planned = self.ahead[key]
        two = self.tee.get((source, folder), set()) if mode == "snapshot" else set()
        return Batch(planned.path, [(name, 2 if name in two else 1, size)
                                    for name, size in planned.files()])

    def read_ahead_off(self) -> None:
        """No more copies read ahead in this run (they cannot be put in place)."""
        self.ahead.clear()
        if self.reader is not None:
            self.reader.close()          # (its staging folder is emptied at release)

    def plan_ahead(self, mode: str, source: str, folder: bytes, path: bytes,
                   files: list[tuple[bytes, int]]) -> None:
        """At task creation: what the folder's task will copy (``read_ahead``)."""
        self.ahead[(mode, source, folder)] = Planned.of(path, files)

    def order_ahead(self, keys: list[tuple[str, str, bytes]]) -> None:
        """The folders planned, in the order their tasks run (`doit all`: each folder's
        snapshot task, then its versioned one), those left out after them."""
        if not self.index:                   # (not once the reader has its order)
            self.ahead = {**{k: self.ahead[k] for k in keys if k in self.ahead}, **self.ahead}

    def keep_records(self, catalog: Catalog) -> None:
        """Task creation's catalog keeps what it reads of a folder for the folder's task,
        unless the run's own connection holds changes it cannot see (a second command
        on the line made after the first's tasks ran, with commits grouped)."""
        written = self.catalog is not None and self.catalog.pending
        catalog.kept = None if written else self.kept

    def stop_reading(self) -> None:
        """End the reader: its copies no task took are removed with the staging folder's
        leftovers (this run's: the lock is held)."""
        if self.reader is not None:
            self.reader.close()
            self.reader = None
            clear_staging(Path(os.fsdecode(self.staging)))

    def drop_handed(self, copies: dict[bytes, Copied] | Ahead | None = None) -> None:
        """Remove copies no versioned task took (``copies``; None: all that are left)."""
        for group in [copies] if copies is not None else list(self.handoff.values()):
            drop(group)
        if copies is None:
            self.handoff.clear()

    def opening(self) -> Opened:
        """What a folder task makes writable in a protected backup, to be read-only again
        when it is done, and at the run's end at the latest (``release``)."""
        opened = Opened(self.protected)
        if self.protected:
            self.opened.append(opened)
        return opened

    def _reprotect(self) -> None:
        for opened in self.opened:       # (a task that ended on its way: a write the
            try:                         # catalog refused after it made folders writable)
                opened.close()
            except OSError:
                pass                     # (`doit protect` says what it cannot change)
        self.opened.clear()

    def _moved_aside(self, moved: str | None) -> None:
        if moved is not None:
            self.notes.append(f"snapback: warning: a folder stood where the run keeps its "
                              f"flag {opening(self.meta_dir)}; it was moved to {moved} "
                              "(snapback makes no such folder: look at it, then remove it)")

    def _unflag(self) -> None:
        """The run ends: what it opened is read-only again; after a killed run, the whole
        backup (what that run opened is in line since, and no run opens it again)."""
        if not self.flagged:
            return
        try:
            if self.protect_again:
                protect(self.plan.destination)
            self._moved_aside(lower_flag(self.meta_dir))
        except OSError as exc:       # (the flag stays: the next run tries again)
            self.notes.append(f"snapback: warning: {opening(self.meta_dir)} could not be "
                              f"removed ({exc.strerror or exc}): each run protects the whole "
                              "backup again until it is")
        self.flagged = self.protect_again = False

    def release(self) -> None:
        """Remove the files this run's commits no longer name, close the catalog and
        release the lock, whatever closing says: a catalog that cannot fold its journal
        back in (a full disk) keeps it, nothing committed is lost, and the next run
        finishes the job."""
        try:
            self.settle()
            self._reprotect()
            self._unflag()
            self.drop_handed()
            self.stop_reading()
            if self.catalog is not None:
                self.empty_garbage(self.catalog)
            self.control.release()
        except (OSError, sqlite3.Error) as exc:
            self.notes.append(f"snapback: warning: the catalog's journal was not folded back "
                              f"into it ({failure_reason(exc)}); what this run recorded is "
                              "kept there, and the next run folds it in")
        finally:
            self.control.release_lock()

    def release_lock(self) -> None:
        self.control.release_lock()


Job = TypeVar("Job", FolderJob, SweepJob)
Work = Callable[[Job, "Session"], "TaskFailed | None"]


def action(mode: str) -> Callable[[Work[Job]], Work[Job]]:
    """What every backup action does around its work: take the lock, refuse a
    folder that could not be listed (its backup is kept as it is), and never end
    in a traceback: an OS or database error (disk full, a path too long for the
    system...) rolls back the folder's catalog transaction and becomes a FAILED
    line for the folder, counting the files that got no line of their own, and a
    failed task, whose files doit checks again next run.  doit calls the action
    with (job, session)."""
    def wrap(work: Work[Job]) -> Work[Job]:
        @functools.wraps(work)
        def run_it(job: Job, session: Session) -> TaskFailed | None:
            folder = job.folder if isinstance(job, FolderJob) else None
            label = job.label if isinstance(job, FolderJob) else job.source.name
            start = len(session.pending)     # (taken by the reporter between tasks only)
            try:
                refused = begin(session, mode, label,
                                folder.error if folder is not None else None)
                if refused:
                    return refused
                return work(job, session)
            except (OSError, sqlite3.Error, SnapbackError) as exc:
                if session.catalog is not None:
                    session.group.abort(session.catalog, exc)
                reason = failure_reason(exc)
                files = unsaid(job, session.pending[start:], mode)
                detail = f" ({plural(files, 'file')} not backed up)" if files else ""
                session.emit(Event(FAILED, mode, label + "/", reason=reason + detail,
                                   files=files))
                return Failed(f"{label}: {reason}", getattr(exc, "status", PARTIAL))
        # doit asks each action's signature which of its own arguments to pass (none):
        # computed here once, not through the wrapper for every task it runs
        run_it.__signature__ = inspect.signature(work)  # type: ignore[attr-defined]
        return run_it
    return wrap


def unsaid(job: FolderJob | SweepJob, events: list[Event], mode: str) -> int:
    """The files and links of a folder job that its events say nothing of."""
    if not isinstance(job, FolderJob) or job.folder.error:
        return 0
    said = {e.path for e in events if e.mode == mode and e.kind in (NEW, UPDATED, FAILED)}
    names: list[str] = [*job.folder.files, *job.folder.links]
    return len([n for n in names if f"{job.label}/{n}" not in said])


# SQLite's words for a full disk: SQLITE_FULL, "database or disk is full" (a page, the
# WAL, a checkpoint), and SQLITE_IOERR_SHMSIZE, "disk I/O error" (the WAL's -shm file
# could not grow, when a catalog left in WAL mode is opened)
SQLITE_FULL = {13, 10 | 19 << 8}


def is_full(exc: BaseException | None) -> bool:
    """Is this error a full disk (or quota), said by the OS or by SQLite?"""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(exc, sqlite3.Error) and \
                getattr(exc, "sqlite_errorcode", None) in SQLITE_FULL:
            return True
        exc = exc.__context__          # (a SnapbackError raised from an sqlite3.Error)
    return False


def failure_reason(exc: BaseException) -> str:
    """One line for an OS or database error, a full disk said the same way wherever
    it struck (an object, a diff, the catalog, its journal)."""
    text = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
    if is_full(exc) and not isinstance(exc, OSError):
        return f"{os.strerror(errno.ENOSPC)} ({text})"
    return text


def unexamined(session: Session, mode: str, source: str, folders: Iterable[Folder]) -> int:
    """`doit cleanup` (no folder task says it): a FAILED line for each folder the walk
    could not list and each entry it could not examine, whose content the sweep leaves
    as it is; how many."""
    count = 0
    for folder in folders:
        if folder.error is not None:
            session.emit(Event(FAILED, mode, folder.label(source) + "/",
                               reason=f"cannot list: {folder.error}"))
            count += 1
        for name, why in folder.unreadable:
            session.emit(Event(FAILED, mode, f"{folder.label(source)}/{name}", reason=why))
            count += 1
    return count


def begin(session: Session, mode: str, label: str, error: str | None = None
          ) -> TaskFailed | None:
    """Take the lock; refuse a folder that could not be listed.  None means: go on."""
    try:
        session.acquire()
    except LockHeld as exc:
        return TaskFailed(str(exc))
    if session.lock is not None:
        try:
            session.lock.announce()
        except OSError:                  # (a full disk): the lock holds without its note
            session.lock.announced = True
    if error is not None:
        session.emit(Event(FAILED, mode, label + "/", reason=f"cannot list: {error}"))
        return TaskFailed(f"{label}: cannot list the folder")
    return None
