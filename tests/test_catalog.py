"""pipeline/catalog.py: opening (and upgrading format 1), integers past SQLite's range,
the records a run compares against, the folders, the mirror, and open_catalog's
refusals (a missing catalog beside a backup, a link where the catalog should be)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.catalog import FORMAT, INT64, Catalog, Stored, dec, enc, open_catalog
from pipeline.errors import SnapbackError

FAR = 10_400_000_000 * 10**9            # an mtime in 2299, past a signed 64-bit integer


def add(cat: Catalog, folder: bytes, name: bytes, kind: str = "baseline", **extra) -> None:
    fields = dict(source="src", dir=folder, name=name, entry="file", kind=kind,
                  time=f"2026-01-01_00-00-{len(cat.all_rows()):02d}", run_id="r1",
                  store=(folder + b"/" + name if folder else name), object=b"obj",
                  size=1, sha256="s", mode=0o100644, mtime_ns=1, recorded=1.0)
    fields.update(extra)
    cat.add(**fields)


class FakeStat:
    def __init__(self, mtime_ns: int = 5, mode: int = 0o100644, size: int = 3,
                 ctime_ns: int = 6, ino: int = 7):
        self.st_mtime_ns, self.st_mode, self.st_size = mtime_ns, mode, size
        self.st_ctime_ns, self.st_ino = ctime_ns, ino


@pytest.fixture
def cat(tmp_path: Path):
    catalog = Catalog(tmp_path / "catalog.sqlite3", writable=True)
    yield catalog
    catalog.close()


# ---- enc / dec ----

@pytest.mark.parametrize("n, stored", [
    (None, None), (0, 0), (INT64 - 1, INT64 - 1), (-INT64, -INT64),
    (INT64, f"n{INT64}"), (-INT64 - 1, f"n{-INT64 - 1}"), (FAR, f"n{FAR}"),
])
def test_enc_keeps_integers_sqlite_cannot_hold_as_text(n, stored) -> None:
    assert enc(n) == stored
    assert dec(enc(n)) == n


@given(st.integers(min_value=-(1 << 70), max_value=1 << 70))
def test_enc_dec_round_trip(n: int) -> None:
    assert dec(enc(n)) == n


def test_integers_past_2_to_the_63_come_back_exact_from_every_reader(cat: Catalog) -> None:
    huge_ino = (1 << 64) - 1
    add(cat, b"d", b"f", mtime_ns=FAR, ctime_ns=FAR + 1, ino=huge_ino)
    (row,) = cat.all_rows()
    assert (row.mtime_ns, row.ctime_ns, row.ino) == (FAR, FAR + 1, huge_ino)
    assert cat.records("versioned", "src")[b"d"][b"f"] == Stored("file", 1, FAR, 0o100644,
                                                                FAR + 1, huge_ino)
    cat.set_mirror("src", b"d", b"m", FakeStat(mtime_ns=FAR, ino=huge_ino), "sha", "r1")
    assert cat.mirror_in("src", b"d")[b"m"].mtime_ns == FAR
    assert cat.records("snapshot", "src")[b"d"][b"m"] == Stored("file", 3, FAR, 0o100644, 6,
                                                               huge_ino)
    cat.set_folder("snapshot", "src", b"d", FakeStat(mtime_ns=FAR, mode=0o40755))
    assert cat.folders_seen("snapshot", "src")[b"d"][:2] == (0o40755, FAR)
    # a touch of the record keeps what a restore gives (the mtime), takes ctime and inode
    cat.touch(row.id, ("src", b"d"), FakeStat(mtime_ns=FAR, ctime_ns=FAR + 2, ino=huge_ino))
    assert cat.latest("src", b"d", b"f").ctime_ns == FAR + 2


# ---- opening, formats ----

def make_format_1(path: Path) -> None:
    """A catalog as snapback wrote it in format 1: no ctime/inode, no mirror kind."""
    db = sqlite3.connect(path)
    db.executescript("""
        create table versions (id integer primary key autoincrement, source text not null,
            dir blob not null, name blob not null, entry text not null, kind text not null,
            time text not null, run_id text not null, note text not null default '',
            store blob, object blob, size integer, sha256 text, mode integer,
            mtime_ns integer, target blob, recorded real not null, object_sha256 text);
        create table mirror (source text not null, dir blob not null, name blob not null,
            size integer, mtime_ns integer, sha256 text, mode integer, run_id text,
            primary key (source, dir, name));
        create table aliases (source text not null, entry text not null, rel blob not null,
            store blob not null, primary key (source, entry, rel));
        pragma user_version=1;
    """)
    db.execute("insert into versions (source, dir, name, entry, kind, time, run_id, store, "
               "object, size, sha256, mode, mtime_ns, recorded) values "
               "('src', ?, ?, 'file', 'baseline', '2025-01-01_00-00-00', 'r0', ?, ?, 2, 'sha', "
               "33188, 11, 1.0)", (b"", b"a.txt", b"a.txt", b"a-baseline-2025-01-01.txt"))
    db.execute("insert into mirror values ('src', ?, ?, 2, 11, 'sha', 33188, 'r0')",
               (b"", b"a.txt"))
    db.commit()
    db.close()


def test_a_writer_upgrades_format_1_in_place_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    make_format_1(path)
    cat = Catalog(path, writable=True)
    try:
        (row,) = cat.all_rows()
        assert (row.name, row.kind, row.mtime_ns, row.ctime_ns, row.ino) == \
            (b"a.txt", "baseline", 11, None, None)
        assert cat.mirror_in("src", b"") == {b"a.txt": Stored("file", 2, 11, 33188, None, None)}
        cat.set_folder("versioned", "src", b"", FakeStat())      # the new table exists
    finally:
        cat.close()
    with sqlite3.connect(path) as db:
        assert db.execute("pragma user_version").fetchone()[0] == FORMAT == 4
    reader = Catalog(path, writable=False)                         # and now reads as format 3
    try:
        assert [r.name for r in reader.all_rows()] == [b"a.txt"]
    finally:
        reader.close()


def test_a_reader_refuses_format_1_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    make_format_1(path)
    before = path.read_bytes()
    with pytest.raises(SnapbackError, match="has format 1; this snapback reads format 4"):
        Catalog(path, writable=False)
    assert path.read_bytes() == before


@pytest.mark.parametrize("writable", [True, False])
def test_another_format_or_not_a_database_is_one_error(tmp_path: Path, writable: bool) -> None:
    path = tmp_path / "catalog.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("create table t (x)")
        db.execute("pragma user_version=99")
    with pytest.raises(SnapbackError, match="has format 99"):
        Catalog(path, writable=writable)
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(SnapbackError, match=r"unreadable|cannot be opened"):
        Catalog(path, writable=writable)


def test_an_empty_file_is_a_catalog_with_nothing_in_it(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    path.write_bytes(b"")
    reader = Catalog(path, writable=False)
    assert reader.conn is None
    assert reader.all_rows() == [] and reader.records("versioned", "src") == {}
    assert reader.latest("src", b"", b"a") is None and reader.objects("src", b"", b"a") == set()
    reader.close()
    writer = Catalog(path, writable=True)                          # a writer makes it
    add(writer, b"", b"a")
    writer.close()
    assert [r.name for r in Catalog(path, writable=False).all_rows()] == [b"a"]


def test_close_folds_the_wal_back_and_leaves_the_file_private(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    cat = Catalog(path, writable=True)
    cat.begin()
    add(cat, b"", b"a")
    cat.close()
    assert not (tmp_path / "catalog.sqlite3-wal").exists()
    assert os.stat(path).st_mode & 0o777 == 0o600
    with sqlite3.connect(path) as db:
        assert db.execute("pragma journal_mode").fetchone()[0] == "delete"


# ---- versions: latest, records, below, owners ----

def test_records_are_the_newest_live_row_of_each_path(cat: Catalog) -> None:
    add(cat, b"", b"a", mtime_ns=1)
    add(cat, b"", b"a", kind="diff", mtime_ns=2)
    add(cat, b"", b"gone", mtime_ns=3)
    add(cat, b"", b"gone", kind="deleted", mtime_ns=None, mode=None, size=None)
    add(cat, b"d", b"b", entry="link", kind="link", mtime_ns=4)
    records = cat.records("versioned", "src")
    assert set(records) == {b"", b"d"}
    assert records[b""] == {b"a": Stored("file", 1, 2, 0o100644, None, None)}
    assert records[b"d"][b"b"].kind == "link"
    assert cat.records_in("versioned", "src", b"") == records[b""]
    assert cat.records("versioned", "other") == {}
    assert [r.kind for r in cat.history("src", b"", b"gone")] == ["baseline", "deleted"]
    assert cat.latest("src", b"", b"gone").kind == "deleted"
    assert cat.last_content("src", b"", b"gone").kind == "baseline"
    assert set(cat.latest_in("src", b"")) == {b"a", b"gone"}


def test_below_a_folder_means_below_it_not_beside_it(cat: Catalog) -> None:
    for folder in (b"a", b"a/b", b"a/b/c", b"ab", b"a-b", b"a.b", b"a0", b""):
        add(cat, folder, b"f")
    add(cat, b"", b"a", entry="dir", kind="dir")
    below = {r.dir for r in cat.live_below("src", b"a")}
    assert below == {b"a", b"a/b", b"a/b/c"}
    assert {r.path for r in cat.rows_under("src", b"a")} == {
        b"a", b"a/f", b"a/b/f", b"a/b/c/f"}
    assert len(cat.live_below("src", b"")) == 9
    add(cat, b"a/b", b"f", kind="deleted")
    assert {r.dir for r in cat.live_below("src", b"a")} == {b"a", b"a/b/c"}


def test_folders_a_mode_brought_in_line(cat: Catalog) -> None:
    for folder in (b"", b"a", b"a/b", b"ab", b"a-b", b"a0"):
        cat.set_folder("snapshot", "src", folder, FakeStat(mtime_ns=len(folder)))
    cat.set_folder("versioned", "src", b"a", FakeStat())
    cat.unset_folder("snapshot", "src", b"ab")
    cat.forget_folders("snapshot", "src", b"a")
    assert set(cat.folders_seen("snapshot", "src")) == {b"", b"a-b", b"a0"}
    assert set(cat.folders_seen("versioned", "src")) == {b"a"}   # the other mode's: kept


def test_the_mirror_records(cat: Catalog) -> None:
    cat.set_mirror("src", b"", b"top", FakeStat(), "sha-top", "r1")
    cat.set_mirror("src", b"d", b"f", FakeStat(size=9), "sha-f", "r1")
    cat.set_mirror("src", b"d/e", b"g", FakeStat(), "sha-g", "r1")
    cat.set_mirror("src", b"d", b"l", FakeStat(mode=0o120777), None, "r1", kind="link")
    cat.set_mirror("src", b"", b"d", FakeStat(mode=0o40755), None, "r1", kind="dir")
    cat.set_mirror("src", b"de", b"h", FakeStat(), "sha-h", "r1")
    cat.set_folder("snapshot", "src", b"d/e", FakeStat())
    assert cat.mirror_shas("src", b"d") == {b"f": "sha-f"}
    assert cat.mirror_in("src", b"d")[b"f"] == Stored("file", 9, 5, 0o100644, 6, 7)
    assert len(cat.mirror_rows()) == 4                              # files only
    assert len(cat.mirror_entries()) == 6
    cat.touch_mirror("src", b"d", b"f", FakeStat(mtime_ns=50, mode=0o100600))
    assert cat.mirror_in("src", b"d")[b"f"][2:4] == (50, 0o100600)
    cat.drop_mirror("src", b"", b"d")                               # a folder: all below
    assert {(d, n) for _, d, n, *_ in cat.mirror_entries()} == {(b"", b"top"), (b"de", b"h")}
    assert cat.folders_seen("snapshot", "src") == {}


def test_who_owns_a_history_folder(cat: Catalog) -> None:
    add(cat, b"", b"x", store=b"x", object=b"x-baseline-2026-01-01")   # the file x
    add(cat, b"x", b"y", store=b"x~2/y", object=b"y-baseline-2026-01-01")
    add(cat, b"c", b"y", store=b"c/y", object=b"y-baseline-2026-01-01")
    cat.set_alias("src", "dir", b"x", b"x~2")                # the folder x came second
    assert cat.store_owner("src", b"x") == "store"
    assert cat.store_owner("src", b"x~2") == "store"          # the folder x's own (alias)
    assert cat.store_owner("src", b"c") == "container"        # only holds c/y's
    assert cat.store_owner("src", b"x~2/y") == "store"
    assert cat.store_owner("src", b"z") is None and cat.store_owner("src", b"c/") is None
    assert cat.alias("src", "dir", b"x") == b"x~2" and cat.alias("src", "file", b"x") is None
    assert cat.referenced("src", b"x") == {b"x-baseline-2026-01-01"}
    assert cat.objects("src", b"", b"x") == {b"x-baseline-2026-01-01"}
    assert cat.times("src", b"x", b"y") == {cat.latest("src", b"x", b"y").time}


def test_rollback_undoes_a_folder_transaction(cat: Catalog) -> None:
    add(cat, b"", b"kept")
    cat.begin()
    add(cat, b"", b"undone")
    cat.rollback()
    assert [r.name for r in cat.all_rows()] == [b"kept"]


def test_held_rows_are_written_before_the_connection_is_used(cat: Catalog) -> None:
    """``add``, ``set_mirror``, ``set_folder`` and ``unset_folder`` hold their writes:
    any later use of the connection (a query, another write, a commit) makes them first,
    in the order they came, and a folder undone drops them."""
    cat.begin_folder()
    add(cat, b"d", b"a")
    cat.set_mirror("src", b"d", b"a", FakeStat(), "s", "r1")
    cat.set_folder("snapshot", "src", b"d", FakeStat(mode=0o40755))  # type: ignore[arg-type]
    assert len(cat._held) == 3                      # nothing made yet...
    assert [r.name for r in cat.all_rows()] == [b"a"]       # ...until it is read
    assert not cat._held
    assert cat.mirror_in("src", b"d")[b"a"].size == 3
    assert b"d" in cat.folders_seen("snapshot", "src")
    add(cat, b"d", b"b")
    cat.unset_folder("snapshot", "src", b"d")
    assert cat.abort_folder() and not cat._held     # undone: the held writes with it
    assert cat.all_rows() == [] and cat.mirror_in("src", b"d") == {}
    add(cat, b"d", b"c")
    cat.commit()
    assert [r.name for r in cat.all_rows()] == [b"c"]


def test_held_writes_that_failed_are_never_committed(cat: Catalog) -> None:
    """A held write that fails (a full disk; here a row SQLite refuses) raises where the
    connection is next used; if that caller caught it, the commit refuses the
    transaction that lacks the row, and nothing of it is kept."""
    add(cat, b"", b"kept")
    cat.commit()
    cat.begin_folder()
    add(cat, b"d", b"first")
    add(cat, b"d", b"refused", recorded=None)       # (not null: refused when made)
    with pytest.raises(sqlite3.IntegrityError):
        assert cat.conn is not None                 # made here: raised here
    cat.end_folder()                                # (a caller that caught it goes on)
    with pytest.raises(sqlite3.OperationalError, match="writes were not all made"):
        cat.commit()
    assert [r.name for r in cat.all_rows()] == [b"kept"]
    add(cat, b"d", b"later")                        # the next transaction commits
    cat.commit()
    assert [r.name for r in cat.all_rows()] == [b"kept", b"later"]


def test_ctrl_c_while_held_writes_are_made_leaves_a_prefix_the_commit_keeps(
        cat: Catalog) -> None:
    """Ctrl-C is raised between bytecodes: after the first run of held writes was made,
    the rest are not.  What was made is a prefix of them, in order (the state a Ctrl-C
    between two statements left before they were held); the run's commit keeps it, and
    the run ends as interrupted (status 130), not as a failed commit."""
    class Interrupted:                      # the connection, interrupted after one run
        def __init__(self, real: sqlite3.Connection) -> None:
            self.real = real

        def executemany(self, sql: str, rows: list[tuple[object, ...]]) -> None:
            self.real.executemany(sql, rows)
            raise KeyboardInterrupt
    cat.begin_folder()
    add(cat, b"d", b"a")
    add(cat, b"d", b"b")
    cat.set_mirror("src", b"d", b"a", FakeStat(), "s", "r1")
    real, cat._conn = cat._conn, Interrupted(cat._conn)  # type: ignore[assignment,arg-type]
    with pytest.raises(KeyboardInterrupt):
        assert cat.conn is not None
    cat._conn = real
    cat.commit()
    assert [r.name for r in cat.all_rows()] == [b"a", b"b"]
    assert cat.mirror_in("src", b"d") == {}


# ---- open_catalog ----

def holding_a_backup(dest: Path) -> Path:
    (dest / "versioned_backup" / "src" / "a.txt").mkdir(parents=True)
    (dest / "versioned_backup" / "src" / "a.txt" / "a.txt").write_text("a")
    return dest / ".snapback"


@pytest.mark.parametrize("writable", [True, False])
def test_a_missing_catalog_beside_a_backup_is_refused(tmp_path: Path, writable: bool) -> None:
    meta = holding_a_backup(tmp_path)
    with pytest.raises(SnapbackError, match=r"is missing, but .* holds a backup: nothing was written"):
        open_catalog(meta, writable)
    assert not meta.exists()                                        # nothing was created
    meta.mkdir()
    (meta / "catalog.sqlite3").write_bytes(b"")
    with pytest.raises(SnapbackError, match="is empty, but"):
        open_catalog(meta, writable)
    assert (meta / "catalog.sqlite3").read_bytes() == b""


def test_a_new_destination_gets_a_new_catalog(tmp_path: Path) -> None:
    (tmp_path / "system_snapshot" / "src").mkdir(parents=True)     # an empty mirror: no backup
    cat = open_catalog(tmp_path / ".snapback", writable=True)
    cat.close()
    assert (tmp_path / ".snapback" / "catalog.sqlite3").is_file()
    assert os.stat(tmp_path / ".snapback").st_mode & 0o777 == 0o700
    reader = open_catalog(tmp_path / "elsewhere" / ".snapback", writable=False)
    assert reader.all_rows() == []
    assert not (tmp_path / "elsewhere").exists()                    # a reader creates nothing


@pytest.mark.parametrize("writable", [True, False])
def test_a_link_as_catalog_or_as_its_folder_is_never_followed(tmp_path: Path,
                                                              writable: bool) -> None:
    victim = tmp_path / "victim.sqlite3"
    real = Catalog(victim, writable=True)
    add(real, b"", b"a")
    real.close()
    before = victim.read_bytes()
    meta = tmp_path / "dest" / ".snapback"
    meta.mkdir(parents=True)
    os.symlink(victim, meta / "catalog.sqlite3")
    with pytest.raises(SnapbackError, match=r"is not a file .*not followed"):
        open_catalog(meta, writable)
    os.unlink(meta / "catalog.sqlite3")
    meta.rmdir()
    os.symlink(tmp_path, meta)
    with pytest.raises(SnapbackError, match=r"is not a folder .*not followed"):
        open_catalog(meta, writable)
    assert victim.read_bytes() == before
    assert not (tmp_path / "victim.sqlite3-wal").exists()
    assert sorted(os.listdir(tmp_path)) == ["dest", "victim.sqlite3"]
