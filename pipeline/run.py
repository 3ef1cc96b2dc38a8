"""The run in progress: options, what each subtask did, the lock, the clock.

doit runs every action in this process, one after the other, so the actions,
the checker, the state backend and the reporter share this one object
(``RUN``).  Actions append events; the reporter prints them as each task ends;
the report task turns them into the run record.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from doit.exceptions import TaskFailed

from .errors import LockHeld
from .catalog import Catalog, open_catalog
from .lock import Lock
from .store import clear_staging, make_destination

# Kinds of per-file events, as printed.
NEW, UPDATED, DELETED, FAILED = "new", "updated", "deleted", "FAILED"


@dataclass
class Event:
    kind: str                 # NEW, UPDATED, DELETED, FAILED
    mode: str                 # "snapshot" / "versioned"
    path: str                 # "<source name>/<rel>" as the user sees it
    size: int = 0             # bytes written for this event
    reason: str = ""          # for FAILED, and detail for DELETED folders
    files: int = 1            # a deleted folder counts its files
    target: Path | None = None


@dataclass
class Options:
    note: str = ""
    dry_run: bool = False
    verbose: bool = False
    quiet: bool = False
    report: str = ""

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


@dataclass
class Run:
    options: Options = field(default_factory=Options)
    modes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    t0: float = field(default_factory=time.perf_counter)    # for durations, whatever the clock
    events: list[Event] = field(default_factory=list)
    pending: list[Event] = field(default_factory=list)     # not yet printed
    selected: list[str] = field(default_factory=list)
    views: dict[tuple[str, str], list] = field(default_factory=dict)  # (mode, source) -> folders
    lock: Lock | None = None
    catalog: Catalog | None = None
    protected: bool = False                 # the backup is kept read-only between runs
    protect_pending: bool = False           # plan says protect, the backup is not yet
    lock_error: str | None = None
    meta_dir: Path | None = None
    run_id: str = ""

    def __post_init__(self) -> None:
        self.started = clock()
        local = datetime.fromtimestamp(self.started, timezone.utc).astimezone()
        self.run_id = local.strftime("%Y%m%d-%H%M%S-") + f"{os.getpid() % 10000:04d}"
        self.stamp = local.strftime("%Y-%m-%d_%H-%M-%S")   # version times of this run

    def open_catalog(self) -> Catalog:
        """The catalog, opened once per run: writable under the lock, else read-only."""
        if self.catalog is None:
            assert self.meta_dir is not None
            self.catalog = open_catalog(self.meta_dir, writable=self.lock is not None)
        return self.catalog

    def emit(self, event: Event) -> None:
        self.events.append(event)
        self.pending.append(event)

    def take_pending(self) -> list[Event]:
        pending, self.pending = self.pending, []
        return pending

    @property
    def writes(self) -> bool:
        """May this run change the destination? Not in a dry run."""
        return not self.options.dry_run

    def acquire(self) -> None:
        """Take the destination's lock before the first write of the run."""
        if not self.writes or self.lock is not None:
            return
        if self.lock_error:
            raise LockHeld(self.lock_error)
        assert self.meta_dir is not None
        make_destination(self.meta_dir.parent)
        lock = Lock(self.meta_dir / "lock")
        try:
            lock.acquire(note=f"doit {' '.join(self.modes)}", announce=False)
        except LockHeld as exc:
            self.lock_error = str(exc)
            raise
        self.lock = lock
        clear_staging(self.meta_dir / "tmp")

    @property
    def staging(self) -> bytes:
        """Where writes of the versioned history are prepared (same filesystem)."""
        assert self.meta_dir is not None
        return os.fsencode(self.meta_dir / "tmp")

    def release(self) -> None:
        if self.catalog is not None:
            self.catalog.close()
            self.catalog = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None


RUN = Run()


def action(mode: str):
    """What every backup action does around its work: take the lock, refuse a
    folder that could not be listed (its backup is kept as it is), and never end
    in a traceback: an OS or database error (disk full, a path too long for the
    system...) becomes a FAILED line and a failed task, whose files doit checks
    again next run.  The action itself gets (job, run)."""
    def wrap(work):
        @functools.wraps(work)
        def run_it(job):
            current = RUN
            folder = getattr(job, "folder", None)
            label = job.label if folder is not None else job.source.name
            refused = begin(mode, label, folder.error if folder is not None else None)
            if refused:
                return refused
            try:
                return work(job, current)
            except (OSError, sqlite3.Error) as exc:
                if current.catalog is not None:
                    current.catalog.rollback()
                reason = getattr(exc, "strerror", None) or str(exc)
                current.emit(Event(FAILED, mode, label + "/", reason=reason))
                return TaskFailed(f"{label}: {reason}")
        return run_it
    return wrap


def begin(mode: str, label: str, error: str | None = None) -> TaskFailed | None:
    """Take the lock; refuse a folder that could not be listed.  None means: go on."""
    current = RUN
    try:
        current.acquire()
    except LockHeld as exc:
        return TaskFailed(str(exc))
    if current.lock is not None:
        current.lock.announce()
    if error is not None:
        current.emit(Event(FAILED, mode, label + "/", reason=f"cannot list: {error}"))
        return TaskFailed(f"{label}: cannot list the folder")
    return None


def reset() -> Run:
    """A fresh run context (each doit invocation in one process starts one)."""
    global RUN
    RUN = Run()
    return RUN


def current() -> Run:
    return RUN
