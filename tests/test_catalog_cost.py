"""What a run reads of the catalog grows with what changed, not with the history: a
user who backs up every five minutes has 100,000 runs after a year, and a run that
read the whole history once per earlier run would take hours.  The work is counted in
SQLite's own steps (a progress handler on the run's connections), not timed."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable

import pytest
from support import Backup, aged, make_tree

from pipeline import catalog as catalog_module

STEP = 100              # SQLite virtual machine instructions per count (in one statement)


def _grow(b: Backup, runs: int, rows_per_run: int) -> None:
    """Add ``runs`` earlier runs of ``rows_per_run`` versions each (of other paths)."""
    db = sqlite3.connect(b.meta / "catalog.sqlite3")
    with db:
        template = db.execute("select * from versions where entry='file' limit 1").fetchone()
        names = [d[1] for d in db.execute("pragma table_info(versions)")]
        row = dict(zip(names, template, strict=True))
        for n in range(runs):
            run_id = f"2020-01-01_00-00-00-{n:05d}"
            db.execute("insert into runs (run_id, started, logged) values (?, ?, ?)",
                       (run_id, 1e9 + n, 1e9 + n))
            db.executemany(
                f"insert into versions ({', '.join(names[1:])}) values "
                f"({', '.join('?' for _ in names[1:])})",
                [tuple({**row, "run_id": run_id, "dir": b"old", "name": f"{n}-{i}".encode(),
                        "store": f"old/{n}-{i}".encode(), "sha256": f"{n:032x}{i:032x}"}[k]
                       for k in names[1:])
                 for i in range(rows_per_run)])
    db.close()


def _run_watched(b: Backup, monkeypatch: pytest.MonkeyPatch, watch: Callable[
        [sqlite3.Connection], None], *args: str) -> str:
    """A real run (in this process) whose every catalog connection ``watch`` is given;
    its output."""
    opened = catalog_module.Catalog._open

    def watched(self: catalog_module.Catalog, *a: object, **k: object) -> None:
        opened(self, *a, **k)
        if self.conn is not None:
            watch(self.conn)
    monkeypatch.setattr(catalog_module.Catalog, "_open", watched)
    try:
        code, out = b.run(*args)
    finally:
        monkeypatch.setattr(catalog_module.Catalog, "_open", opened)
    assert code == 0, out
    return out


def _steps_of_a_run(b: Backup, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    count = [0]

    def counting(conn: sqlite3.Connection) -> None:
        conn.set_progress_handler(lambda: count.__setitem__(0, count[0] + 1), STEP)
    _run_watched(b, monkeypatch, counting, *args)
    return count[0]


def test_a_run_reads_what_changed_not_every_earlier_run(backup: Backup,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    make_tree(backup.src, {"a.txt": "a\n", "d": {"b.txt": "b\n"}})
    aged(backup.src)
    code, out = backup.run("all")
    assert code == 0, out
    (backup.src / "a.txt").write_text("a2\n")
    small = _steps_of_a_run(backup, monkeypatch, "all")
    _grow(backup, runs=300, rows_per_run=100)             # 300 runs, 30,000 versions
    (backup.src / "a.txt").write_text("a3\n")
    big = _steps_of_a_run(backup, monkeypatch, "all")
    # reading every run's newest row by a subquery per run read the 30,000 rows 300
    # times over (about 9 million row visits); one pass reads them once
    assert big <= small + 200, (small, big)
    code, out = backup.run("history", str(backup.src / "a.txt"))
    assert code == 0, out



@pytest.mark.parametrize("listed", [True, False], ids=["listing", "no listing"])
def test_a_changed_folder_s_records_are_read_once(backup: Backup, listed: bool,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # task creation reads a changed folder's records to decide whether it has work;
    # its task takes them, instead of reading them again; with the folder's listing
    # (change.listing), neither reads them whole
    make_tree(backup.src, {f"d{i}": {"a.txt": "a\n", "b.txt": "b\n"} for i in range(3)})
    aged(backup.src)
    code, out = backup.run("all")
    assert code == 0, out
    for i in range(3):
        (backup.src / f"d{i}" / "a.txt").write_text(f"changed {i}\n")
    (backup.src / "d0" / "b.txt").unlink()           # a deletion and a touch in the
    os.utime(backup.src / "d1" / "b.txt", (1e9, 1e9))    # folders before d2 drop only theirs
    if not listed:
        with sqlite3.connect(backup.meta / "catalog.sqlite3") as db:
            db.execute("delete from listings")
    statements: list[str] = []
    out = _run_watched(backup, monkeypatch,
                       lambda conn: conn.set_trace_callback(statements.append), "all")
    latest = [s for s in statements if "where id in (select max(id) from versions where "
              "source='src' and dir=x'6432'" in s]                          # d2
    mirror = [s for s in statements if "from mirror where source='src' and dir=x'6432'" in s
              and s.startswith("select name, kind")]
    assert (len(latest), len(mirror)) == ((0, 0) if listed else (1, 1)), statements
    assert "snapshot: 5 files, 0 new, 3 updated, 1 deleted" in out, out
    assert "versioned: 5 files, 0 new, 3 updated, 1 deleted" in out, out
    assert backup.run("verify", "--deep")[0] == 0


def _grow_below(b: Backup, folders: int, per_folder: int) -> None:
    """Add records of ``folders`` other folders of ``per_folder`` entries each to the
    mirror, the history and the folders in line (paths the next run never visits)."""
    db = sqlite3.connect(b.meta / "catalog.sqlite3")
    with db:
        names = [d[1] for d in db.execute("pragma table_info(versions)")]
        row = dict(zip(names, db.execute(
            "select * from versions where entry='file' limit 1").fetchone(), strict=True))
        mirror = db.execute("select * from mirror where kind='file' limit 1").fetchone()
        for n in range(folders):
            folder = f"old/{n:05d}".encode()
            db.executemany(
                f"insert into versions ({', '.join(names[1:])}) values "
                f"({', '.join('?' for _ in names[1:])})",
                [tuple({**row, "dir": folder, "name": f"f{i}".encode(),
                        "store": folder + f"/f{i}".encode()}[k] for k in names[1:])
                 for i in range(per_folder)])
            db.executemany("insert into mirror values (" + ", ".join("?" * len(mirror)) + ")",
                           [(mirror[0], folder, f"f{i}".encode(), *mirror[3:])
                            for i in range(per_folder)])
            for mode in ("snapshot", "versioned"):
                db.execute("insert into folders (mode, source, dir, st_mode, mtime_ns) "
                           "values (?, ?, ?, 16877, 0)", (mode, mirror[0], folder))
    db.close()


def test_a_deletion_reads_what_left_not_the_whole_source(
        backup: Backup, monkeypatch: pytest.MonkeyPatch) -> None:
    """Removing a file and a folder from the backup's records, and a restore or history
    of one path, read those paths' rows: a query that ORs the path and the range below it
    makes SQLite scan every row of the source (a run deleting 500 files of a 200,000-file
    home scanned the mirror 500 times)."""
    def life(b: Backup, n: int) -> int:
        make_tree(b.src, {"kept.txt": "k\n", f"a{n}.txt": "a\n",
                          f"d{n}": {"b.txt": "b\n", "e": {"c.txt": "c\n"}}})
        aged(b.src)
        code, out = b.run("all")
        assert code == 0, out
        (b.src / f"a{n}.txt").unlink()
        for path in sorted((b.src / f"d{n}").rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        (b.src / f"d{n}").rmdir()
        steps = _steps_of_a_run(b, monkeypatch, "all")
        target = f"src/d{n}/e/c.txt"
        steps += _steps_of_a_run(b, monkeypatch, "history", target)
        return steps + _steps_of_a_run(b, monkeypatch, "restore", target, "--to",
                                       str(b.base / f"restored{n}"))

    small = life(backup, 1)
    _grow_below(backup, folders=300, per_folder=100)       # 30,000 records of each kind
    big = life(backup, 2)
    assert big <= small + 200, (small, big)
    assert (backup.base / "restored2" / "c.txt").read_bytes() == b"c\n"
