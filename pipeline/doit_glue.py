"""What snapback asks of doit's dependency machinery: a checker and a state backend.

doit skips a task when its ``uptodate`` values hold and every ``file_dep`` is
unchanged against the state doit saved.  Saved state of its own would be a
second record of what the backup holds, and it went wrong exactly where the
two disagreed: a folder moved away and back, a folder put back by a restore,
a file no longer ignored (doit's state said "up to date", the mirror was empty).

So doit keeps no state here.  The backend below (``CatalogState``, registered
as the doit backend ``snapback``) stores nothing: task creation hands it, for
each folder task, what the catalog records for each of the folder's files
(``expect``), and that record *is* the state doit compares each file's lstat
with (``pipeline.change``).  Whatever removes something from the catalog makes
the next run store it again; nothing can go stale, get lost or outlive a
folder.  A folder's own changes (entries added or removed, rules changed, its
mode) are judged at task creation against the catalog too
(``pipeline.tasks``).
"""

from __future__ import annotations

import os
from typing import Any

from doit.dependency import FileChangedChecker
from doit.globals import Globals

from . import change
from .catalog import Stored


class CatalogState:
    """doit backend: the records of this run's folder tasks; nothing on disk."""

    desc = "snapback: doit's state is what the catalog records (nothing of its own)"

    def __init__(self, name: str, codec: Any, *, module_name: str | None = None):
        self.name = name
        self.records: dict[str, dict[str, Stored]] = {}   # task -> file -> what is stored
        self.stats: dict[str, os.stat_result] = {}        # file -> lstat from the walk
        self.key = change.stored_key_function("hash")

    def expect(self, task: str, records: dict[str, Stored],
               stats: dict[str, os.stat_result], checker: str) -> None:
        """The records of one folder task's files (served as the checker compares them)."""
        self.records[task] = records
        self.stats.update(stats)
        self.key = change.stored_key_function(checker)

    # -- doit's backend interface: read from the records, never write ----------
    def get(self, task_id: str, dependency: str) -> Any:
        record = self.records.get(task_id, _EMPTY).get(dependency)
        return None if record is None else self.key(record)

    def set(self, task_id: str, dependency: str, value: Any) -> None:
        pass                          # the actions wrote the catalog; doit keeps nothing

    def in_(self, task_id: str) -> bool:
        return task_id in self.records

    def remove(self, task_id: str) -> None:
        pass

    def remove_all(self) -> None:
        pass

    def dump(self) -> None:
        pass


_EMPTY: dict = {}


def state() -> CatalogState | None:
    """This doit invocation's backend (doit creates it before any task is created)."""
    manager = Globals.dep_manager
    backend = getattr(manager, "backend", None)
    return backend if isinstance(backend, CatalogState) else None


class _Checker(FileChangedChecker):
    """A file_dep is unchanged when its lstat matches what the catalog recorded
    (``pipeline.change``: the backend serves each record as its key)."""

    CheckerError = OSError
    rule = "hash"

    def __init__(self) -> None:
        self.key = change.key_function(self.rule)
        self.stats: dict[str, os.stat_result] | None = None

    def exists(self, file_path: str) -> bool:
        return os.path.lexists(file_path)

    def info(self, file_path: str) -> os.stat_result:
        if self.stats is None:
            backend = state()
            self.stats = backend.stats if backend is not None else {}
        st = self.stats.get(file_path)
        return st if st is not None else os.lstat(file_path)

    def check_modified(self, file_path: str, file_stat: os.stat_result, state: Any) -> bool:
        return self.key(file_stat) != state

    def get_state(self, dep: str, current_state: Any) -> None:
        return None                   # nothing to save: the catalog is the state


class HashChecker(_Checker):
    rule = "hash"


class MtimeChecker(_Checker):
    rule = "mtime"


def doit_settings(checker: str, meta_dir: os.PathLike) -> dict[str, Any]:
    """The DOIT_CONFIG entries of the dependency machinery."""
    return {
        "backend": "snapback",                     # CatalogState (entry point)
        "dep_file": os.fspath(meta_dir),           # unused: the backend keeps no file
        "check_file_uptodate": MtimeChecker if checker == "mtime" else HashChecker,
    }
