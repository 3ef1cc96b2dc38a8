"""What every command shares: its context, reading the words after PATH, the
lock taken the same way, and finding PATH in the backup.

doit stops parsing a task's options at its first positional word, so options
written after PATH arrive among the words: ``parse_words`` reads them there
too (``doit restore PATH --at T`` is ``doit restore --at T PATH``).  A user's
mistake becomes one line and its exit status (``errors.py``), never a
traceback; only a bug in snapback shows one.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from doit.exceptions import TaskFailed

from .. import layout
from ..catalog import Catalog, open_catalog
from ..errors import Failed, SnapbackError, UsageError
from ..lock import READ_ONLY, Lock, LockUnusable
from ..paths import Target
from ..plan import Plan, Source
from . import Command


@dataclass
class Context:
    """What a command runs with: the plan and how much to say."""
    plan: Plan
    command: str
    quiet: bool = False

    def say(self, text: str) -> None:
        """A confirmation line (``restored ...``), left out with --quiet."""
        if not self.quiet:
            print(text)

    @contextlib.contextmanager
    def locked(self, required: bool = True) -> Iterator[Lock | None]:
        """The destination's lock, held so that no backup changes the backup meanwhile.
        ``required=False`` (readers): a backup this process cannot write (read-only
        media, a disk the kernel remounted read-only after errors, another user's
        backup) is read under the lock taken shared (``Lock.share``), or without it
        when it has no lock file."""
        lock = Lock(self.plan.meta_dir / "lock")
        try:
            lock.acquire(note=f"doit {self.command}")
        except LockUnusable as exc:
            if required or exc.errno not in READ_ONLY:
                raise
            lock.share()
            try:
                yield lock
            finally:
                lock.release()
            return
        except SnapbackError:
            raise
        except OSError:
            if required:
                raise
            yield None
            return
        if lock.taken_over:
            print(f"snapback: taking over the lock left by a run that is gone "
                  f"({lock.taken_over})", file=sys.stderr)
        try:
            yield lock
        finally:
            lock.release()

    @contextlib.contextmanager
    def reading(self) -> Iterator[Catalog]:
        """The catalog, read-only, with the lock held when the backup exists."""
        with contextlib.ExitStack() as stack:
            if self.plan.meta_dir.exists():
                stack.enter_context(self.locked(required=False))
            catalog = open_catalog(self.plan.meta_dir, writable=False)
            stack.callback(catalog.close)
            yield catalog

    @contextlib.contextmanager
    def writing(self) -> Iterator[Catalog]:
        """The catalog, writable, under the lock."""
        with self.locked():
            catalog = open_catalog(self.plan.meta_dir, writable=True)
            try:
                yield catalog
            finally:
                catalog.close()


def parse_words(words: list[str], command: Command, given: dict[str, Any]
                ) -> tuple[list[str], dict[str, Any]]:
    """Split doit's positional words into paths and options (options may follow PATH)."""
    values = dict(given)
    paths: list[str] = []
    table = command.table()
    index = 0
    while index < len(words):
        word = words[index]
        option, eq, inline = word.partition("=")
        if option in table:
            spec = table[option]
            if spec.type is bool:
                values[spec.key] = True
            elif eq:
                values[spec.key] = inline
            elif index + 1 < len(words):
                index += 1
                values[spec.key] = words[index]
            else:
                raise UsageError(f"{option} needs a value")
        elif word == "--":
            paths.extend(words[index + 1:])
            break
        elif word.startswith("--"):
            known = ", ".join(table) or "none"
            raise UsageError(f"unknown option {word} (options: {known})")
        else:
            paths.append(word)
        index += 1
    return paths, values


def run_command(command: Command, plan: Plan, words: list[str],
                read: tuple[list[str], dict[str, Any]] | None = None, **given: Any
                ) -> TaskFailed | None:
    """The action of a command's doit task: its paths and options as the command line
    was read (``read``, ``cmdline.check_words``), else from doit's words."""
    try:
        if read is not None:
            paths, values = read[0], {**{o.key: o.default for o in command.options}, **read[1]}
        else:
            paths, values = parse_words(words, command, given)
        ctx = Context(plan, command.name, quiet=bool(values.pop("quiet", False)))
        return command.runner()(ctx, paths, **values)
    except SnapbackError as exc:
        return Failed.of(exc)
    except BrokenPipeError:      # a reader piped into head: it has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return None
    except OSError as exc:
        where = f"{os.fsdecode(exc.filename)}: " if exc.filename else ""
        return Failed(f"{where}{exc.strerror or exc}")
    except sqlite3.Error as exc:
        return Failed(f"the catalog in {plan.meta_dir}: {exc}")


# ---- PATH in the backup ------------------------------------------------------

def no_paths(paths: list[str], what: str) -> None:
    if paths:
        raise UsageError(f"{what}: it takes no PATH")


def one_path(paths: list[str], command: str, required: bool = True) -> str | None:
    if len(paths) > 1:
        raise UsageError(f"{command} takes one PATH, got {len(paths)}: {' '.join(paths)}")
    if required and not paths:
        raise UsageError(f"{command} needs a PATH: snapback {command} PATH [options]")
    return paths[0] if paths else None


def needs_backup(plan: Plan) -> None:
    if not plan.meta_dir.exists():
        raise UsageError(f"no backup at {plan.destination} yet")


def known_format(plan: Plan) -> None:
    """The backup's catalog is one this snapback reads: a newer snapback's backup is not
    protected or unprotected by an older one (the commands that read it check as they
    open it).  Under the lock: a run holding it is status 75, not a busy catalog."""
    open_catalog(plan.meta_dir, writable=False).close()


def known(catalog: Catalog, plan: Plan) -> Callable[[Target], bool]:
    """Is a target something the backup holds (history or mirror)?"""
    def holds(target: Target) -> bool:
        if catalog.rows_under(target.source.name, os.fsencode(target.rel)):
            return True
        if catalog.pruned_under(target.source.name, os.fsencode(target.rel)):
            return True                  # (its history is gone: the command says so)
        if not target.rel and b"" in catalog.folders_seen("versioned", target.source.name):
            return True                  # a source backed up while it was empty
        mirror = layout.mirror_root(plan.destination, target.source.name) / target.rel
        return os.path.lexists(mirror)
    return holds


def when(catalog: Catalog, text: str) -> int | None:
    """The history as of TIME, as the newest row id it includes (None: the latest)."""
    return when_at(catalog, text)[0]


def when_at(catalog: Catalog, text: str) -> tuple[int | None, int | None]:
    """The history as of TIME: (the newest row id it includes, how many of the
    catalog's runs, from the first, it includes); (None, None): the latest.

    Runs are taken in the order they ran, never by their clocks: a run id is that
    run's state exactly; a time is the state after the longest run of runs, from the
    first, whose clocks all said that time or earlier (a run made with a clock set back
    is included only from the time of the run before it: the state at a time never
    holds what a run recorded under a later time)."""
    from .. import timespec
    if not text:
        return None, None
    order, given = catalog.run_order(), text.strip()
    if timespec.RUN_ID.match(given):
        for index, (run_id, _started, upto) in enumerate(order):
            if run_id == given:
                return upto, index + 1
        # a run that wrote nothing into the catalog (refused by the vanished-source
        # guard, say) but that doit history lists: the state the runs before it left
        from .. import runlog
        records = runlog.read(catalog.path.parent)
        logged = [r.get("run_id") for r in records]
        if given in logged:
            # the state the runs before it left: the newest the catalog holds, unless a
            # run between (or itself) is one whose record says the catalog holds it (runs
            # stay there, however pruned): then this catalog is older than its run log
            # (fetched from a remote whose sync was cut between the two)
            bounds = {run_id: (upto, index + 1)
                      for index, (run_id, _s, upto) in enumerate(order)}
            for record in reversed(records[:logged.index(given) + 1]):
                if record.get("run_id") in bounds:
                    return bounds[record["run_id"]]
                if record.get("in_catalog") is True:
                    raise timespec.BadTime(
                        f"run {given!r}: the run log names runs up to it that this catalog "
                        f"does not hold ({record.get('run_id')!r}): the catalog is older "
                        "than the log (a sync cut short before it sent the catalog?); doit "
                        "history FILE lists the versions this catalog holds")
            return -1, 0
        raise timespec.BadTime(
            f"no run {given!r} in this backup's history (it changed only the mirror, which "
            "keeps only the latest state, or its versions were pruned; doit history lists "
            "the runs)")
    moment, upto, count = timespec.parse(text), -1, 0      # -1: before the first run
    for _run_id, started, last in order:
        if started > moment:
            break
        upto, count = last, count + 1
    return upto, count


def untraced_prune(catalog: Catalog, included: int | None) -> str | None:
    """The first run that pruned, not included in the state of the history as of a
    time (it holds the first ``included`` runs), made by an older snapback, which
    dropped versions without the trace this version keeps: a restore as of that time
    cannot name what it dropped.  A prune the catalog has no run for (a snapback older
    still) is placed after the runs logged before it.  None when there is none, or
    for the latest state."""
    from .. import runlog
    if included is None:
        return None
    try:                                      # (the log names the automatic prunes)
        records = runlog.read(catalog.path.parent)
    except SnapbackError:
        records = []                          # unreadable: the catalog's prune runs alone
    order = catalog.run_order()
    index = {run_id: n for n, (run_id, _s, _u) in enumerate(order)}

    def newest(runs: int) -> int:         # the newest row id of the first ``runs`` runs
        return order[runs - 1][2] if runs > 0 else -1

    # A prune can only have dropped a version the state held when a later version of
    # that file was written before it: rows written between the state and the prune.
    state = newest(included)
    logged: set[str] = set()
    runs_before = 0                           # catalog runs logged before this record
    placeless: str | None = None
    for record in records:
        run_id = record.get("run_id")
        if not isinstance(run_id, str):
            continue
        if run_id in index:
            runs_before = max(runs_before, index[run_id] + 1)
        if record.get("mode") == "prune" and record.get("traced") is not True:
            logged.add(run_id)
            if run_id not in index and newest(runs_before) > state and placeless is None:
                placeless = run_id
    untraced = catalog.untraced_prunes(logged)
    for run_id, _started, upto in order[included:]:
        if run_id in untraced and upto > state:
            return run_id
    return placeless


def split(rel: str) -> tuple[bytes, bytes]:
    folder, _, name = os.fsencode(rel).rpartition(b"/")
    return folder, name


def with_retired(plan: Plan, catalog: Catalog) -> Plan:
    """The plan's sources plus those the backup holds that the plan no longer names
    (renamed or removed): their history stays reachable, by ``<name>/<path>`` or by
    their path in the backup."""
    named = {s.name for s in plan.sources}
    found = set(catalog.sources())
    mirror = layout.mirror_root(plan.destination)
    if mirror.is_dir():
        found |= {e.name for e in os.scandir(mirror) if e.is_dir(follow_symlinks=False)}
    retired = sorted(found - named)
    if not retired:
        return plan
    extra = tuple(Source(path=mirror / name, name=name) for name in retired)
    return plan._replace(sources=plan.sources + extra)


def retired_sources(plan: Plan, catalog: Catalog) -> list[str]:
    named = {s.name for s in plan.sources}
    return [s.name for s in with_retired(plan, catalog).sources if s.name not in named]
