"""Plan + walk + what the backup records -> doit task dictionaries.

One subtask per source folder (``snapshot:<source>/<dir>``) whose ``file_dep``
are the folder's kept files and symlinks.  Whether it may be skipped is decided
against the catalog, never against a memory of doit's own: its ``uptodate`` is
True only when the catalog records this folder as brought in line with the
backup at its current mode and mtime, and records exactly the entries the walk
kept (so a file that came back, or is no longer ignored, makes it run); each
file is then compared by doit's checker with what the catalog records for it
(``pipeline.doit_glue``, ``pipeline.change``).  Then one cleanup subtask per
source and a report task per command, which the group tasks (``snapshot``,
``all``) run after the folders, in that order.
"""

from __future__ import annotations

import functools
import os
import stat
import sys
from typing import Any, Iterator

from doit import create_after, task_params

from . import doit_glue, report, run, snapshot, versioned
from .catalog import Catalog, Stored, open_catalog
from .errors import LockHeld
from .plan import Plan, Source
from .protect import is_protected, marker
from .scan import Folder, Scan, walk
from .selection import Selector, for_mode, mode_filter

BACKUP_PARAMS: list[dict[str, Any]] = [
    {"name": "note", "long": "note", "type": str, "default": "",
     "help": "a note kept with this run in the history"},
    {"name": "dry_run", "long": "dry-run", "type": bool, "default": False,
     "help": "say what would be done; change nothing"},
    {"name": "verbose", "long": "verbose", "type": bool, "default": False,
     "help": "also say why each skipped path was skipped"},
    {"name": "quiet", "long": "quiet", "type": bool, "default": False,
     "help": "print only failures and the summary"},
    {"name": "report", "long": "report", "type": str, "default": "",
     "help": "write the run summary as JSON to this file"},
]

_SCANS: dict[tuple[str, str], Scan] = {}


def scan_source(plan: Plan, source: Source, selector: Selector) -> Scan:
    """Walk a source once per process, whichever commands ask for it."""
    key = (str(plan.file), source.name)
    if key not in _SCANS:
        _SCANS[key] = walk(source.path, selector, exclude=(plan.destination,))
    return _SCANS[key]


def forget_scans() -> None:
    """A new doit invocation in the same process walks again."""
    _SCANS.clear()


def mode_view(scan: Scan, extra: Selector | None) -> list[Folder]:
    """The folders a mode keeps: the shared walk minus the mode's own ignores."""
    if extra is None:
        return scan.folders
    dropped: set[str] = set()
    out: list[Folder] = []
    for folder in scan.folders:
        parent = folder.rel.rpartition("/")[0]
        if folder.rel and (parent in dropped or folder.rel in dropped):
            dropped.add(folder.rel)
            continue
        view = Folder(folder.rel, folder.stat, error=folder.error,
                      skipped=list(folder.skipped), specials=folder.specials,
                      unreadable=folder.unreadable)
        for name in folder.subdirs:
            rel = folder.child(name)
            rule = extra.ignored_by(rel, True)
            if rule is not None and not extra.enters(rel):
                dropped.add(rel)
                view.skipped.append((name + "/", f"ignored by {rule.describe()}"))
            else:
                view.subdirs.append(name)
        if extra.folders_only:
            view.files, view.links = folder.files, folder.links
            out.append(view)
            continue
        for kind in ("files", "links"):
            for name, st in getattr(folder, kind).items():
                rule = extra.ignored_by(folder.child(name), False)
                if rule is None:
                    getattr(view, kind)[name] = st
                else:
                    view.skipped.append((name, f"ignored by {rule.describe()}"))
        out.append(view)
    return out


def auto_prune(plan: Plan) -> None:
    """retention.auto: `doit all` prunes after a run that changed something, under
    the run's own lock and catalog connection."""
    import sys
    from . import prune
    current = run.current()
    if current.protected:
        print("snapback: retention.auto skipped: the backup is protected (doit unprotect, "
              "then doit prune)", file=sys.__stderr__)
        return
    outcomes = prune.run(current.open_catalog(), plan.destination, plan.retention,
                         current.started, plan.versioned.max_diff_bytes, dry_run=False)
    if outcomes and not current.options.quiet:      # doit captures the action's stdout
        print("\n".join(prune.describe(outcomes, dry_run=False)), file=sys.__stdout__)


def in_line(seen: tuple[int, int] | None, folder: Folder, recorded: dict[bytes, Stored],
            keeps_leftovers: bool, deps: dict[str, Stored]) -> bool:
    """May this folder's task be skipped as far as the folder itself goes?  Only when
    the catalog says the mode brought it in line at its current mode and mtime, and
    holds exactly the entries the walk kept, each of the same kind (``deps``: the
    records found for the folder's files and links, by path)."""
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
    kinds = [r.kind for r in deps.values()]
    if kinds.count("file") != len(folder.files):
        return False                  # a file where a link was, or back
    if keeps_leftovers:               # snapshot.cleanup: false keeps what left the source
        return True
    return len(recorded) == len(folder.files) + len(folder.links) + len(folder.subdirs)


def _mirror_untouched(mirror_root: bytes, rel: bytes, folder: Folder) -> bool:
    """The mirror folder still has the mtime the run gave it (its source folder's): an
    entry removed or added in it by hand changed it, and its task looks again."""
    try:
        st = os.lstat(os.path.join(mirror_root, rel) if rel else mirror_root)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and folder.stat is not None and \
        st.st_mtime_ns == folder.stat.st_mtime_ns


_NONE = Stored("", None, None, None, None, None)
_FS = sys.getfilesystemencoding()         # os.fsencode, without a Python call per file


def _jobs(plan: Plan, mode: str, source: Source, folders: list[Folder]
          ) -> tuple[Any, Any, Any]:
    """(folder action, job factory, sweep action and job or None) for one mode."""
    if mode == "snapshot":
        root = plan.destination / "system_snapshot" / source.name
        opts = plan.snapshot
        make = lambda folder: snapshot.FolderJob(source, folder, root, plan.checker, opts.cleanup)
        sweep = (snapshot.sweep, [snapshot.SweepJob(source, tuple(folders), root)]) \
            if opts.cleanup else None
        return snapshot.mirror_folder, make, sweep
    root = plan.destination / "versioned_backup" / source.name
    max_diff = plan.versioned.max_diff_bytes
    make = lambda folder: versioned.FolderJob(source, folder, root, max_diff, plan.checker)
    sweep = (versioned.sweep, [versioned.SweepJob(source, tuple(folders), root, max_diff)])
    return versioned.record_folder, make, sweep


COMMAND_DOCS = {
    "snapshot": "mirror every source into <destination>/system_snapshot/, then cleanup, then report",
    "versioned": "record new, changed and deleted files in <destination>/versioned_backup/, "
                 "then report",
    "all": "snapshot and versioned in one run, walking each source once",
    "cleanup": "remove from the backup what left the sources or became ignored",
    "report": "write the run record to .snapback/runs.jsonl (snapshot, versioned and all run it)",
}


def creator(plan: Plan, command: str, doc: str):
    """The delayed doit task creator of one backup command (see dodo.py)."""
    @create_after(creates=[command])
    @task_params(BACKUP_PARAMS)
    def create(**options: Any) -> Iterator[dict]:
        return backup_tasks(plan, command, **options)
    create.__doc__ = doc
    return create


COMMANDS: dict[str, tuple[str, ...]] = {
    "snapshot": ("snapshot",), "versioned": ("versioned",), "all": ("snapshot", "versioned"),
    "cleanup": ("snapshot", "versioned"), "report": (),
}


def backup_tasks(plan: Plan, command: str, **options: Any) -> Iterator[dict]:
    """The tasks of one backup command (``_tasks``), judged against the catalog.

    A run that may write takes the backup's lock before it reads the catalog, so
    what it skips is judged on what the backup holds when it runs, never on what
    another run was in the middle of changing.  When another run holds the lock
    every task is created to run, and each fails on the lock: nothing is done.
    """
    current = run.current()
    current.options.merge(**options)
    current.meta_dir = plan.meta_dir
    if COMMANDS[command] and current.writes:
        try:
            current.acquire()
        except LockHeld:
            pass                      # every action says so; nothing is read or written
    catalog = open_catalog(plan.meta_dir, writable=False) if current.lock_error is None \
        else Catalog(plan.meta_dir / "-", writable=False)     # (read nothing)
    try:
        yield from _tasks(plan, command, catalog, **options)
    finally:
        catalog.close()


def _tasks(plan: Plan, command: str, catalog: Catalog, **options: Any) -> Iterator[dict]:
    """The tasks of one backup command, from one walk of each source.

    Only the modes the command needs are created: doit pays per task even when
    it is up to date.  Two commands on one line share the walk.
    """
    current = run.current()
    current.options.merge(**options)
    current.meta_dir = plan.meta_dir
    current.protected = is_protected(plan.meta_dir, plan.protect)
    current.protect_pending = plan.protect and not marker(plan.meta_dir).exists()
    modes = COMMANDS[command]
    selector = for_mode(plan.ignore, plan.exceptions, plan.use_default_ignores,
                        ignore_files=plan.ignore_files)
    scans = {s.name: scan_source(plan, s, selector) for s in plan.sources} if modes else {}
    names: dict[str, tuple[list[str], list[str]]] = {}
    backend = doit_glue.state()
    for mode in modes:
        opts = plan.mode(mode)
        extra = mode_filter(opts.ignore, f"{mode}.ignore", plan.exceptions,
                            plan.use_default_ignores)
        keeps_leftovers = mode == "snapshot" and not opts.cleanup
        folder_tasks: list[str] = []
        cleanup_tasks: list[str] = []
        names[mode] = (folder_tasks, cleanup_tasks)
        for source in plan.sources:
            mirror_root = os.fsencode(plan.destination / "system_snapshot" / source.name)
            records = catalog.records(mode, source.name)
            seen = catalog.folders_seen(mode, source.name)
            folders = mode_view(scans[source.name], extra)
            current.views[(mode, source.name)] = folders
            action, make_job, sweep = _jobs(plan, mode, source, folders)
            for folder in folders:
                name = f"{source.name}/{folder.rel}" if folder.rel else source.name
                base = os.path.join(source.path, folder.rel) if folder.rel else str(source.path)
                rel_b = os.fsencode(folder.rel)
                recorded = records.get(rel_b, {})
                found: dict[str, Stored] = {}          # file_dep -> what the backup holds
                stats: dict[str, os.stat_result] = {}
                for entries in (folder.files, folder.links):
                    for file_name, st in entries.items():
                        path = os.path.join(base, file_name)
                        stats[path] = st
                        rec = recorded.get(file_name.encode(_FS, "surrogateescape"))
                        if rec is not None:
                            found[path] = rec
                task_name = f"{mode}:{name}"
                same = in_line(seen.get(rel_b), folder, recorded, keeps_leftovers, found)
                if same and mode == "snapshot":
                    same = _mirror_untouched(mirror_root, rel_b, folder)
                if backend is not None:       # each file: doit's checker against the record
                    backend.expect(task_name, found, stats, plan.checker)
                else:
                    same = False
                folder_tasks.append(task_name)
                yield {
                    "basename": mode, "name": name,
                    "doc": f"{mode}: the folder {name}",
                    "actions": [(action, [make_job(folder)])],
                    "file_dep": list(stats), "uptodate": [same],
                }
            if sweep is not None:
                cleanup_tasks.append(f"cleanup:{mode}:{source.name}")
                yield {
                    "basename": "cleanup", "name": f"{mode}:{source.name}",
                    "doc": f"{mode}: what left {source.name}",
                    "actions": [sweep],
                    # Every folder task removes what left its own folder; the whole-source
                    # sweep runs when the user asks for it.
                    "uptodate": [report.NotSelected("cleanup")],
                }
    label = command if command in ("snapshot", "versioned", "cleanup") else "all"
    after = None
    if command == "all" and plan.retention.auto and not plan.retention.empty:
        after = functools.partial(auto_prune, plan)
    if modes:
        yield {
            "basename": "report", "name": label,
            "doc": f"the {label} run record",
            "actions": [(report.write_record, [modes, label, after])],
            "uptodate": [report.NothingHappened(modes)],
        }
    folders_and_cleanups = [n for m in modes for n in names[m][0] + names[m][1]]
    if command in ("snapshot", "versioned"):
        yield {"basename": command, "name": None, "doc": COMMAND_DOCS[command],
               "task_dep": folders_and_cleanups + [f"report:{label}"]}
    elif command == "all":
        yield {"basename": "all", "actions": None,
               "doc": "snapshot and versioned in one run, each source walked once",
               "task_dep": folders_and_cleanups + ["report:all"]}
    elif command == "cleanup":
        yield {"basename": "cleanup", "name": None,
               "task_dep": [n for m in modes for n in names[m][1]] + ["report:cleanup"],
               "doc": "remove from the backup what left the sources"}
    else:
        yield {"basename": "report", "name": None, "task_dep": [],
               "doc": "write the run record (snapshot, versioned and all run it)"}
