"""The recovery commands as doit tasks: history, restore, diff, verify.

Each is a task with ``pos_arg`` (PATH), ``params`` (its options) and
``uptodate: [False]``.  doit stops parsing options at the first word, so
options written after PATH arrive among the words: ``parse_words`` reads them
there too, so ``doit restore PATH --at T`` and ``doit restore --at T PATH`` are
the same.  These commands never write into the backup; restore and verify hold
the lock while they read, so that no backup changes the history under them.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from doit.exceptions import TaskFailed

from .catalog import CONTENT_KINDS, Catalog, open_catalog
from .errors import Failed, LockHeld, SnapbackError, UsageError
from .lock import Lock
from .paths import Target, in_source as paths_in_source, locate, user_cwd
from .plan import Plan
from .report import human_size
from .run import clock as run_clock


def _mod(name: str) -> Any:
    """A module of one command, imported when that command runs: every doit call
    loads this file, and a no-change backup should not pay for restore or sync."""
    return importlib.import_module(f"pipeline.{name}")

OPTIONS: dict[str, dict[str, Any]] = {
    "at": {"name": "at", "long": "at", "type": str, "default": "",
           "help": "the time: 2026-11-23, 2026-11-23T14:30, or a run id (default: latest)"},
    "to": {"name": "to", "long": "to", "type": str, "default": None,
           "help": "restore into this folder (default: ./restored/)"},
    "from": {"name": "origin", "long": "from", "type": str, "default": "versioned",
             "help": "restore from the versioned history (default) or the snapshot mirror"},
    "force": {"name": "force", "long": "force", "type": bool, "default": False,
              "help": "overwrite files that exist already"},
    "against": {"name": "against", "long": "against", "type": str, "default": "",
                "help": "compare with the version at this time (default: the one before)"},
    "vscode": {"name": "vscode", "long": "vscode", "type": bool, "default": False,
               "help": "open the two versions in VS Code (code --diff)"},
    "deep": {"name": "deep", "long": "deep", "type": bool, "default": False,
             "help": "also rebuild every version of every file"},
    "dry-run": {"name": "dry_run", "long": "dry-run", "type": bool, "default": False,
                "help": "say what would be sent; send nothing"},
    "verbose": {"name": "verbose", "long": "verbose", "type": bool, "default": False,
                "help": "list every file sent or deleted"},
    "keep-within": {"name": "keep_within", "long": "keep-within", "type": str, "default": "",
                    "help": "keep every version newer than this (30d, 12h, 2w, 6m, 1y)"},
    "keep-last": {"name": "keep_last", "long": "keep-last", "type": int, "default": 0,
                  "help": "keep the N newest versions of each file"},
    "keep-daily": {"name": "keep_daily", "long": "keep-daily", "type": int, "default": 0,
                   "help": "keep the newest version of each of the last N days"},
    "keep-weekly": {"name": "keep_weekly", "long": "keep-weekly", "type": int, "default": 0,
                    "help": "keep the newest version of each of the last N weeks"},
    "keep-monthly": {"name": "keep_monthly", "long": "keep-monthly", "type": int, "default": 0,
                     "help": "keep the newest version of each of the last N months"},
    "keep-deleted": {"name": "keep_deleted", "long": "keep-deleted", "type": str, "default": "",
                     "help": "drop the history of files deleted longer ago than this"},
    "tree": {"name": "tree", "long": "tree", "type": bool, "default": False,
             "help": "list the folders left out below DIR (default: every source), largest first"},
    "quiet": {"name": "quiet", "long": "quiet", "type": bool, "default": False,
              "help": "print only problems and what was asked for (no confirmations)"},
}

# Each recovery command's options (the backup commands' are tasks.BACKUP_PARAMS).
# --quiet is accepted by every command, so that one cron line fits them all.
COMMON = ["quiet"]
PRUNE_OPTIONS = ["dry-run", "keep-within", "keep-last", "keep-daily", "keep-weekly",
                 "keep-monthly", "keep-deleted"]
COMMAND_OPTIONS: dict[str, list[str]] = {
    "history": [*COMMON],
    "restore": ["at", "to", "from", "force", *COMMON],
    "diff": ["at", "against", "vscode", *COMMON],
    "verify": ["deep", *COMMON],
    "sync": ["dry-run", "verbose", *COMMON],
    "protect": [*COMMON],
    "unprotect": [*COMMON],
    "explain": ["tree", *COMMON],
    "prune": [*PRUNE_OPTIONS, *COMMON],
    "fetch": ["force", *COMMON],
    "check": [*COMMON],
}


def parse_words(words: list[str], allowed: list[str], given: dict[str, Any]) -> tuple[list[str], dict]:
    """Split doit's positional words into paths and options (options may follow PATH)."""
    values = dict(given)
    paths: list[str] = []
    table = {f"--{OPTIONS[k]['long']}": OPTIONS[k] for k in allowed}
    index = 0
    while index < len(words):
        word = words[index]
        option, eq, inline = word.partition("=")
        if option in table:
            spec = table[option]
            if spec["type"] is bool:
                values[spec["name"]] = True
            elif eq:
                values[spec["name"]] = inline
            elif index + 1 < len(words):
                index += 1
                values[spec["name"]] = words[index]
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


def task(name: str, plan: Plan, doc: str) -> dict:
    action = {"history": history_action, "restore": restore_action,
              "diff": diff_action, "verify": verify_action, "sync": sync_action,
              "protect": protect_action, "unprotect": unprotect_action,
              "explain": explain_action, "prune": prune_action,
              "fetch": _offsite("fetch_action"), "check": _offsite("check_action")}[name]
    options = COMMAND_OPTIONS[name]
    return {
        "actions": [(_guard, [action, plan, options])],
        "pos_arg": "words",
        "params": [OPTIONS[o] for o in options],
        "uptodate": [False],
        "verbosity": 2,
        "doc": doc,
    }


QUIET = False      # --quiet of the command running: confirmations are not printed


def say(text: str) -> None:
    """A confirmation line (``restored ...``), left out with --quiet."""
    if not QUIET:
        print(text)


def _offsite(name: str):
    """fetch and check live in pipeline/offsite.py (imported when they run)."""
    def action(*args: Any, **kwargs: Any) -> Any:
        return getattr(_mod("offsite"), name)(*args, **kwargs)
    return action


def _guard(action, plan: Plan, options: list[str], words: list[str], **given: Any):
    """Turn a user's mistake into a one-line failure with its exit status (errors.py),
    never a traceback: only a bug in snapback shows one."""
    global QUIET
    try:
        paths, values = parse_words(words, options, given)
        QUIET = bool(values.pop("quiet", False))
        return action(plan, paths, **values)
    except SnapbackError as exc:
        return Failed.of(exc)
    except OSError as exc:
        where = f"{os.fsdecode(exc.filename)}: " if exc.filename else ""
        return Failed(f"{where}{exc.strerror or exc}")
    except sqlite3.Error as exc:
        return Failed(f"the catalog in {plan.meta_dir}: {exc}")


@contextlib.contextmanager
def reading(plan: Plan, what: str) -> Iterator[Catalog]:
    """The catalog, read-only, with the lock held so that no backup runs meanwhile."""
    lock = Lock(plan.meta_dir / "lock")
    held = False
    if plan.meta_dir.exists():
        try:
            lock.acquire(note=f"doit {what}")
            held = True
        except LockHeld:
            raise
        except OSError:
            pass                     # a read-only backup (media, protect): nobody writes it
    catalog = open_catalog(plan.meta_dir, writable=False)
    try:
        yield catalog
    finally:
        catalog.close()
        if held:
            lock.release()


def _known(catalog: Catalog, plan: Plan):
    def known(target: Target) -> bool:
        if catalog.rows_under(target.source.name, os.fsencode(target.rel)):
            return True
        mirror = plan.destination / "system_snapshot" / target.source.name / target.rel
        return os.path.lexists(mirror)
    return known


def _one_path(paths: list[str], command: str, required: bool = True) -> str | None:
    if len(paths) > 1:
        raise UsageError(f"{command} takes one PATH, got {len(paths)}: {' '.join(paths)}")
    if required and not paths:
        raise UsageError(f"{command} needs a PATH: doit {command} PATH [options]")
    return paths[0] if paths else None


def _time(catalog: Catalog, text: str) -> float | None:
    return _mod("timespec").parse(text, catalog.run_times()) if text else None


# ---- history ---------------------------------------------------------------

def history_action(plan: Plan, paths: list[str]) -> TaskFailed | None:
    """Without PATH, the runs; with PATH, that file's versions or a folder's changes."""
    path = _one_path(paths, "history", required=False)
    if path is None:
        print("\n".join(_mod("history").format_runs(_mod("history").runs(plan.meta_dir))))
        catalog = open_catalog(plan.meta_dir, writable=False)
        try:
            retired = retired_sources(plan, catalog)
        finally:
            catalog.close()
        for name in retired:
            print(f"in the backup, no longer in the plan: {name} "
                  f"(doit history {name}/PATH, doit restore {name}/PATH)")
        return None
    catalog = open_catalog(plan.meta_dir, writable=False)
    try:
        view = with_retired(plan, catalog)
        target = locate(view, path, _known(catalog, view))
        rows = catalog.history(target.source.name, *_split(target.rel))
        if rows and rows[-1].entry != "dir":
            print(f"{target.label}:")
            print("\n".join(_mod("history").format_versions(rows)))
        else:
            print("\n".join(_mod("history").folder_changes(catalog, target)))
    finally:
        catalog.close()
    return None


def _split(rel: str) -> tuple[bytes, bytes]:
    folder, _, name = os.fsencode(rel).rpartition(b"/")
    return folder, name


# ---- restore ---------------------------------------------------------------

def restore_action(plan: Plan, paths: list[str], at: str = "", to: str | None = None,
                   origin: str = "versioned", force: bool = False) -> TaskFailed | None:
    """Rebuild a file or folder as it was at a time, into DIR (never over a file without --force)."""
    path = _one_path(paths, "restore")
    assert path is not None
    if origin not in ("versioned", "snapshot"):
        raise UsageError(f"--from takes versioned or snapshot, got {origin!r}")
    into = _restore_folder(plan, to)
    restore = _mod("restore")
    note = ""
    with reading(plan, "restore") as catalog:
        view = with_retired(plan, catalog)
        target = locate(view, path, _known(catalog, view))
        if origin == "snapshot":
            if at:
                raise UsageError("the snapshot mirror holds only the latest state: "
                                 "use --from versioned with --at")
            items = restore.snapshot_items(
                plan.destination / "system_snapshot" / target.source.name, target, catalog,
                _mod("protect").is_protected(plan.meta_dir, plan.protect))
        else:
            upto = restore.exact_version(catalog, target, at)
            when = _time(catalog, at) if upto is None else None
            items = restore.versioned_items(catalog, target, when, upto)
            if not items and not at:
                gone = restore.deleted_at(catalog, target)
                if gone is not None:          # deleted: its last version, and when it went
                    items = restore.versioned_items(catalog, target, gone[0])
                    note = f" (deleted {gone[1]}; this is its last version)"
        if not items:
            moment = f" at {at}" if at else ""
            raise UsageError(f"{target.label} did not exist{moment} in the {origin} backup")
        done = restore.restore(items, into, plan.destination / "versioned_backup"
                               / target.source.name, force)
    for rel, why in done.failed:
        print(f"FAILED   {rel}: {why}", file=sys.stderr)
    say(f"restored {target.label}{' as of ' + at if at else ''}{note}: {done.written} "
        f"file(s) into {into}")
    if done.failed:
        return Failed(f"{len(done.failed)} path(s) of {target.label} could not be restored "
                      f"(first: {done.failed[0][0]}); everything else was")
    return None


def _restore_folder(plan: Plan, to: str | None) -> Path:
    """--to DIR as a folder to restore into: never a file, never inside the backup."""
    if to is not None and not to.strip():
        raise UsageError("--to needs a folder (default: ./restored/)")
    into = Path(os.path.expanduser(to)) if to else user_cwd() / "restored"
    if not into.is_absolute():
        into = user_cwd() / into
    if os.path.lexists(into) and not os.path.isdir(into):
        raise UsageError(f"--to {to}: exists and is not a folder")
    probe = into
    while not os.path.lexists(probe) and probe.parent != probe:
        probe = probe.parent                      # the nearest part that exists
    if plan.destination.exists() and probe.exists():
        dest = os.stat(plan.destination)
        here = Path(os.path.realpath(probe))
        for folder in (here, *here.parents):
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) == (dest.st_dev, dest.st_ino):
                raise UsageError(f"--to {to}: is inside the backup {plan.destination}; "
                                 "restore somewhere else")
    return into


def with_retired(plan: Plan, catalog: Catalog) -> Plan:
    """The plan's sources plus those the backup holds that the plan no longer names
    (renamed or removed): their history stays reachable, by ``<name>/<path>`` or by
    their path in the backup."""
    named = {s.name for s in plan.sources}
    found: set[str] = set()
    if catalog.conn is not None:
        found |= {n for (n,) in catalog.conn.execute("select distinct source from versions")}
    mirror = plan.destination / "system_snapshot"
    if mirror.is_dir():
        found |= {e.name for e in os.scandir(mirror) if e.is_dir(follow_symlinks=False)}
    retired = sorted(found - named)
    if not retired:
        return plan
    from dataclasses import replace
    from .plan import Source
    extra = tuple(Source(path=mirror / name, name=name) for name in retired)
    return replace(plan, sources=plan.sources + extra)


def retired_sources(plan: Plan, catalog: Catalog) -> list[str]:
    named = {s.name for s in plan.sources}
    return [s.name for s in with_retired(plan, catalog).sources if s.name not in named]


# ---- diff ------------------------------------------------------------------

def diff_action(plan: Plan, paths: list[str], at: str = "", against: str = "",
                vscode: bool = False) -> TaskFailed | None:
    """The unified diff between two versions of a file (default: its last change)."""
    path = _one_path(paths, "diff")
    assert path is not None
    catalog = open_catalog(plan.meta_dir, writable=False)
    try:
        view = with_retired(plan, catalog)
        target = locate(view, path, _known(catalog, view))
        rows = catalog.history(target.source.name, *_split(target.rel))
        content = [r for r in rows if r.kind in CONTENT_KINDS]
        if not content:
            raise UsageError(f"{target.label} has no stored versions")
        exact = {r.time: r for r in content}
        if at.strip() in exact:                  # a stamp of doit history: that version
            new_candidates = [r for r in content if r.id <= exact[at.strip()].id]
        else:
            when = _time(catalog, at)
            new_candidates = [r for r in content if when is None or r.recorded <= when]
        if not new_candidates:
            raise UsageError(f"{target.label} has no version at {at}")
        new = new_candidates[-1]
        if against and against.strip() in exact:
            older = [r for r in content if r.id <= exact[against.strip()].id]
        elif against:
            limit = _time(catalog, against)
            older = [r for r in content if limit is not None and r.recorded <= limit]
        else:
            older = [r for r in content if r.id < new.id]
        if not older:
            raise UsageError(f"{target.label}: no earlier version to compare with "
                                f"(first stored {new.time})")
        old = older[-1]
        root = plan.destination / "versioned_backup" / target.source.name
        try:
            before = _mod("rebuild").rebuild(root, rows, old)
            after = _mod("rebuild").rebuild(root, rows, new)
        except _mod("rebuild").RebuildError as exc:
            raise SnapbackError(f"{target.label}: {exc}") from None
    finally:
        catalog.close()
    if vscode:
        return _vscode(target, old.time, before, new.time, after)
    if not (_mod("textdiff").is_text(before) and _mod("textdiff").is_text(after)):
        print(f"binary versions of {target.label} differ ({old.time}: {len(before)} bytes, "
              f"{new.time}: {len(after)} bytes)")
        return None
    name = os.fsencode(f"{target.source.name}/{target.rel}")  # make_diff quotes it as GNU diff
    text = _mod("textdiff").make_diff(before, after, name + b"@" + old.time.encode(),
                                      name + b"@" + new.time.encode())
    if text is None:
        print(f"{target.label}: the versions are too large to diff here; try --vscode")
        return None
    _print_diff(text)
    return None


def _print_diff(text: bytes) -> None:
    out = sys.stdout
    colour = out.isatty() and os.environ.get("NO_COLOR") is None
    for line in text.decode("utf-8", "replace").splitlines(keepends=True):
        if colour and line.startswith("+") and not line.startswith("+++"):
            line = f"\x1b[32m{line.rstrip(chr(10))}\x1b[0m\n"
        elif colour and line.startswith("-") and not line.startswith("---"):
            line = f"\x1b[31m{line.rstrip(chr(10))}\x1b[0m\n"
        elif colour and line.startswith("@@"):
            line = f"\x1b[36m{line.rstrip(chr(10))}\x1b[0m\n"
        out.write(line)
    out.flush()


def _vscode(target: Target, old_time: str, before: bytes, new_time: str,
            after: bytes) -> TaskFailed | None:
    code = shutil.which("code")
    if code is None:
        raise SnapbackError("--vscode needs VS Code's `code` command on the PATH "
                            "(VS Code: Shell Command: Install 'code' command in PATH)")
    folder = Path(tempfile.mkdtemp(prefix="snapback-diff-"))
    name = os.path.basename(target.rel) or target.source.name
    left, right = folder / f"{old_time}-{name}", folder / f"{new_time}-{name}"
    left.write_bytes(before)
    right.write_bytes(after)
    subprocess.run([code, "--diff", str(left), str(right)], check=False)
    print(f"opened VS Code on {left} and {right}")
    return None


# ---- verify ----------------------------------------------------------------

def verify_action(plan: Plan, paths: list[str], deep: bool = False) -> TaskFailed | None:
    """Check every stored object against its checksum (--deep: rebuild every version)."""
    if paths:
        raise UsageError("verify checks the whole backup: it takes no PATH")
    if not plan.meta_dir.exists():
        raise UsageError(f"no backup at {plan.destination} yet")
    with reading(plan, "verify") as catalog:
        checked, problems = _mod("verify").verify(plan.destination, catalog, deep)
    for problem in problems:
        print(f"{problem.what:<13} {problem.path}: {problem.detail}")
    say(f"verify{' --deep' if deep else ''}: {checked} objects checked, "
        f"{len(problems)} problem(s)")
    if problems:
        return TaskFailed(f"the backup at {plan.destination} has {len(problems)} problem(s)")
    return None


# ---- sync, protect, unprotect ------------------------------------------------

def sync_action(plan: Plan, paths: list[str], dry_run: bool = False,
                verbose: bool = False) -> TaskFailed | None:
    """Send the backup to the plan's rclone remote (the mirror mirrored, history kept)."""
    if paths:
        raise UsageError("sync sends the whole backup: it takes no PATH")
    with reading(plan, "sync"):
        done = _mod("sync").sync(plan, dry_run)
    say("\n".join(_mod("sync").describe(done, dry_run, verbose)))
    note = _mod("sync").cannot_hold(plan)          # what the remote cannot hold: one line
    if note:
        print(note)
    return None


def protect_action(plan: Plan, paths: list[str]) -> TaskFailed | None:
    """Make the backup read-only (runs still update it)."""
    if not plan.meta_dir.exists():
        raise UsageError(f"no backup at {plan.destination} yet")
    with reading(plan, "protect"):
        changed = _mod("protect").protect(plan.destination)
    say(f"protected {plan.destination}: {changed} files and folders made read-only")
    return None


def unprotect_action(plan: Plan, paths: list[str]) -> TaskFailed | None:
    """Make the backup writable again."""
    if not plan.meta_dir.exists():
        raise UsageError(f"no backup at {plan.destination} yet")
    if plan.protect:
        print("note: the plan says protect: true, so the next backup run protects it again")
    with reading(plan, "unprotect"):
        changed = _mod("protect").unprotect(plan.destination)
    say(f"unprotected {plan.destination}: {changed} files and folders made writable")
    return None


# ---- explain -----------------------------------------------------------------

def explain_action(plan: Plan, paths: list[str], tree: bool = False) -> TaskFailed | None:
    """Whether each PATH is backed up by each mode, and the rule that decided."""
    def in_source(text: str) -> Target:
        return paths_in_source(plan, text)

    if tree:
        targets = [in_source(p) for p in paths] or [Target(s, "") for s in plan.sources]
        for target in targets:
            rows = _mod("explain").left_out_tree(plan, target)
            print(f"left out below {target.label}/: {len(rows)} folder(s)")
            for size, count, label, why in rows:
                print(f"  {human_size(size):>9} {count:>8,} files  {label}  {why}")
        return None
    if not paths:
        raise UsageError("explain needs a PATH (or --tree [DIR])")
    missing = 0
    for text in paths:
        target = in_source(text)
        verdicts = _mod("explain").explain(plan, target)
        print(f"{target.label}")
        for verdict in verdicts:
            state = ("backed up" if verdict.why in ("backed up", "the source folder itself")
                     else "selected") if verdict.kept else "left out"
            detail = "" if verdict.why == "backed up" else f": {verdict.why}"
            print(f"  {verdict.mode:<10} {state}{detail}")
        missing += not any(v.kept for v in verdicts)
    if missing:
        return TaskFailed(f"{missing} of {len(paths)} path(s) are not backed up")
    return None


# ---- prune -------------------------------------------------------------------


def prune_action(plan: Plan, paths: list[str], dry_run: bool = False, **given: Any
                 ) -> TaskFailed | None:
    """Drop the versions the retention rules do not keep (--dry-run: only say which)."""
    if paths:
        raise UsageError("prune works on the whole history: it takes no PATH")
    policy = _policy(plan.retention, given)
    if policy.empty:
        print("no retention rules (plan section `retention:` or --keep-* options): "
              "nothing is pruned")
        return None
    if not plan.meta_dir.exists():
        raise UsageError(f"no backup at {plan.destination} yet")
    if _mod("protect").marker(plan.meta_dir).exists() and not dry_run:
        raise UsageError("the backup is protected: run doit unprotect first")
    lock = Lock(plan.meta_dir / "lock")
    lock.acquire(note="doit prune")
    try:
        catalog = open_catalog(plan.meta_dir, writable=not dry_run)
        try:
            outcomes = _mod("prune").run(catalog, plan.destination, policy, run_clock(),
                                   plan.versioned.max_diff_bytes, dry_run)
        finally:
            catalog.close()
        lines = _mod("prune").describe(outcomes, dry_run)
        print("\n".join(lines))
        if not dry_run and outcomes:
            _record_prune(plan, lines[-1], outcomes)
    finally:
        lock.release()
    failed = [o for o in outcomes if o.problem]
    return TaskFailed(f"{len(failed)} file(s) could not be pruned") if failed else None


def _policy(base, given: dict[str, Any]):
    from dataclasses import replace
    from .retention import duration
    changes: dict[str, Any] = {}
    for key in ("keep_within", "keep_deleted"):
        if given.get(key):
            seconds = duration(given[key])
            if seconds is None:
                raise UsageError(f"--{key.replace('_', '-')}: expected a duration such as "
                                    f"30d, 12h, 2w, 6m or 1y, got {given[key]!r}")
            changes[key] = seconds
    for key in ("keep_last", "keep_daily", "keep_weekly", "keep_monthly"):
        value = given.get(key)
        if value:
            try:
                number = int(value)
            except ValueError:
                number = 0
            if number < 1:
                raise UsageError(f"--{key.replace('_', '-')}: expected a whole number of 1 "
                                    f"or more, got {value!r}")
            changes[key] = number
    return replace(base, **changes)


def _record_prune(plan: Plan, summary: str, outcomes) -> None:
    import json
    from datetime import datetime, timezone
    now = datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
    record = {"run_id": f"prune-{now}", "mode": "prune", "note": summary, "started": now,
              "counts": {"pruned": sum(o.dropped for o in outcomes if not o.problem),
                         "files": len(outcomes)},
              "bytes": sum(o.freed for o in outcomes if not o.problem),
              "failed": [{"path": o.label, "reason": o.problem} for o in outcomes if o.problem]}
    with open(plan.meta_dir / "runs.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
