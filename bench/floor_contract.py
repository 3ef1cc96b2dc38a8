#!/usr/bin/env python3
"""The contract floor of a backup run: ``bench/floor_changed.py --contract`` times it.

    python bench/floor_contract.py SOURCE DEST [all | snapshot | versioned]

What SPEC and the mission ask of any snapback, in the cheapest form they allow, and
nothing more: the floor of ``floor_changed.py`` (one walk, a signature per folder, one
reading per changed file, a mirror copy, a catalog row, a commit per folder) plus
- the folders' work as doit tasks: one task per dirty folder and mode, through
  ``DoitMain`` and a ``TaskLoader2``; doit keeps no state of its own (SPEC), so its
  state backend keeps nothing (as snapback's);
- a commit a second (SPEC lets the syncs be batched, as snapback does), a ``syncfs``
  before it (what a commit names is on stable storage first);
- each changed text file stored as a unified diff from its previous version, which is
  read whole: this floor keeps every file's newest version whole (a new name each
  time, the one before removed after the commit), so it never rebuilds a version from
  a chain.  That costs the history a whole copy of every file; snapback keeps one every
  sixteenth change and rebuilds the others, so that the history costs what changed.
  The diff is snapback's ``textdiff.make_diff``, the cheapest unified diff in Python at
  hand (difflib's is slower).
No rules, no symlinks or folder records, no output, no checks of the destination, no
crash recovery, no failures handled.  A first run stores every file whole; with both
modes (``all``, the default) it reads each new file once, as snapback does: the mirror's
task writes the history's copy from the same reading, and the history's task records it.
``snapshot`` or ``versioned`` makes that mode's tasks alone (``bench/floor.py`` times
each beside the command it is the floor of).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import sqlite3
import stat
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from doit.cmd_base import TaskLoader2
from doit.doit_cmd import DoitMain
from doit.task import dict_to_task
from floor import COPY
from floor_walk import folders, mirror_changes

from pipeline.textdiff import make_diff

TABLES = """
create table if not exists folders (mode text, dir blob, sig blob, primary key (mode, dir));
create table if not exists files (dir blob, name blob, size int, mtime int, ctime int,
                                  ino int, sha text, primary key (dir, name));
create table if not exists versions (id integer primary key, dir blob, name blob,
                                     object blob, whole blob, size int, mtime int,
                                     ctime int, ino int, sha text);
create index if not exists versions_by_path on versions (dir, name, id);
"""
GROUP_SECONDS = 1.0      # a commit a second, as snapback makes


# one reading into a temporary file per copy: the plain floors' routine (bench/floor.py)
_SCOPE: dict[str, Any] = {"hashlib": hashlib, "os": os, "stat": stat}
exec(COPY, _SCOPE)
copy = _SCOPE["copy"]


class Floor:
    def __init__(self, src: bytes, dest: bytes, modes: str = "all"):
        self.src, self.dest = src, dest
        self.modes = {"all": "mh", "snapshot": "m", "versioned": "h"}[modes]
        self.teed: dict[tuple[bytes, bytes], tuple[tuple[int, int, int, int], str]] = {}
        os.makedirs(dest, exist_ok=True)
        self.mirror, self.history = os.path.join(dest, b"mirror"), os.path.join(dest, b"history")
        self.db = sqlite3.connect(os.path.join(dest, b"catalog.sqlite3"), isolation_level=None)
        self.db.execute("pragma journal_mode=wal")
        self.db.execute("pragma synchronous=full")
        self.db.executescript(TABLES)
        self.syncfs = ctypes.CDLL(None, use_errno=True).syncfs
        self.last = time.monotonic()
        self.superseded: list[bytes] = []

    def begin(self) -> None:
        if not self.db.in_transaction:
            self.db.execute("begin")

    def commit(self, final: bool = False) -> None:
        """A commit a second (SPEC: the syncs batched), a ``syncfs`` before it; the whole
        copies the new versions superseded are removed after it."""
        if not final and time.monotonic() - self.last < GROUP_SECONDS:
            return
        if self.db.in_transaction:
            fd = os.open(self.dest, os.O_RDONLY | os.O_DIRECTORY)
            self.syncfs(fd)
            os.close(fd)
            self.db.execute("commit")
        self.last = time.monotonic()
        for path in self.superseded:
            os.unlink(path)
        self.superseded.clear()

    def mirror_folder(self, rel: bytes, here: bytes, files: list[tuple[bytes, Any]],
                      names: set[bytes], sig: bytes) -> None:
        there, existing, changed = mirror_changes(self.db, self.mirror, rel, files)
        # a first backup of both modes: the history's copy from the same reading
        tee = "h" in self.modes and not self.db.execute(
            "select 1 from versions where dir=? limit 1", (rel,)).fetchone()
        self.begin()
        for name, st, key in changed:
            finals = [os.path.join(there, name)]
            if tee:
                home = os.path.join(self.history, rel, name)
                os.makedirs(home, exist_ok=True)
                finals.append(os.path.join(home, b"%s_v0" % name))
            digest = copy(os.path.join(here, name), [f + b".tmp" for f in finals], st)
            for final in finals:
                os.rename(final + b".tmp", final)
            if tee:
                self.teed[(rel, name)] = (key, digest)
            self.db.execute("insert or replace into files values (?,?,?,?,?,?,?)",
                            (rel, name, *key, digest))
        for name, old in existing.items():
            if name not in names and not stat.S_ISDIR(old.st_mode):
                os.unlink(os.path.join(there, name))
                self.db.execute("delete from files where dir=? and name=?", (rel, name))
        self.db.execute("insert or replace into folders values ('m',?,?)", (rel, sig))
        self.commit()

    def history_folder(self, rel: bytes, here: bytes, files: list[tuple[bytes, Any]],
                       sig: bytes) -> None:
        newest = {r[0]: r[1:] for r in self.db.execute(
            "select name, whole, sha, id, size, mtime, ctime, ino from versions where id in "
            "(select max(id) "
            "from versions where dir=? group by name)", (rel,))}
        self.begin()
        gone = []
        for name, st in files:
            key = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
            row = newest.get(name)
            if row is not None and row[3:] == key:
                continue                           # (the rows' stat: not read again)
            teed = self.teed.pop((rel, name), None)
            if row is None and teed is not None and teed[0] == key:   # (read by the mirror's)
                whole = b"%s_v0" % name
                self.db.execute("insert into versions (dir, name, object, whole, size, "
                                "mtime, ctime, ino, sha) values (?,?,?,?,?,?,?,?,?)",
                                (rel, name, whole, whole, *key, teed[1]))
                continue
            with open(os.path.join(here, name), "rb") as fh:
                data = fh.read()
            sha = hashlib.sha256(data).hexdigest()
            if row is not None and row[1] == sha:
                continue
            home = os.path.join(self.history, rel, name)
            n = 0 if row is None else row[2]
            whole = b"%s_v%d" % (name, n)
            obj, diff = whole, None
            if row is None:
                os.makedirs(home, exist_ok=True)
            else:
                with open(os.path.join(home, row[0]), "rb") as fh:
                    before = fh.read()
                if b"\0" not in before[:8192] and b"\0" not in data[:8192]:
                    diff = make_diff(before, data, name, name)
            if diff is not None:
                obj = b"%s_v%d.diff" % (name, n)
                self.write(os.path.join(home, obj), diff, None)
            self.write(os.path.join(home, whole), data, st)
            self.db.execute("insert into versions (dir, name, object, whole, size, mtime, "
                            "ctime, ino, sha) values (?,?,?,?,?,?,?,?,?)",
                            (rel, name, obj, whole, *key, sha))
            if row is not None:
                gone.append(os.path.join(home, row[0]))
        self.db.execute("insert or replace into folders values ('h',?,?)", (rel, sig))
        self.superseded.extend(gone)
        self.commit()

    @staticmethod
    def write(path: bytes, data: bytes, st: Any) -> None:
        with open(path + b".tmp", "wb") as fh:
            fh.write(data)
        if st is not None:
            os.chmod(path + b".tmp", stat.S_IMODE(st.st_mode))
            os.utime(path + b".tmp", ns=(st.st_atime_ns, st.st_mtime_ns))
        os.rename(path + b".tmp", path)


class NoState:
    """doit's state backend, keeping nothing: the floor's catalog decides what runs."""

    def __init__(self, name: str, codec: Any, *, module_name: str | None = None):
        self.name = name

    def get(self, task_id: str, dependency: str) -> Any:
        return None

    def set(self, task_id: str, dependency: str, value: Any) -> None:
        pass

    def in_(self, task_id: str) -> bool:
        return False

    def remove(self, task_id: str) -> None:
        pass

    def remove_all(self) -> None:
        pass

    def dump(self) -> None:
        pass


class Loader(TaskLoader2):  # type: ignore[misc]
    def __init__(self, floor: Floor):
        super().__init__()
        self.floor = floor

    def setup(self, opt_values: dict[str, Any]) -> None:
        pass

    def load_doit_config(self) -> dict[str, Any]:
        return {"dep_file": os.fsdecode(os.path.join(self.floor.dest, b"doit.json")),
                "backend": "nothing", "verbosity": 0}


    def load_tasks(self, cmd: Any, pos_args: list[str]) -> list[Any]:
        floor = self.floor
        stored = {(m, d): s for m, d, s in floor.db.execute("select mode, dir, sig from folders")}
        tasks = []
        for rel, here, entries, files, sig in folders(floor.src):
            label = os.fsdecode(rel) or "."
            if "m" in floor.modes and stored.get(("m", rel)) != sig:
                names = {name for name, _st in entries}
                tasks.append(dict_to_task({"name": "m:" + label, "verbosity": 0, "actions": [
                    (floor.mirror_folder, (rel, here, files, names, sig))]}))
            if "h" in floor.modes and stored.get(("h", rel)) != sig:
                tasks.append(dict_to_task({"name": "h:" + label, "verbosity": 0, "actions": [
                    (floor.history_folder, (rel, here, files, sig))]}))
        return tasks


def main() -> None:
    floor = Floor(os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2]),
                  sys.argv[3] if len(sys.argv) > 3 else "all")
    code = DoitMain(Loader(floor), config_filenames=(), extra_config={
        "BACKEND": {"nothing": "floor_contract:NoState"}}).run(["run"])
    floor.commit(final=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
