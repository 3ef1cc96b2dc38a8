"""Reporting: per-file lines as each task ends, the summary, the run record.

doit's own per-task lines (``-- snapshot:home/a``) would flood the screen, so
this module is doit's reporter: it prints what the actions did (``new``,
``updated``, ``deleted``, ``FAILED``), nothing for unchanged files, and one
summary at the end.  The report task appends the run record to
``.snapback/runs.jsonl`` when the run did anything; ``--report FILE`` gets the
same record as JSON on every run, a no-change one included.

The exit status of every command is the run controller's
(``control.RunControl.status``, the worst outcome it was told; table in
``errors.py``: 0, 1, 2, 75, and 70 for a bug, the only case with a traceback);
the reporter tells it what it saw and raises it at the end.  doit computes its own code
(0, 1 for a ``TaskFailed``, 2 for any other failure, such as the
``UnmetDependency`` of a group task whose folder failed) and returns it from
``DoitMain.run`` to ``sys.exit``.  ``complete_run`` is the last call doit makes
into snapback, after doit has saved its state and run every teardown
(``Runner.finish``); in doit's own process (dodo.py run by ``doit``) it ends the
process there with the status (``pipeline.__main__.end``, as the snapback command
ends); elsewhere, when snapback's status differs from doit's, it raises
``SystemExit(status)``, Python's documented way to end with a status.  It is
not an ``Exception``, so doit's ``except Exception`` in ``DoitMain.run`` lets
it through, and the ``finally`` blocks on the way out (doit closing an output
file) still run.  Errors found before any task runs (the plan, an unknown
option) end the same way from the loader (``pipeline/app.py``).  A program that runs
doit in its own process (``DoitMain(...).run``) gets the status the same way,
as a ``SystemExit`` to catch (``tests/conftest.py``, ``Backup.run``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, TextIO
from urllib.parse import quote

from doit.exceptions import BaseFail, DependencyError, TaskFailed, UnmetDependency

from . import layout
from .errors import BUG, LOCKED, OK, PARTIAL
from .runlog import locked_record, record
from .session import FAILED, Event, Session
from .show import display, human_size, plural


def _link(text: str, event: Event, tty: bool) -> str:
    if not tty or event.target is None:
        return text
    url = "file://" + quote(event.target)
    return f"\x1b]8;;{url}\x1b\\{text}\x1b]8;;\x1b\\"


LABELS = {"snapshot": "mirror", "versioned": "history"}


def _merged(events: list[Event]) -> list[tuple[Event, str]]:
    """Each (kind, path) once, with the modes that did it: ``[mirror+history]``."""
    order: dict[tuple[str, str, str], tuple[Event, list[str]]] = {}
    for event in events:
        key = (event.kind, event.path, event.reason if event.kind == FAILED else "")
        if key in order:
            first, modes = order[key]
            modes.append(event.mode)
            if first.target is None:
                order[key] = (event, modes)
        else:
            order[key] = (event, [event.mode])
    return [(event, "[" + "+".join(LABELS.get(m, m) for m in sorted(set(modes),
                                                                    key=list(LABELS).index))
             + "]") for event, modes in order.values()]


def retired_mirrors(current: Session) -> list[str]:
    """A note for each mirror folder of a source the plan no longer names (renamed or
    removed): cleanup never deletes it silently, it says how."""
    named = {source.name for source in current.plan.sources}
    mirror = layout.mirror_root(current.plan.destination)
    try:
        found = sorted(e.name for e in os.scandir(mirror) if e.is_dir(follow_symlinks=False))
    except OSError:
        return []
    return [f"note: {mirror / name} is the mirror of a source no longer in the plan; "
            f"its history stays reachable (doit history {name}/PATH); to drop the mirror: "
            f"rm -r '{mirror / name}'" for name in found if name not in named]


def left_out_line(current: Session) -> str | None:
    """The first run's word on what the built-in ignores left out (caches, virtual
    environments, node_modules...): a home folder can be mostly that, and a user who
    expected it backed up should hear so once, with the way to see it."""
    from .scan import du  # (loaded by the run's walk: nothing read from disk here)
    sources = {s.name: s for s in current.plan.sources}
    files = size = 0
    for (mode, name), folders in current.views.items():
        if mode != "snapshot" and ("snapshot", name) in current.views:
            continue                                  # each source's walk counted once
        for folder in folders:
            for entry, why in folder.skipped:
                if "(built-in)" not in why and "(holds " not in why:
                    continue
                path = sources[name].path / folder.child(entry.rstrip("/"))
                if entry.endswith("/"):
                    more, count = du(path)
                else:
                    try:
                        more, count = os.lstat(path).st_size, 1
                    except OSError:
                        continue
                files, size = files + count, size + more
    if not files:
        return None
    program = current.line.program if current.line is not None else "snapback"
    return (f"note: the built-in ignores left out {plural(files, 'file')} "
            f"({human_size(size)}): caches, virtual environments, node_modules and the like; "
            f"{program} explain --tree lists them")


COLOURS = {"new": "\x1b[32m", "updated": "\x1b[36m", "deleted": "\x1b[33m",
           FAILED: "\x1b[1;31m"}


class Progress:
    """The progress display (tqdm): bytes of the files of the run's folders done of the
    total, files done, rate, ETA, and the folder at work.  A folder's files move it as
    each is handled; a folder skipped as unchanged moves it all at once."""

    def __init__(self, out: TextIO, session: Session, delay: float):
        from tqdm import tqdm
        self.session, self.out = session, out
        self.shown_after = time.monotonic() + delay
        self.sizes: dict[str, tuple[int, int]] = {}          # task -> (files, bytes)
        self.total_files = 0
        self.files = 0
        self.task = ""
        self.task_files = 0
        self.task_bytes = 0
        self.bar = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1000, delay=delay,
                        leave=False, file=out, dynamic_ncols=True, miniters=1,
                        bar_format="{percentage:3.0f}%|{bar}| {n_fmt}B/{total_fmt}B{postfix} "
                                   "[{elapsed}<{remaining}, {rate_fmt}]")
        session.progress = self.tick

    def _measure(self) -> None:
        """Every folder task of the run so far (a second command's tasks come later)."""
        for (mode, source), folders in self.session.views.items():
            if mode not in self.session.modes:
                continue
            for folder in folders:
                task = f"{mode}:{source}/{folder.rel}" if folder.rel else f"{mode}:{source}"
                if task in self.sizes:
                    continue
                if folder.kept is not None:        # in line, no task: its files are done
                    self.sizes[task] = (0, 0)
                    self.total_files += folder.count(mode)
                    self.files += folder.count(mode)
                else:
                    size = sum(st.st_size for st in folder.files.values())
                    self.sizes[task] = (len(folder.files), size)
                    self.total_files += len(folder.files)
                    self.bar.total += size

    def start(self, task: str) -> None:
        if task not in self.sizes:
            self._measure()
        self.task, self.task_files, self.task_bytes = task, 0, 0
        self._postfix(task.split(":", 1)[1])

    def _postfix(self, where: str) -> None:
        self.bar.set_postfix_str(f"{self.files:,}/{self.total_files:,} files, "
                                 f"{display(where)}", refresh=False)

    def tick(self, size: int, files: int = 1) -> None:
        """``size`` more bytes done, and ``files`` more files (0: within a big file)."""
        self.task_files += files
        self.task_bytes += size
        self.files += files
        self._postfix(self.task.split(":", 1)[-1])
        self.bar.update(size)

    def finish(self) -> None:
        """The folder at work is done: what was not ticked (unchanged files) counts now."""
        files, size = self.sizes.get(self.task, (0, 0))
        self.files += max(files - self.task_files, 0)
        self.bar.update(max(size - self.task_bytes, 0))
        self.task_files = self.task_bytes = 0
        self._postfix(self.task.split(":", 1)[-1])
        self.task = ""

    def skip(self) -> None:
        """The folder at work is unchanged: its files count as done, its bytes leave the
        total (the rate and the time left are of bytes that are read and written)."""
        files, size = self.sizes.get(self.task, (0, 0))
        self.files += files
        self.bar.total = max(self.bar.total - size, self.bar.n)
        self._postfix(self.task.split(":", 1)[-1])
        if time.monotonic() >= self.shown_after:
            self.bar.refresh()
        self.task = ""

    def write(self, line: str) -> None:
        if time.monotonic() < self.shown_after:    # not drawn yet: a plain line (tqdm's
            self.out.write(line + "\n")           # write would draw the bar early)
        else:
            self.bar.write(line, file=self.bar.fp)

    def close(self) -> None:
        self.session.progress = None
        self.bar.close()


class Reporter:
    """doit reporter for snapback: file lines, failures, one summary.  doit makes it
    from the class in DOIT_CONFIG; ``doit_glue.configure`` gives it the session."""

    desc = "snapback: one line per changed file, then a summary"
    session: Session

    def __init__(self, outstream: TextIO, options: dict[str, Any]):
        # a stream that cannot be written (a reader gone, /dev/full) ends quietly, the
        # run goes on (pipeline.__main__.QuietPipe: the snapback command puts it in place
        # before doit is imported; `doit` in the checkout hands over the plain ones)
        from .__main__ import quiet
        self.out, self.err = quiet(outstream), quiet(sys.stderr, what=None)
        self.tty = hasattr(outstream, "isatty") and outstream.isatty()
        # colour only on a terminal that wants it (https://no-color.org)
        dumb = os.environ.get("TERM") == "dumb"          # no escapes at all: links neither
        self.colour = self.tty and not os.environ.get("NO_COLOR") and not dumb
        self.links = self.tty and not dumb
        self.said: set[str] = set()
        self.backup_run = False
        self.bar: Progress | None = None   # on a terminal only
        self.held: list[Event] = []   # a snapshot folder's lines, until its versioned task
        self.doit_status = OK         # what doit will return (runner.Runner)

    def _set(self, status: int) -> None:
        """What went wrong, told to the run's controller (it keeps the worst)."""
        self.session.control.fail(status)

    @property
    def status(self) -> int:
        return self.session.control.status

    # -- doit's reporter interface -------------------------------------
    def initialize(self, tasks: dict[str, Any], selected_tasks: list[str]) -> None:
        current = self.session
        current.start(selected_tasks, [getattr(tasks.get(name), "options", None) or {}
                                       for name in selected_tasks])
        self.backup_run = bool(current.modes)

    def get_status(self, task: Any) -> None:
        pass

    def execute_task(self, task: Any) -> None:
        self._progress(task)

    def add_success(self, task: Any) -> None:
        if self.bar is not None:
            self.bar.finish()
        self._flush(task.name)

    def add_failure(self, task: Any, fail: BaseFail) -> None:
        self.doit_status = 1 if isinstance(fail, TaskFailed) and self.doit_status != 2 else 2
        if self.bar is not None:
            self.bar.finish()
        printed = self._flush(task.name)
        if isinstance(fail, UnmetDependency):
            return      # a group task after a failed folder: that folder said why
        if self.session.lock_error:
            self._set(LOCKED)
            self._once(f"snapback: {self.session.lock_error}")
        elif isinstance(fail, TaskFailed):
            self._set(getattr(fail, "status", PARTIAL))
            # a folder's FAILED lines say why it failed; the report task's failure (the
            # run log, retention.auto) is its own, whatever the folders said before it
            # (helper-59: a FAILED line among the last folders' hid it, status 1)
            if not printed or task.name.split(":", 1)[0] == "report":
                self._once(f"snapback: {fail.message}")
        elif isinstance(fail, DependencyError):   # a file vanished between walk and check
            self._set(PARTIAL)
            self._once(f"snapback: {fail.message.strip()} (it changed during the run; "
                       "the next run takes it)")
        else:  # an exception in snapback itself: a bug, show all of it
            self._set(BUG)
            self._once(f"snapback: bug: {task.name} failed unexpectedly:\n{fail.get_msg()}")

    def skip_uptodate(self, task: Any) -> None:
        self._progress(task, skipped=True)

    def _progress(self, task: Any, skipped: bool = False) -> None:
        """Files and bytes of the run's folders, rate, ETA and the folder at work: on a
        terminal only (never in cron), after 1 s (SNAPBACK_PROGRESS_AFTER)."""
        current = self.session
        if task.name.split(":", 1)[0] not in current.modes or ":" not in task.name:
            return
        if self.bar is None and self.tty and not current.options.quiet:
            delay = float(os.environ.get("SNAPBACK_PROGRESS_AFTER", "1.0"))   # seconds
            self.bar = Progress(self.out, current, delay)
        if self.bar is not None:
            self.bar.start(task.name)
            if skipped:
                self.bar.skip()

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
        current = self.session
        current.settle()                       # (a run that ended before its report task)
        self._flush()
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if current.tally.failed:
            self._set(PARTIAL)                 # (also what no task's failure stood for)
        try:
            if self.backup_run:
                self._summary(current)
        finally:
            current.release()
            for note in current.notes:          # what closing the catalog said
                self._once(note)
            current.notes = []
        if current.ends_process:               # doit's own process, its run done
            from .__main__ import end
            end(self.status)
        if self.status != self.doit_status:
            raise SystemExit(self.status)      # see the module docstring

    # -- output ----------------------------------------------------------------
    def _once(self, message: str) -> None:
        if message not in self.said:
            self.said.add(message)
            self.err.write(message.rstrip() + "\n")
            self.err.flush()

    def _flush(self, task: str = "") -> bool:
        """Print what the actions did since the last call; True when a FAILED line was
        (a task's failure is said by its lines then; a snapshot task's FAILED lines held
        for its versioned twin count as said).  Other lines say nothing of a failure:
        the report task prints the last folders' lines, with their group's commit, and
        then its own failure, say the run log that cannot be written.

        When both modes run (``doit all``), a folder's snapshot task runs just before
        its versioned task: its lines are held until then (and until the versioned
        lines come, with their group's commit), and a file that both modes stored is
        one line, ``new  [mirror+history]  path``."""
        current = self.session
        both = len(current.modes) > 1
        if both and (task.startswith("snapshot:") or current.group.waiting):
            # a folder's history lines come when its group is committed (session.Group):
            # the mirror's lines wait for them, and both are said together then
            held = current.take_pending()
            self.held.extend(held)
            return any(e.kind == FAILED for e in held)    # said with its versioned twin
        notes, current.notes = current.notes, []
        for note in notes:
            self._once(note)
        events, self.held = [*self.held, *current.take_pending()], []
        quiet = self.session.options.quiet
        # (--quiet says the FAILED lines alone: only they are merged, not every file's)
        shown = [e for e in events if e.kind == FAILED] if quiet else events
        for event, modes in _merged(shown) if both else [(e, "") for e in shown]:
            if (quiet and event.kind != FAILED) or not event.shown:
                continue
            path = display(event.path)
            text = path if not event.reason else f"{path} ({event.reason})"
            if event.kind == FAILED:
                text = f"{path}: {event.reason}"
            prefix = "(dry run) " if self.session.options.dry_run else ""
            label = f"{modes:<17}" if modes else ""
            kind = f"{event.kind:<8}"
            if self.colour:
                kind = f"{COLOURS[event.kind]}{kind}\x1b[0m"
            line = f"{prefix}{kind} {label}{_link(text, event, self.links)}"
            if self.bar is not None:
                self.bar.write(line)
            else:
                self.out.write(line + "\n")
        # then what the report task says after the run's own lines (retention.auto's
        # prune: helper-61 saw its lines before the last folders' lines of the run)
        lines, current.lines = current.lines, []
        for line in lines:
            self.out.write(line + "\n")
        if events or lines:
            self.out.flush()
        return any(e.kind == FAILED for e in events)

    def verbose_skips(self, current: Session) -> None:
        seen: set[tuple[str, str]] = set()
        for (_mode, source), folders in current.views.items():
            for folder in folders:
                for name, why in folder.skipped:
                    rel = folder.child(name)
                    if (source, rel) in seen:
                        continue
                    seen.add((source, rel))
                    self.out.write(f"skipped  {display(f'{source}/{rel}')}: {why}\n")

    def _summary(self, current: Session) -> None:
        if current.lock_error:
            # nothing was done: the one line of the lock says it all; --report says so too
            # (a report left from the last run would read as this one's)
            if current.options.report and current.modes:
                self.write_report(current.options.report,
                                  locked_record(current, tuple(current.modes),
                                                current.lock_error))
            return
        if current.options.verbose:
            self.verbose_skips(current)
        modes = tuple(current.modes)
        if not modes or not current.views:
            return
        rec = record(current, modes)
        dry = current.options.dry_run
        # --quiet: nothing at all unless something failed (cron mails only trouble)
        said = not current.options.quiet or self.status != OK or any(
            c["failed"] for c in rec["modes"].values())
        for mode, c in rec["modes"].items() if said else ():
            written = f"about {human_size(c['bytes'])} would be written" if dry \
                else f"{human_size(c['bytes'])} written"
            # a folder whose records could not be made (a full disk at its commit) is a
            # FAILED line of its own, with no file counted: said here too, so that the
            # summary never reads "0 failed" beside it
            folders = c["failed_folders"]
            also = f", {plural(folders, 'folder')} failed" if folders else ""
            line = (f"{mode}: {plural(c['scanned'], 'file')}, {c['new']:,} new, "
                    f"{c['updated']:,} updated, {c['deleted']:,} deleted, {c['failed']:,} "
                    f"failed{also}; {written} in {rec['seconds']:.2f} s")
            if dry:
                line += " (dry run: nothing was changed)"
            self.out.write(line + "\n")
        if current.options.note and current.writes and said \
                and not current.tally.any(modes):
            self.out.write("note: nothing changed, so this run is not in the history and "
                           "its --note was not kept\n")
        left_out = left_out_line(current) if current.first_run and said and not dry else None
        if left_out is not None:
            self.out.write(left_out + "\n")
        if "snapshot" in modes and not current.options.quiet:
            for line in retired_mirrors(current):
                self.out.write(line + "\n")
        self.out.flush()
        if current.options.report:
            self.write_report(current.options.report, rec)

    def write_report(self, given: str, rec: dict[str, Any]) -> None:
        """``--report FILE``: its folder is made if missing; a report that cannot be
        written is one warning line and never costs the backup (the exit status says
        what the backup did: a scheduler reading it must not retry a backup that was
        done)."""
        from .errors import SnapbackError
        from .paths import user_cwd
        from .reportfile import write
        try:     # (where the user asked and nowhere else: pipeline/reportfile.py)
            expanded = os.path.expanduser(given)
            where = expanded if os.path.isabs(expanded) else \
                os.path.join(user_cwd(), expanded)   # (helper-64: the folder gone, a
            write(where, (json.dumps(rec, indent=2) + "\n").encode(),   # traceback)
                  self.session.plan.destination)
        except SnapbackError as exc:        # (a relative path, the current folder gone)
            self._once(f"snapback: warning: the report {display(given)} was not written "
                       f"({display(str(exc))}); the backup itself is done")
        except OSError as exc:
            self._once(f"snapback: warning: the report {display(given)} was not written "
                       f"({display(exc.strerror or str(exc))}); the backup itself is done")
