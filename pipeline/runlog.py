"""The run log, ``.snapback/runs.jsonl``: one JSON object per run, appended.

Backup runs and prune write it (``append``: O_APPEND, never through a link,
fsync'd); ``doit history`` reads it (``read``: a damaged line is skipped).
``record`` makes a backup run's object from its session; ``--report FILE``
gets the same object.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__, layout
from .errors import SnapbackError
from .layout import RUNS
from .session import DELETED, FAILED, NEW, UPDATED, Session
from .show import plural


def append(meta_dir: Path, record: dict[str, Any]) -> None:
    """Add one record (OSError when it cannot be written)."""
    line = json.dumps(record) + "\n"          # ASCII: odd names stay valid JSON
    fd = os.open(meta_dir / RUNS, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                 | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = "\n" + line       # a line cut short (a crash) stays alone
        data = line.encode("ascii")
        try:
            while data:               # a full disk can take part of it before it says so
                data = data[os.write(fd, data):]
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)    # no record cut short: the log stays as it was
            raise
    finally:
        os.close(fd)


def read(meta_dir: Path) -> list[dict[str, Any]]:
    """The run records of runs.jsonl; a damaged line (cut short by a crash, edited by
    hand) is skipped, and stands as one record saying so."""
    log = meta_dir / RUNS
    if not log.exists():
        return []
    try:
        # never through a link, never waiting on a pipe, never a folder
        fd = os.open(log, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise OSError(errno.EINVAL, "not a file")
            text = fh.read().decode("utf-8", errors="replace")
    except OSError as exc:
        raise SnapbackError(f"cannot read the run log {log}: {exc.strerror or exc}") from None
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):     # (a line nested past the stack)
            record = None
        if not isinstance(record, dict):
            record = {"mode": "damaged", "note": f"{log}:{number}: not a run record: skipped"}
        out.append(record)
    return out


def has_record(meta_dir: Path, run_id: str) -> bool:
    """Does the log hold a record of ``run_id``?  Its last 256 KB first (the run before
    the one asking: its record ends the log), then the whole log, a megabyte at a time.
    Opened as ``append`` opens it (never through a link, never waiting on a pipe); a
    log that cannot be read, or is not a plain file, is an error (``OSError``); a log
    not made yet holds none."""
    needle = f'"run_id": {json.dumps(run_id)},'.encode()
    try:
        fd = os.open(meta_dir / RUNS, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
                     | os.O_NONBLOCK)
    except FileNotFoundError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a plain file", str(meta_dir / RUNS))
        tail = max(st.st_size - (256 << 10), 0)
        if needle in os.pread(fd, st.st_size - tail, tail):
            return True
        at, carry = 0, b""
        end = min(tail + len(needle) - 1, st.st_size)    # (one across the tail's start too)
        while at < end:
            block = os.pread(fd, min(1 << 20, end - at), at)
            if not block:
                return False              # (shorter than it was: nothing more to read)
            if needle in carry + block:
                return True
            at += len(block)
            carry = block[-len(needle):]
        return False
    finally:
        os.close(fd)


def stopped_record(run_id: str, started: float, changes: tuple[int, int, int, int]
                   ) -> dict[str, Any]:
    """The record of a run that did not reach its end (killed, interrupted, a machine
    that went down, a run log it could not write): what the catalog holds of it,
    written by a later run.  Its files' lines and its mirror deletions are not known
    any more."""
    new, updated, deleted, mirror = changes
    versioned = {"new": new, "updated": updated, "deleted": deleted, "failed": 0}
    return {
        "run_id": run_id, "mode": "stopped",
        "note": f"ended before its record (killed, interrupted, or the log could not be "
                f"written); what the catalog holds of it: "
                f"{plural(new + updated + deleted, 'version')}, "
                f"{mirror:,} mirror {'copy' if mirror == 1 else 'copies'}",
        "started": _iso(started), "counts": versioned, "bytes": 0,
        "modes": {"versioned": {**versioned, "bytes": 0}}, "failed": [],
        "in_catalog": True, "snapback": __version__,
    }


def counts(current: Session, modes: tuple[str, ...]) -> dict[str, int]:
    tally = current.tally
    out = {"scanned": scanned(current, modes)}
    for kind in (NEW, UPDATED, DELETED, FAILED):
        out[kind.lower()] = sum(tally.files.get((mode, kind), 0) for mode in modes)
    out["bytes"] = sum(tally.written.get(mode, 0) for mode in modes)
    # folders whose records could not be committed: a FAILED line each, no file counted
    out["failed_folders"] = sum(1 for e in tally.failed if e.mode in modes and not e.files)
    return out


def record(current: Session, modes: tuple[str, ...], label: str = "") -> dict[str, Any]:
    """The run as one JSON object (runs.jsonl, --report)."""
    by_mode = {mode: counts(current, (mode,)) for mode in modes}
    total = {key: sum(c[key] for c in by_mode.values()) for key in by_mode[modes[0]]}
    seconds = time.perf_counter() - current.t0
    ended = current.started + seconds
    return {
        "run_id": current.run_id,
        "mode": label or ("all" if set(modes) == set(layout.MODES) else modes[0]),
        "note": current.options.note,
        "started": _iso(current.started),
        "ended": _iso(ended),
        "seconds": round(seconds, 3),
        "dry_run": current.options.dry_run,
        "counts": {k: v for k, v in total.items() if k != "bytes"},
        "bytes": total["bytes"],
        "modes": by_mode,
        # (the mode too: a file that failed in both is two failures, told apart)
        "failed": [{"path": e.path, "mode": e.mode, "reason": e.reason}
                   for e in current.tally.failed
                   if e.mode in modes],
        # whether the catalog holds the run (its commits made): a catalog that does not
        # hold a run its log says it holds is older than the log (``commands.base.when``)
        "in_catalog": current.in_catalog(),
        "snapback": __version__,
    }


def locked_record(current: Session, modes: tuple[str, ...], why: str) -> dict[str, Any]:
    """The report of a run that did nothing: another run held the lock (exit status 75).
    Never in runs.jsonl (it wrote nothing into the backup); ``--report`` only."""
    seconds = time.perf_counter() - current.t0
    return {
        "run_id": current.run_id,
        "mode": "all" if set(modes) == set(layout.MODES) else modes[0],
        "note": current.options.note,
        "started": _iso(current.started),
        "ended": _iso(current.started + seconds),
        "seconds": round(seconds, 3),
        "dry_run": current.options.dry_run,
        "locked": why,
        "counts": {},
        "bytes": 0,
        "modes": {},
        "failed": [],
        "in_catalog": False,
        "snapback": __version__,
    }


def scanned(current: Session, modes: tuple[str, ...]) -> int:
    return sum(f.count(mode)
               for (mode, _source), folders in current.views.items() if mode in modes
               for f in folders)


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, timezone.utc).astimezone().isoformat(timespec="seconds")


def prune_record(outcomes: list[Any], summary: str, run_id: str, started: float,
                 auto: bool = False) -> dict[str, Any]:
    """A prune's record (``doit prune``, or ``retention.auto`` after ``doit all``), under
    the run id the catalog gave it (``Catalog.run_seq``: unique, and what ``--at``
    takes) and the time it pruned by."""
    return {"run_id": run_id, "mode": "prune", "note": summary, "started": _iso(started),
            "auto": auto, "traced": True,     # (the catalog keeps what it dropped: older
                                              # snapbacks' prunes did not)
            "counts": {"pruned": sum(o.dropped for o in outcomes if not o.problem),
                       "files": sum(1 for o in outcomes if not o.problem)},
            "bytes": max(sum(o.freed for o in outcomes if not o.problem), 0),
            "failed": [{"path": o.label, "reason": o.problem} for o in outcomes if o.problem]}
