"""Plan + walk + what the backup records -> doit task dictionaries.

One subtask per source folder (``snapshot:<source>/<dir>``) whose ``file_dep``
are the folder's kept files and symlinks whose lstat differs from what the catalog
records for them.  Whether it may be skipped is decided against the catalog, never
against a memory of doit's own: its ``uptodate`` is True only when the catalog
records this folder as brought in line with the backup at its current mode and
mtime, and records exactly the entries the walk kept (so a file that came back, or
is no longer ignored, makes it run); each file_dep is then compared by doit's
checker with what the catalog records for it (``pipeline.doit_glue``,
``pipeline.change``), by the rule that left the others out.  A folder that is not
in line runs whatever its files say: its task gets no ``file_dep`` (a first backup
of 240,000 files gives doit no 240,000 paths to hold and check).  Then one cleanup subtask per
source and a report task per command, which the group tasks (``snapshot``,
``all``) run after the folders, in that order.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import os
import sqlite3
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from doit.exceptions import TaskFailed

from . import change, child, layout, prune, reader, runlog, snapshot, versioned
from .catalog import Catalog, InLine, Stored, open_catalog
from .commands import BACKUP_COMMANDS, MODES_OF
from .errors import LockHeld, SnapbackError
from .plan import Plan, Source
from .protect import is_protected, marker, protect
from .scan import Entry, Folder, Known, Scan, Split, mode_view, settle, walk
from .selection import Selector, for_mode, mode_filter
from .session import FAILED, Event, FolderJob, Session, SweepJob, failure_reason


def scan_source(session: Session, source: Source, selector: Selector, catalog: Catalog) -> Scan:
    """Walk a source once per doit invocation, whichever commands ask for it."""
    if source.name not in session.scans:
        known, kept_before = _known(session, source, selector, catalog)
        scan = walk(source.path, selector, exclude=(session.plan.destination,), known=known,
                    split=_splitter(session, source), later=kept_before is not None)
        if kept_before is not None:
            settle(scan, selector, kept_before)
        session.scans[source.name] = scan
    return session.scans[source.name]


# A source whose folders the last run kept this many entries of, or more (files, links
# and folders), is walked by two processes (``scan.walk``'s split) on two CPUs or more.
SPLIT_FROM = 4000
# The second process's part of the walk, by weight: it also sends what it walked back
# through a pipe (pickled, then read by the walk's own process), so it takes a little
# less than half (at 50,000 files the walk waited 49 ms for it at one half, 16 ms at
# this share: a no-change run 572 ms against 593, bench/RESULTS.md)
CHILD_SHARE = 0.45


def _splitter(session: Session, source: Source) -> Split | None:
    """Where to split the walk of ``source``: the catalog's folder rows (the last run's)
    say how much lies below each folder the walk's stack holds, and the entries at the
    stack's bottom that weigh about half of it go to the second process.  None for a
    source no run has brought in line (a first backup: its walk is a small part of its
    run), below ``SPLIT_FROM``, on one CPU, or with ``SNAPBACK_WALK_SPLIT=0``
    (``SNAPBACK_WALK_SPLIT=N``: from N entries)."""
    setting = os.environ.get("SNAPBACK_WALK_SPLIT", "")
    least = int(setting) if setting.isascii() and setting.isdigit() else SPLIT_FROM
    tables = [rows for (_mode, name), rows in session.folder_rows.items()
              if name == source.name]
    seen = max(tables, key=len, default={})
    if least == 0 or child.cores() < 2 or not seen:
        return None
    keys = sorted(seen)
    below = [0]                               # entries of keys[:i], each folder counted too
    for key in keys:
        below.append(below[-1] + 1 + (seen[key].kept or 0))
    if below[-1] < least:
        return None
    weights: dict[str, int] = {}

    def weight(rel: str) -> int:
        found = weights.get(rel)
        if found is None:
            rel_b = os.fsencode(rel)
            if rel_b:
                row = seen.get(rel_b)
                first = bisect.bisect_left(keys, rel_b + b"/")   # what is below it
                last = bisect.bisect_left(keys, rel_b + b"0")    # ("0" sorts after "/")
                found = below[last] - below[first] + \
                    (1 + (row.kept or 0) if row is not None else 0)
            else:
                found = below[-1]
            weights[rel] = found
        return found

    def split(stack: list[Entry]) -> int | None:
        sizes = [weight(rel) for rel, _st, _layers in stack]
        total = sum(sizes)
        if total < least:
            return None
        best: float = total
        cut, share = None, 0
        aim = total * CHILD_SHARE
        for index, size in enumerate(sizes[:-1], start=1):   # the bottom ``index`` entries
            share += size
            if abs(aim - share) < best:
                best, cut = abs(aim - share), index
        if cut is None or min(sum(sizes[:cut]), sum(sizes[cut:])) * 10 < total * 3:
            return None
        return cut
    return split


def fingerprint(plan: Plan, mode: str, selector: Selector, source: Source) -> bytes:
    """What, besides a folder's listing, decides what a mode keeps of it and how: the
    rules of the walk and of the mode, the destination the walk leaves out, cleanup's
    setting, the checker (a file ``checker: mtime`` took as unchanged is looked at
    again under ``hash``)."""
    try:
        dest = os.stat(plan.destination)
        where: tuple[int, int] | None = (dest.st_dev, dest.st_ino)
    except OSError:
        where = None
    opts = plan.mode(mode)
    data = (mode, str(source.path), selector.fingerprint, where, opts.ignore, plan.exceptions,
            plan.use_default_ignores, mode == "snapshot" and opts.cleanup, plan.checker)
    return hashlib.blake2b(repr(data).encode("utf-8", "surrogateescape"),
                           digest_size=16).digest()


def mode_signature(sig: bytes, fingerprint: bytes) -> bytes:
    """A folder's signature for one mode, as its row in the catalog keeps it."""
    return hashlib.blake2b(sig + fingerprint, digest_size=16).digest()


def listing_rules(fingerprint: bytes, layers: bytes) -> bytes:
    """The rules a folder's listing is kept under: the mode's, and the ignore files in
    force in the folder (``Folder.layers``)."""
    return hashlib.blake2b(b"listing 2\0" + fingerprint + layers, digest_size=16).digest()


def _known(session: Session, source: Source, selector: Selector, catalog: Catalog
           ) -> tuple[Known, Callable[[Folder], bool] | None]:
    """The walk's shortcut for folders every mode of the run holds in line with their
    signature (``pipeline.scan``): they get no task; and, for a folder that changed,
    whether a mode kept exactly its files, links and subfolders under the same rules
    (``scan.settle``: they need no judging).  Not when the user names a folder's task
    or cleanup, or asks why each path was skipped (--verbose): then every folder is
    judged (and signed, as every backup run signs them)."""
    if not session.modes or session.options.verbose or \
            any(t not in MODES_OF or t == "cleanup" for t in session.selected):
        return (lambda _rel, _sig, _st: None), None
    plan = session.plan
    modes = tuple(session.modes)
    rows = {m: catalog.folders_seen(m, source.name) for m in modes}
    for mode, seen in rows.items():     # read once: the tasks made next judge with them
        session.folder_rows[(mode, source.name)] = seen
    prints = {m: fingerprint(plan, m, selector, source) for m in modes}
    mirror_root = os.fsencode(layout.mirror_root(plan.destination, source.name))
    extras = {m: mode_filter(plan.mode(m).ignore, f"{m}.ignore", plan.exceptions,
                             plan.use_default_ignores) for m in modes}
    kept_by: dict[tuple[str, str], bool] = {}

    def keeps(mode: str, rel: str) -> bool:
        """Does the mode keep this folder (its own ignores: versioned's .git/...)?  As
        ``scan.mode_view`` decides it; parents are asked first (the walk goes down)."""
        extra = extras[mode]
        if extra is None or not rel:
            return True
        parent = rel.rpartition("/")[0]
        kept = kept_by.get((mode, parent), True) and (
            extra.ignored_by(rel, True) is None or extra.enters(rel))
        kept_by[(mode, rel)] = kept
        return kept

    def known(rel: str, sig: bytes, st: os.stat_result) -> tuple[list[str], dict[str, int]] | None:
        rel_b = os.fsencode(rel)
        counts: dict[str, int] = {}
        entered: bytes | None = None
        found = {mode: rows[mode].get(rel_b) for mode in modes}
        in_line = {mode: row is not None and row.kept is not None
                   and row.sig == mode_signature(sig, prints[mode]) for mode, row in found.items()}
        keeping: Sequence[str] = modes
        if not all(in_line.values()):
            # A mode whose row is in line kept the folder under the rules its fingerprint
            # holds, and keeps() answers from those rules and ``rel`` alone: the modes'
            # own ignores are judged only for a folder some mode does not hold in line.
            keeping = [mode for mode in modes if keeps(mode, rel)]
            if not keeping:
                return [], dict.fromkeys(modes, 0)     # left out by every mode: not entered
        for mode in keeping:
            row = found[mode]
            if not in_line[mode] or row is None or row.kept is None:
                return None
            if entered is not None and row.entered != entered:
                return None
            entered = row.entered
            counts[mode] = row.kept
        if "snapshot" in keeping and not _mirror_untouched(mirror_root, rel_b, st,
                                                           rows["snapshot"].get(rel_b)):
            return None
        names = [os.fsdecode(n) for n in entered.split(b"\0")] if entered else []
        return names, counts

    def kept_before(folder: Folder) -> bool:
        rel_b = os.fsencode(folder.rel)
        for mode in modes:
            row = rows[mode].get(rel_b)
            # (the row's count of files and links kept, too: a listing alone edited by
            # hand does not make the rules keep what they leave out)
            if row is not None and row.sig is not None and \
                    row.kept == len(folder.files) + len(folder.links) and change.same_names(
                    catalog.listing(mode, source.name, rel_b, row.sig,
                                    listing_rules(prints[mode], folder.layers), keep=True),
                    folder.files, folder.links, folder.subdirs):
                return True
        return False
    return known, kept_before


def auto_prune(session: Session) -> None:
    """retention.auto: `doit all` prunes after a run that changed something, under
    the run's own lock and catalog connection; the reporter prints what it did."""
    plan = session.plan
    if session.protected:
        session.notes.append("snapback: retention.auto skipped: the backup is protected "
                             "(snapback unprotect, then snapback prune)")
        return
    outcomes = prune.run(session.open_catalog(), plan.destination, plan.retention,
                         session.started, plan.versioned.max_diff_bytes, dry_run=False)
    if outcomes:
        lines = prune.describe(outcomes, dry_run=False)
        runlog.append(session.meta_dir, runlog.prune_record(   # (part of this run)
            outcomes, lines[-1], session.run_id, session.started, auto=True))
        if not session.options.quiet:
            session.lines.extend(lines)


def finish(session: Session, modes: tuple[str, ...], label: str,
           after: Callable[[], None] | None = None) -> TaskFailed | None:
    """The report task's action: commit what the folders' tasks left waiting for
    their group's commit, protect the backup the first time the plan asks,
    append the run record to runs.jsonl when the run changed anything, then run
    ``after`` (the automatic prune of ``retention.auto``)."""
    session.settle()
    if not session.writes:
        return None
    try:
        session.acquire()
    except LockHeld as exc:            # the folders' tasks said so already
        return TaskFailed(str(exc))
    if session.protect_pending:                      # protect: true in the plan, first time
        protect(session.plan.destination)
        session.protect_pending = False
    if not session.recorded(modes):
        return None
    try:
        runlog.append(session.meta_dir, runlog.record(session, modes, label))
    except OSError as exc:            # (a later run records it from the catalog)
        return TaskFailed(f"cannot add this run to {session.meta_dir / layout.RUNS}: "
                          f"{exc.strerror or exc}; the backup itself is as the lines above say "
                          "(a later run records this one)")
    if after is not None and session.in_catalog():      # (the run changed the backup:
        try:                                            # helper-60, a full disk said twice)
            after()
        except (OSError, sqlite3.Error, SnapbackError) as exc:     # (a full disk)
            if session.catalog is not None:
                session.catalog.rollback()
            # (it may have committed some files' pruning before it stopped: helper-60 and
            # helper-61 saw "was not done" beside versions already dropped)
            return TaskFailed(f"retention.auto: the prune stopped ({failure_reason(exc)}) "
                              "before it was done: versions it dropped stay dropped, the next "
                              "run's prune does the rest; the backup itself is as the lines "
                              "above say")
    return None


def in_line(seen: tuple[int, int] | None, folder: Folder, recorded: dict[bytes, Stored],
            keeps_leftovers: bool, deps: list[Stored]) -> bool:
    """May this folder's task be skipped as far as the folder itself goes?  Only when
    the catalog says the mode brought it in line at its current mode and mtime, and
    holds exactly the entries the walk kept, each of the same kind (``deps``: the
    records found for the folder's files and links)."""
    st = folder.stat
    if st is None or folder.error is not None or folder.unreadable:
        return False                  # fails, and is tried again, every run
    if seen != (st.st_mode, st.st_mtime_ns):
        return False
    if len(deps) != len(folder.files) + len(folder.links):
        return False                  # a file or link the backup does not hold
    if any(recorded.get(n.encode(_FS, "surrogateescape"), _NONE).kind != "dir"
           for n in folder.subdirs):
        return False
    kinds = [r.kind for r in deps]
    if kinds.count("file") != len(folder.files):
        return False                  # a file where a link was, or back
    if keeps_leftovers:               # snapshot.cleanup: false keeps what left the source
        return True
    return len(recorded) == len(folder.files) + len(folder.links) + len(folder.subdirs)


def _mirror_untouched(mirror_root: bytes, rel: bytes, source_st: os.stat_result | None,
                      row: InLine | None) -> bool:
    """The mirror folder still has the mtime the run gave it (its source folder's, as
    the destination's filesystem keeps it): an entry removed or added in it by hand
    changed it, and its task looks again."""
    try:
        st = os.lstat(os.path.join(mirror_root, rel) if rel else mirror_root)
    except OSError:
        return False
    if source_st is None or not stat.S_ISDIR(st.st_mode):
        return False
    given = row.mirror_mtime if row is not None and row.mirror_mtime is not None \
        else source_st.st_mtime_ns
    return st.st_mtime_ns == given


def _listed(catalog: Catalog, mode: str, source: str, rules: bytes, judged: list[Folder],
            seen: dict[bytes, InLine], mirror_root: bytes
            ) -> dict[bytes, tuple[list[str], bytes]]:
    """The folders to judge whose entries are the ones listed when ``mode`` last brought
    them in line, under the same rules, at the same mode and mtime (and, for the mirror,
    a mirror folder no one touched): for each, its files and links whose lstat is not
    the one listed (``change.differing``), and its listing now (which its task keeps
    when it brings the folder in line).  Their other entries match their records by the
    argument that skips a folder whose signature is unchanged."""
    out: dict[bytes, tuple[list[str], bytes]] = {}
    for folder in judged:
        rel_b = os.fsencode(folder.rel)
        row, st = seen.get(rel_b), folder.stat
        if row is None or row.sig is None or row.kept is None or st is None or \
                folder.error is not None or folder.unreadable or \
                (row.st_mode, row.mtime_ns) != (st.st_mode, st.st_mtime_ns):
            continue
        if mode == "snapshot" and not _mirror_untouched(mirror_root, rel_b, st, row):
            continue
        now = change.listing(folder.files, folder.links, folder.subdirs)
        changed = change.differing(catalog.listing(mode, source, rel_b, row.sig,
                                                   listing_rules(rules, folder.layers)),
                                   now, folder.files, folder.links)
        if changed is not None and now is not None:
            out[rel_b] = (changed, now)
    return out


def _records(catalog: Catalog, mode: str, source: str, judged: int, folders: int
             ) -> Callable[[bytes], dict[bytes, Stored]]:
    """What ``mode`` records of each folder judged by its records: one query for the
    whole source when many folders are (a first run, a changed rule), else one per
    folder."""
    if judged > 64 and judged * 8 > folders:
        everything = catalog.records(mode, source)
        if mode == "snapshot":       # what its task's ``mirror_in`` reads: kept for it
            return lambda rel: catalog.keep_mirror(source, rel, everything.get(rel, {}))
        return lambda rel: everything.get(rel, _NO_RECORDS)
    # (each folder's records are kept for its task, which would read them again)
    return lambda rel: catalog.records_in(mode, source, rel, keep=True)


_NONE = Stored("", None, None, None, None, None)
_NO_RECORDS: dict[bytes, Stored] = {}
_FS = sys.getfilesystemencoding()         # os.fsencode, without a Python call per file


# A source that lost more than half of what the last run kept, and more than this many
# files, is taken as vanished (an unmounted disk, an emptied folder), not as deleted.
MASS_DELETE = 50


def _vanished(session: Session, mode: str, source: Source, folders: list[Folder],
              seen: dict[bytes, InLine]) -> bool:
    """Has ``source`` lost most of its entries since ``mode`` last brought it in line?
    Then nothing of it is deleted in this run (one FAILED line, exit status 1), unless
    the run says --allow-mass-delete."""
    before = sum(row.kept or 0 for row in seen.values())
    now = sum(f.count(mode) for f in folders)
    if before - now <= MASS_DELETE or now * 2 >= before or session.options.allow_mass_delete:
        return False
    session.emit(Event(FAILED, mode, f"{source.name}/", reason=(
        f"holds {now} of the {before} files the last run kept (unmounted, or emptied?): "
        "nothing of it was deleted from the backup; if they were really deleted, run "
        "again with --allow-mass-delete")))
    return True


def _history_gone(session: Session, catalog: Catalog, root: Path, source: Source) -> bool:
    """Is the history of ``source`` gone from the destination while the catalog names
    stored files in it (``versioned_backup/<name>/`` an unmounted disk or subvolume:
    its mount point empty, or no folder)?  Then the run writes nothing of it there, where
    the disk's return would hide what it wrote (one FAILED line, exit status 1)."""
    try:
        with os.scandir(root) as entries:
            # what no row names (a blank disk's lost+found, an empty folder left in the
            # mount point) is no sign of the history: one entry the catalog names is
            if any(not catalog.nothing_under(source.name, os.fsencode(e.name))
                   for e in entries):
                return False
    except FileNotFoundError:
        pass
    except OSError:
        return False                  # (unreadable: its tasks say so, file by file)
    if not catalog.names_objects(source.name):
        return False                  # (a first run; only symlinks, kept in the catalog)
    session.emit(Event(FAILED, "versioned", f"{source.name}/", reason=(
        f"the history is missing from the destination ({root} is empty or gone: an "
        "unmounted disk?): nothing was written to it; mount it and run again (doit "
        "verify says what the catalog names that is not there)")))
    return True


def _actions(mode: str) -> tuple[Any, Any]:
    """(folder action, sweep action) of one mode."""
    if mode == "snapshot":
        return snapshot.mirror_folder, snapshot.sweep
    return versioned.record_folder, versioned.sweep


def _root(plan: Plan, mode: str, source: Source) -> Path:
    if mode == "snapshot":
        return layout.mirror_root(plan.destination, source.name)
    return layout.history_root(plan.destination, source.name)




def backup_tasks(session: Session, command: str) -> Iterator[dict[str, Any]]:
    """The tasks of one backup command (``_tasks``), judged against the catalog.

    A run that may write takes the backup's lock before it reads the catalog, so
    what it skips is judged on what the backup holds when it runs, never on what
    another run was in the middle of changing.  When another run holds the lock
    every task is created to run, and each fails on the lock: nothing is done.
    """
    plan = session.plan
    if MODES_OF[command] and session.writes:
        try:
            session.acquire()
        except LockHeld:
            pass                      # every action says so; nothing is read or written
    catalog = open_catalog(plan.meta_dir, writable=False) if session.lock_error is None \
        else Catalog(plan.meta_dir / "-", writable=False)     # (read nothing)
    try:
        if session.lock is not None and catalog.has_garbage():
            session.open_catalog()    # files a killed run's commits no longer name: removed
        session.keep_records(catalog)
        yield from _tasks(session, command, catalog)
    finally:
        catalog.close()


def _tasks(session: Session, command: str, catalog: Catalog) -> Iterator[dict[str, Any]]:
    """The tasks of one backup command, from one walk of each source.

    Only the modes the command needs are created: doit pays per task even when
    it is up to date.  Two commands on one line share the walk.
    """
    plan = session.plan
    session.protected = is_protected(plan.meta_dir, plan.protect)
    session.protect_pending = plan.protect and not marker(plan.meta_dir).exists()
    modes = MODES_OF[command]
    selector = for_mode(plan.ignore, plan.exceptions, plan.use_default_ignores,
                        ignore_files=plan.ignore_files)
    scans = {s.name: scan_source(session, s, selector, catalog) for s in plan.sources}
    names: dict[str, tuple[list[str], list[str]]] = {}
    planned: dict[str, tuple[str, str, bytes]] = {}   # folder task -> its files read ahead
    stat_key = change.key_function(plan.checker)
    stored_key = change.stored_key_function(plan.checker)
    for mode in modes:
        opts = plan.mode(mode)
        extra = mode_filter(opts.ignore, f"{mode}.ignore", plan.exceptions,
                            plan.use_default_ignores)
        keeps_leftovers = mode == "snapshot" and not opts.cleanup
        tee = mode == "versioned" and "snapshot" in modes
        folder_tasks: list[str] = []
        cleanup_tasks: list[str] = []
        names[mode] = (folder_tasks, cleanup_tasks)
        action, sweep_action = _actions(mode)
        for source in plan.sources:
            root = _root(plan, mode, source)
            mirror_root = os.fsencode(root)
            seen = session.folder_rows.pop((mode, source.name), None)
            if seen is None:
                seen = catalog.folders_seen(mode, source.name)
            folders = mode_view(scans[source.name], extra)
            session.views[(mode, source.name)] = folders
            vanished = _vanished(session, mode, source, folders, seen)
            if mode == "versioned" and _history_gone(session, catalog, root, source):
                continue              # nothing written where the history is not
            print_ = fingerprint(plan, mode, selector, source)
            judged = [] if command == "cleanup" else \
                [f for f in folders if f.kept is None or vanished]
            listed = {} if vanished else _listed(catalog, mode, source.name, print_, judged,
                                                 seen, mirror_root)
            records = _records(catalog, mode, source.name, len(judged) - len(listed),
                               len(folders))
            for folder in judged:
                name = f"{source.name}/{folder.rel}" if folder.rel else source.name
                rel_b = os.fsencode(folder.rel)
                task_name = f"{mode}:{name}"
                row = seen.get(rel_b)
                changed, now = listed.get(rel_b, (None, None))
                if changed is not None:
                    # in line by its listing but for these files and links: their records
                    # alone are read
                    found = catalog.records_of(mode, source.name, rel_b, [
                        n.encode(_FS, "surrogateescape") for n in changed])
                    same = True
                    differ = [(n, st, rec) for n, st, rec in (
                        (n, folder.files[n] if n in folder.files else folder.links[n],
                         found.get(n.encode(_FS, "surrogateescape"))) for n in changed)
                        if rec is None or stored_key(rec) != stat_key(st)]
                else:
                    recorded = records(rel_b)
                    recs = [recorded.get(n.encode(_FS, "surrogateescape"))
                            for n in (*folder.files, *folder.links)]
                    same = in_line((row.st_mode, row.mtime_ns) if row else None, folder,
                                   recorded, keeps_leftovers, [r for r in recs if r is not None])
                    if same and mode == "snapshot":
                        same = _mirror_untouched(mirror_root, rel_b, folder.stat, row)
                    differ = [(n, st, rec) for n, st, rec in zip(
                        (*folder.files, *folder.links),
                        (*folder.files.values(), *folder.links.values()), recs, strict=True)
                        if rec is None or stored_key(rec) != stat_key(st)]
                folder_tasks.append(task_name)
                job = FolderJob(source, folder, root, plan.checker,
                                cleanup=(opts.cleanup if mode == "snapshot" else True)
                                and not vanished,
                                max_diff_bytes=plan.versioned.max_diff_bytes,
                                sig=mode_signature(folder.sig, print_)
                                if folder.sig and not vanished else None, vanished=vanished,
                                entered=b"\0".join(os.fsencode(n) for n in folder.entered),
                                rules=listing_rules(print_, folder.layers), listed=now)
                spec: dict[str, Any] = {"basename": mode, "name": name,
                                        "doc": f"{mode}: the folder {name}",
                                        "actions": [(action, [job, session])]}
                if same and not differ:
                    # In line, and every file as the catalog records it: the answer doit's
                    # checker would give (the same rule on the same lstat, pipeline.change),
                    # given here without a file_dep and four doit calls per file.  A folder
                    # whose signature the catalog lacks (format 2, a changed rule) runs once
                    # to record it: nothing is copied, the next run skips it at the walk.
                    signed = not session.writes or job.sig is None or \
                        (row is not None and row.sig == job.sig)
                    # (run to sign it: no file is judged, as none differs)
                    yield {**spec, "actions": [(action, [job._replace(only=frozenset()),
                                                         session])],
                           "file_dep": [], "uptodate": [signed]}
                    continue
                if session.writes:
                    stale = [(n.encode(_FS, "surrogateescape"), st.st_size)
                             for n, st, _rec in differ if n in folder.files]
                    small = [(n, size) for n, size in stale if size < reader.BIG]
                    if mode != modes[0]:
                        # `all`: what the snapshot task reads for it is planned there;
                        # the rest (the mirror in line, the history not: `doit all` after
                        # a first `doit snapshot`) the versioned task reads
                        first = session.ahead.get((modes[0], source.name, rel_b))
                        taken = set(first.names.split(b"\0")) if first is not None else set()
                        small = [(n, size) for n, size in small if n not in taken]
                    if small:                       # read ahead for it (pipeline.reader)
                        session.plan_ahead(mode, source.name, rel_b, os.fsencode(
                            source.path / folder.rel if folder.rel else source.path), small)
                        planned[task_name] = (mode, source.name, rel_b)
                    if tee:        # `all`: the snapshot task reads them for it as well
                        session.twins.add((source.name, rel_b))      # and commits with it
                        if stale:
                            session.tee[(source.name, rel_b)] = {n for n, _size in stale}
                if not same:
                    # Not in line (a new folder, a first backup, an entry come or gone): it
                    # runs whatever its files say, so doit is given none to check.
                    yield {**spec, "file_dep": [], "uptodate": [False]}
                    continue
                # In line but for some files (an edit, a touch, a chmod): doit's checker
                # is given those, each against its record; the others match theirs by
                # the same rule (as above), and four doit calls each would say so again.
                # The tasks judge those files alone (``FolderJob.only``).
                base = os.path.join(source.path, folder.rel) if folder.rel else str(source.path)
                paths = [os.path.join(base, n) for n, _st, _rec in differ]
                session.expected[task_name] = {p: rec for p, (_n, _st, rec) in
                                               zip(paths, differ, strict=True)
                                               if rec is not None}
                session.stats.update((p, st) for p, (_n, st, _rec) in
                                     zip(paths, differ, strict=True))
                job = job._replace(only=frozenset(n for n, _st, _rec in differ))
                yield {**spec, "actions": [(action, [job, session])], "file_dep": paths,
                       "uptodate": [True]}
            # Every folder task removes what left its own folder; the sweep of a whole
            # source is `doit cleanup`'s alone (made by another command, its tasks would
            # stand for the cleanup group, and the cleanup command's never be made).
            if command == "cleanup" and (mode == "versioned" or opts.cleanup) and not vanished:
                cleanup_tasks.append(f"cleanup:{mode}:{source.name}")
                sweep = SweepJob(source, tuple(folders), root, plan.versioned.max_diff_bytes)
                yield {
                    "basename": "cleanup", "name": f"{mode}:{source.name}",
                    "doc": f"{mode}: what left {source.name}",
                    "actions": [(sweep_action, [sweep, session])],
                }
    label = command if command in ("snapshot", "versioned", "cleanup") else "all"
    after = None
    if command == "all" and plan.retention.auto and not plan.retention.empty:
        after = functools.partial(auto_prune, session)
    yield {
        "basename": "report", "name": label,
        "doc": f"the {label} run record",
        "actions": [(finish, [session, modes, label, after])],
        "uptodate": [(session.changed_nothing, [modes])],
    }
    folders_and_cleanups = [n for m in modes for n in names[m][0] + names[m][1]]
    if len(modes) > 1:           # `all`: each folder's snapshot task, then its versioned one
        versioned_of = {n.split(":", 1)[1]: n for n in names["versioned"][0]}
        ordered: list[str] = []
        for task in names["snapshot"][0]:
            ordered.append(task)
            twin = versioned_of.pop(task.split(":", 1)[1], None)
            if twin is not None:
                ordered.append(twin)
        ordered += versioned_of.values()
        folders_and_cleanups = ordered + names["snapshot"][1] + names["versioned"][1]
        session.order_ahead([planned[t] for t in ordered if t in planned])   # as they run
    doc = next(c.doc for c in BACKUP_COMMANDS if c.name == command)   # the registry's
    if command in ("snapshot", "versioned"):
        yield {"basename": command, "name": None, "doc": doc,
               "task_dep": [*folders_and_cleanups, f"report:{label}"]}
    elif command == "all":
        yield {"basename": "all", "actions": None, "doc": doc,
               "task_dep": [*folders_and_cleanups, "report:all"]}
    else:
        yield {"basename": "cleanup", "name": None, "doc": doc,
               "task_dep": [n for m in modes for n in names[m][1]] + ["report:cleanup"]}
