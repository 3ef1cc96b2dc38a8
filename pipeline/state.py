"""doit's state: the checker that decides "changed" and the backend that keeps it.

The checker compares ``(mtime_ns, size)`` from ``lstat`` (one cached stat from
the walk, no second one) and never hashes: content comparison for
``checker: hash`` happens in the action, against the stored copy, where a
touched-but-unchanged file is then recorded with its new mtime, so it is not
re-hashed on every later run (doit issue #431).  After success it records for
each file exactly the ``(mtime_ns, size)`` the action verified it stored
(``Run.verified``), never a later stat: a file edited while its task ran is
seen as changed next time (doit issue #119).

The backend is sqlite3, opened lazily: ``doit list``, a no-change run and a
dry run never create or write it; only a run that holds the lock writes, and
it writes only the tasks that ran.  A state file that cannot be read is moved
aside; the next run re-checks every file against the backup itself, which
costs time but stores nothing twice.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from typing import Any

from doit.dependency import FileChangedChecker

from . import run
from .store import ensure_private_dir


class StatChecker(FileChangedChecker):
    """(mtime_ns, size) of the entry itself (symlinks are not followed)."""

    CheckerError = OSError

    def exists(self, file_path: str) -> bool:
        return os.path.lexists(file_path)

    def info(self, file_path: str) -> os.stat_result:
        st = run.current().stats.get(file_path)
        return st if st is not None else os.lstat(file_path)

    def check_modified(self, file_path: str, file_stat: os.stat_result, state: Any) -> bool:
        return [file_stat.st_mtime_ns, file_stat.st_size] != list(state)

    def get_state(self, dep: str, current_state: Any) -> list[int] | None:
        stored = run.current().verified.get(dep)
        if stored is None or (current_state is not None and list(current_state) == stored):
            return None   # keep what was recorded before: this run did not store it
        return stored


class StateDB:
    """doit backend: sqlite3 under ``.snapback/``, lazy, written under the lock only."""

    desc = "snapback state (sqlite3, lazy)"

    def __init__(self, name: str, codec: Any, *, module_name: str | None = None):
        self.name = name
        self.codec = codec
        self._conn: sqlite3.Connection | None = None
        self._opened = False
        self._cache: dict[str, dict] = {}
        self._dirty: set[str] = set()
        self._removed: set[str] = set()

    # -- connection ------------------------------------------------------
    def _db(self) -> sqlite3.Connection | None:
        if self._opened:
            return self._conn
        self._opened = True
        if not os.path.exists(self.name):
            return None
        try:
            conn = sqlite3.connect(self.name, isolation_level="DEFERRED")
            conn.execute("create table if not exists doit "
                         "(task_id text not null primary key, task_data text)")
            conn.execute("select count(*) from doit").fetchone()
        except sqlite3.DatabaseError as exc:
            self._set_aside(exc)
            return None
        self._conn = conn
        return conn

    def _set_aside(self, exc: Exception) -> None:
        aside = self.name + ".corrupt"
        print(f"snapback: the run state {self.name} is unreadable ({exc}); moved it to "
              f"{aside}: this run re-checks every file against the backup itself",
              file=sys.stderr)
        if run.current().writes:
            try:
                os.replace(self.name, aside)
            except OSError:
                pass

    def _load(self, task_id: str) -> dict:
        data = self._cache.get(task_id)
        if data is None:
            data = {}
            conn = None if task_id in self._removed else self._db()
            if conn is not None:
                try:
                    row = conn.execute("select task_data from doit where task_id=?",
                                       (task_id,)).fetchone()
                except sqlite3.DatabaseError as exc:
                    self._set_aside(exc)
                    self._conn, row = None, None
                if row:
                    data = self.codec.decode(row[0])
            self._cache[task_id] = data
        return data

    # -- doit's backend interface ------------------------------------------
    def get(self, task_id: str, dependency: str) -> Any:
        return self._load(task_id).get(dependency)

    def set(self, task_id: str, dependency: str, value: Any) -> None:
        self._load(task_id)[dependency] = value
        self._dirty.add(task_id)

    def in_(self, task_id: str) -> bool:
        return bool(self._load(task_id))

    def remove(self, task_id: str) -> None:
        self._cache[task_id] = {}
        self._dirty.discard(task_id)
        self._removed.add(task_id)

    def remove_all(self) -> None:
        """``doit forget`` with no task: every task re-checks its files next run."""
        conn = self._db()
        if conn is not None:
            conn.execute("delete from doit")
            conn.commit()
        self._cache.clear()
        self._dirty.clear()

    def dump(self) -> None:
        current = run.current()
        if current.lock is not None and (self._dirty or self._removed):
            self._write()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._opened = False
        self._cache.clear()
        self._dirty.clear()
        self._removed.clear()

    def _write(self) -> None:
        ensure_private_dir(os.path.dirname(self.name))  # type: ignore[arg-type]
        conn = self._conn or sqlite3.connect(self.name, isolation_level="DEFERRED")
        os.chmod(self.name, 0o600)
        self._conn = conn
        conn.execute("create table if not exists doit "
                     "(task_id text not null primary key, task_data text)")
        conn.executemany("delete from doit where task_id=?",
                         [(t,) for t in self._removed - self._dirty])
        conn.executemany("insert or replace into doit values (?,?)",
                         [(t, self.codec.encode(self._cache[t])) for t in self._dirty])
        conn.commit()
