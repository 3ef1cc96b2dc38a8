"""What one invocation owns while it runs: the destination's lock, the catalog
connection and the exit status.

The session (``pipeline.session``) holds one ``RunControl``; the actions take the
lock and open the catalog through it, and the reporter tells it what went wrong
(``fail``) and asks it, at the end, to let go (``release``) and for the status.
The reporter only reports."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .catalog import Catalog, open_catalog
from .errors import BUG, INVALID, LOCKED, OK, PARTIAL, LockHeld
from .lock import Lock
from .store import clear_staging, make_destination

# The run's status is its worst outcome: a bug, then the lock, then the rest.
RANK = {OK: 0, PARTIAL: 1, INVALID: 2, LOCKED: 3, BUG: 4}


@dataclass
class RunControl:
    meta_dir: Path
    lock: Lock | None = None
    catalog: Catalog | None = None
    lock_error: str | None = None          # why the lock could not be taken
    status: int = OK                       # snapback's exit status (errors.py)

    def fail(self, status: int) -> None:
        if RANK.get(status, 4) > RANK.get(self.status, 4):
            self.status = status

    def acquire(self, note: str) -> str | None:
        """Take the destination's lock (once); returns the takeover note, if any."""
        if self.lock is not None:
            return None
        if self.lock_error:
            raise LockHeld(self.lock_error)
        make_destination(self.meta_dir.parent)
        lock = Lock(self.meta_dir / "lock")
        try:
            lock.acquire(note=note, announce=False)
        except LockHeld as exc:
            self.lock_error = str(exc)
            raise
        self.lock = lock
        clear_staging(self.meta_dir / "tmp")
        return lock.taken_over or None

    def open_catalog(self) -> tuple[Catalog, bool]:
        """The catalog, opened once: writable under the lock, else read-only; and
        whether it was opened just now."""
        if self.catalog is not None:
            return self.catalog, False
        self.catalog = open_catalog(self.meta_dir, writable=self.lock is not None)
        return self.catalog, True

    def release(self) -> None:
        """Close the catalog (the caller said what closing said) and release the lock."""
        try:
            if self.catalog is not None:
                self.catalog.close()
        finally:
            self.catalog = None
            self.release_lock()

    def release_lock(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None
