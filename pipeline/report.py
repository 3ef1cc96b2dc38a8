"""Reporting: per-file lines as each task ends, the summary, the run record.

doit's own per-task lines (``-- snapshot:home/a``) would flood the screen, so
this module is doit's reporter: it prints what the actions did (``new``,
``updated``, ``deleted``, ``FAILED``), nothing for unchanged files, and one
summary at the end.  The report task appends the run record to
``.snapback/runs.jsonl`` when the run did anything; ``--report FILE`` gets the
same record as JSON on every run, a no-change one included.

The exit status of every command is decided here, from what the run did
(``Reporter.status``, table in ``errors.py``: 0, 1, 2, 75, and 70 for a bug,
the only case with a traceback).  doit computes its own code
(0, 1 for a ``TaskFailed``, 2 for any other failure, such as the
``UnmetDependency`` of a group task whose folder failed) and returns it from
``DoitMain.run`` to ``sys.exit``.  ``complete_run`` is the last call doit makes
into snapback, after doit has saved its state and run every teardown
(``Runner.finish``); when snapback's status differs from doit's, it raises
``SystemExit(status)``, Python's documented way to end with a status.  It is
not an ``Exception``, so doit's ``except Exception`` in ``DoitMain.run`` lets
it through, and the ``finally`` blocks on the way out (doit closing an output
file) still run.  Errors found before any task runs (the plan, an unknown
option) end the same way from ``dodo.py`` (``config.py``).  A program that runs
doit in its own process (``DoitMain(...).run``) gets the status the same way,
as a ``SystemExit`` to catch (``tests/conftest.py``, ``Backup.run``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timezone
from typing import Any, TextIO
from urllib.parse import quote

from doit.exceptions import BaseFail, DependencyError, TaskFailed, UnmetDependency

from . import __version__, protect, run, store
from .errors import BUG, INVALID, LOCKED, OK, PARTIAL
from .run import DELETED, FAILED, NEW, UPDATED, Event

BACKUP_MODES = ("snapshot", "versioned")


class NothingHappened:
    """uptodate: the report task is up to date when its modes' tasks changed nothing."""

    def __init__(self, modes: tuple[str, ...]):
        self.modes = modes

    def __call__(self) -> bool:
        current = run.current()
        return not current.protect_pending and not any(e.mode in self.modes
                                                       for e in current.events)


class NotSelected:
    """uptodate: False when the user named this task group on the command line."""

    def __init__(self, basename: str):
        self.basename = basename

    def __call__(self) -> bool:
        return not any(t.split(":", 1)[0] == self.basename for t in run.current().selected)


def counts(current: run.Run, modes: tuple[str, ...]) -> dict[str, int]:
    events = [e for e in current.events if e.mode in modes]
    out = {"scanned": scanned(current, modes)}
    for kind in (NEW, UPDATED, DELETED, FAILED):
        out[kind.lower()] = sum(e.files for e in events if e.kind == kind)
    out["bytes"] = sum(e.size for e in events if e.kind in (NEW, UPDATED))
    return out


def record(current: run.Run, modes: tuple[str, ...], label: str = "") -> dict[str, Any]:
    """The run as one JSON object (runs.jsonl, --report)."""
    events = [e for e in current.events if e.mode in modes]
    by_mode = {mode: counts(current, (mode,)) for mode in modes}
    total = {key: sum(c[key] for c in by_mode.values()) for key in by_mode[modes[0]]}
    seconds = time.perf_counter() - current.t0
    ended = current.started + seconds
    return {
        "run_id": current.run_id,
        "mode": label or ("all" if set(modes) == set(BACKUP_MODES) else modes[0]),
        "note": current.options.note,
        "started": _iso(current.started),
        "ended": _iso(ended),
        "seconds": round(seconds, 3),
        "dry_run": current.options.dry_run,
        "counts": {k: v for k, v in total.items() if k != "bytes"},
        "bytes": total["bytes"],
        "modes": by_mode,
        "failed": [{"path": e.path, "reason": e.reason} for e in events if e.kind == FAILED],
        "snapback": __version__,
    }


def scanned(current: run.Run, modes: tuple[str, ...]) -> int:
    return sum(len(f.files) + len(f.links)
               for (mode, _source), folders in current.views.items() if mode in modes
               for f in folders)


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, timezone.utc).astimezone().isoformat(timespec="seconds")


def write_record(modes: tuple[str, ...], label: str, after=None) -> TaskFailed | None:
    """Action of ``report:<mode>``: append the run record to runs.jsonl, then run
    ``after`` (the automatic prune of ``retention.auto``) if the run changed anything."""
    current = run.current()
    if not current.writes:
        return None
    try:
        current.acquire()
    except Exception as exc:  # the lock error was already reported by the folders
        return TaskFailed(str(exc))
    assert current.meta_dir is not None
    if current.protect_pending:                      # protect: true in the plan, first time
        protect.protect(current.meta_dir.parent)
        current.protect_pending = False
    if not any(e.mode in modes for e in current.events):
        return None
    line = json.dumps(record(current, modes, label)) + "\n"   # ASCII: odd names stay valid JSON
    log = current.meta_dir / "runs.jsonl"
    try:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
                     | os.O_NONBLOCK, 0o600)
        try:
            os.write(fd, line.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        return TaskFailed(f"cannot add this run to {log}: {exc.strerror or exc}; "
                          "the backup itself was made")
    if after is not None:
        return after()
    return None


def _link(text: str, event: Event, tty: bool) -> str:
    if not tty or event.target is None:
        return text
    url = "file://" + quote(os.fsencode(str(event.target)))
    return f"\x1b]8;;{url}\x1b\\{text}\x1b]8;;\x1b\\"


def display(path: str) -> str:
    """A path as one printable line: control characters and bytes that are not
    UTF-8 are shown escaped (``new\\nline``, ``caf\\xe9.txt``), as ``ls -b`` does."""
    if path.isprintable():
        return path
    out = []
    for ch in path:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif not ch.isprintable() and ch != " ":
            out.append(f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def human_size(n: float) -> str:
    """1234567 -> '1.2 MB' (decimal units, as ls -h --si and rsync print)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def retired_mirrors(current: run.Run) -> list[str]:
    """A note for each mirror folder of a source the plan no longer names (renamed or
    removed): cleanup never deletes it silently, it says how."""
    if current.meta_dir is None:
        return []
    named = {source for (mode, source) in current.views if mode == "snapshot"}
    mirror = current.meta_dir.parent / "system_snapshot"
    try:
        found = sorted(e.name for e in os.scandir(mirror) if e.is_dir(follow_symlinks=False))
    except OSError:
        return []
    return [f"note: {mirror / name} is the mirror of a source no longer in the plan; "
            f"its history stays reachable (doit history {name}/PATH); to drop the mirror: "
            f"rm -r '{mirror / name}'" for name in found if name not in named]


class Reporter:
    """doit reporter for snapback: file lines, failures, one summary."""

    desc = "snapback: one line per changed file, then a summary"

    def __init__(self, outstream: TextIO, options: dict):
        self.out = outstream
        self.err = sys.stderr
        self.tty = hasattr(outstream, "isatty") and outstream.isatty()
        self.said: set[str] = set()
        self.backup_run = False
        self.bar: Any = None          # tqdm progress bar, on a terminal only
        self.status = OK              # snapback's exit status (errors.py)
        self.doit_status = OK         # what doit will return (runner.Runner)

    def _set(self, status: int) -> None:
        """The run's status is its worst outcome: a bug, then the lock, then the rest."""
        rank = {OK: 0, PARTIAL: 1, INVALID: 2, LOCKED: 3, BUG: 4}
        if rank.get(status, 4) > rank.get(self.status, 4):
            self.status = status

    # -- doit's reporter interface -------------------------------------
    def initialize(self, tasks: dict, selected_tasks: list[str]) -> None:
        current = run.current()
        current.selected = list(selected_tasks)
        for name in selected_tasks:                 # --note, --dry-run... of the command
            options = getattr(tasks.get(name), "options", None)
            if options:
                current.options.merge(**options)
        modes: list[str] = []
        for task in selected_tasks:
            base = task.split(":", 1)[0]
            wanted = BACKUP_MODES if base in ("all", "cleanup") else (base,)
            modes += [m for m in wanted if m in BACKUP_MODES and m not in modes]
        current.modes = [m for m in BACKUP_MODES if m in modes]
        self.backup_run = bool(current.modes)

    def get_status(self, task: Any) -> None:
        pass

    def execute_task(self, task: Any) -> None:
        self._progress(task)

    def add_success(self, task: Any) -> None:
        self._flush()

    def add_failure(self, task: Any, fail: BaseFail) -> None:
        self.doit_status = 1 if isinstance(fail, TaskFailed) and self.doit_status != 2 else 2
        printed = self._flush()
        if isinstance(fail, UnmetDependency):
            return      # a group task after a failed folder: that folder said why
        if run.current().lock_error:
            self._set(LOCKED)
            self._once(f"snapback: {run.current().lock_error}")
        elif isinstance(fail, TaskFailed):
            self._set(getattr(fail, "status", PARTIAL))
            if not printed:
                self._once(f"snapback: {fail.message}")
        elif isinstance(fail, DependencyError):   # a file vanished between walk and check
            self._set(PARTIAL)
            self._once(f"snapback: {fail.message.strip()} (it changed during the run; "
                       "the next run takes it)")
        else:  # an exception in snapback itself: a bug, show all of it
            self._set(BUG)
            self._once(f"snapback: bug: {task.name} failed unexpectedly:\n{fail.get_msg()}")

    def skip_uptodate(self, task: Any) -> None:
        self._progress(task)

    def _progress(self, task: Any) -> None:
        """One tick per folder; the bar shows only on a terminal, after 1 s."""
        current = run.current()
        if task.name.split(":", 1)[0] not in current.modes or ":" not in task.name:
            return
        if self.bar is None and self.tty and not current.options.quiet:
            from tqdm import tqdm
            total = sum(len(f) for (m, _s), f in current.views.items() if m in current.modes)
            delay = float(os.environ.get("SNAPBACK_PROGRESS_AFTER", "1.0"))   # seconds
            self.bar = tqdm(total=total, unit="folder", delay=delay, leave=False,
                            file=self.out, dynamic_ncols=True)
        if self.bar is not None:
            self.bar.update(1)

    def skip_ignore(self, task: Any) -> None:
        pass

    def cleanup_error(self, exception: BaseException) -> None:
        self._set(BUG)
        self._once(f"snapback: bug: {exception}")

    def runtime_error(self, msg: str) -> None:
        self.doit_status = 2
        self._set(BUG)
        self._once(f"snapback: bug: {msg}")

    def teardown_task(self, task: Any) -> None:
        pass

    def complete_run(self) -> None:
        current = run.current()
        self._flush()
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        try:
            if self.backup_run:
                self._summary(current)
        finally:
            current.release()
        if self.status != self.doit_status:
            raise SystemExit(self.status)      # see the module docstring

    # -- output ----------------------------------------------------------------
    def _once(self, message: str) -> None:
        if message not in self.said:
            self.said.add(message)
            self.err.write(message.rstrip() + "\n")
            self.err.flush()

    def _flush(self) -> bool:
        events = run.current().take_pending()
        quiet = run.current().options.quiet
        for event in events:
            if quiet and event.kind != FAILED:
                continue
            path = display(event.path)
            text = path if not event.reason else f"{path} ({event.reason})"
            if event.kind == FAILED:
                text = f"{path}: {event.reason}"
            prefix = "(dry run) " if run.current().options.dry_run else ""
            line = f"{prefix}{event.kind:<8} {_link(text, event, self.tty)}"
            if self.bar is not None:
                self.bar.write(line, file=self.out)
            else:
                self.out.write(line + "\n")
        if events:
            self.out.flush()
        return bool(events)

    def verbose_skips(self, current: run.Run) -> None:
        seen: set[tuple[str, str]] = set()
        for (mode, source), folders in current.views.items():
            for folder in folders:
                for name, why in folder.skipped:
                    rel = folder.child(name)
                    if (source, rel) in seen:
                        continue
                    seen.add((source, rel))
                    self.out.write(f"skipped  {display(f'{source}/{rel}')}: {why}\n")

    def _summary(self, current: run.Run) -> None:
        if current.lock_error:
            return                  # nothing was done: the one line of the lock says it all
        if current.options.verbose:
            self.verbose_skips(current)
        modes = tuple(current.modes)
        if not modes or not current.views:
            return
        rec = record(current, modes)
        for mode, c in rec["modes"].items():
            line = (f"{mode}: {c['scanned']:,} files, {c['new']} new, {c['updated']} updated, "
                    f"{c['deleted']} deleted, {c['failed']} failed; {human_size(c['bytes'])} written "
                    f"in {rec['seconds']:.2f} s")
            if current.options.dry_run:
                line += " (dry run: nothing was changed)"
            self.out.write(line + "\n")
        if "snapshot" in modes and not current.options.quiet:
            for line in retired_mirrors(current):
                self.out.write(line + "\n")
        self.out.flush()
        if current.options.report:
            from .paths import user_cwd            # doit runs in dodo.py's folder
            where = user_cwd() / os.path.expanduser(current.options.report)
            try:     # a new file renamed into place: a link or FIFO there is replaced, never
                     # followed or opened (cron's --report often points into /tmp)
                store.write_bytes(os.fsencode(where), (json.dumps(rec, indent=2) + "\n").encode(),
                                  mode=0o644)
            except OSError as exc:
                self._set(PARTIAL)
                self._once(f"snapback: cannot write the report {current.options.report}: "
                           f"{exc.strerror or exc}")
