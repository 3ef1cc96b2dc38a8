"""The catalog: one row per stored version, the single truth of the history.

SQLite at ``.snapback/catalog.sqlite3``, WAL with ``synchronous=full``: a
commit is durable, and ``Catalog.commit`` puts what it names on stable storage
first (``store.settle``).  A row says, for one path of one source at one version time: what it
was (file, link or folder), what happened (baseline, diff, delta, full, meta,
link, dir, deleted), where its object is stored, and the size, sha256, mode and mtime of
the source file *as it was* at that version.  History, restore and verify read
it; nothing needs a scan of the backup to answer a question about one file.

Paths are stored as bytes (BLOBs): file names need not be UTF-8.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

from . import faults, layout, store
from .errors import SnapbackError
from .layout import AREAS, CATALOG
from .lstat import AnyStat

# Each version row deleted leaves its trace (the table ``pruned``, in SCHEMA).
TRACE_TRIGGER = """create trigger if not exists versions_traced after delete on versions
begin insert or ignore into pruned (id, source, dir, name, live, run_id, entry)
    values (old.id, old.source, old.dir, old.name, old.kind != 'deleted', old.run_id,
            old.entry); end;"""
SCHEMA = """
create table if not exists versions (
    id integer primary key autoincrement,
    source text not null,
    dir blob not null,            -- folder of the path, relative to the source root
    name blob not null,
    entry text not null,          -- file | link | dir
    kind text not null,           -- baseline | diff | full | link | dir | deleted
    time text not null,           -- version stamp, unique per path: YYYY-MM-DD_HH-MM-SS[_n]
    run_id text not null,
    note text not null default '',
    store blob,                   -- history folder, relative to versioned_backup/<source>
    object blob,                  -- the stored object, relative to the history folder
    size integer,
    sha256 text,
    mode integer,
    mtime_ns integer,
    target blob,                  -- a symlink's target
    recorded real not null,       -- unix time of the run
    object_sha256 text,           -- sha256 of the stored object itself (a diff's own bytes)
    ctime_ns integer,             -- ctime and inode of the source when stored: with size,
    ino integer,                  -- mtime and mode, what "already in the backup" compares
    copy blob,                    -- a whole copy of this version (the newest content row
                                  -- only; for baseline/full it is the object itself)
    racy integer                  -- read within the timestamp granularity of its mtime:
                                  -- compared by content on the next run
);
create index if not exists versions_by_path on versions (source, dir, name, id);
create index if not exists versions_by_store on versions (source, store);
create index if not exists versions_by_sha on versions (sha256);
create table if not exists mirror (
    source text not null, dir blob not null, name blob not null,
    size integer, mtime_ns integer, sha256 text, mode integer, run_id text,
    kind text not null default 'file',     -- file | link | dir
    ctime_ns integer, ino integer,         -- of the source entry the mirror copy was made from
    racy integer,                          -- compared by content next run (see versions)
    primary key (source, dir, name)
);
create table if not exists runs (
    -- every run that wrote into the backup, in the order they ran: versions belong to
    -- runs, and runs are ordered by seq, never by the clock (which can go back)
    seq integer primary key autoincrement,
    run_id text not null unique,
    started real not null,
    logged real                   -- set by a later run once this run's record is known to
                                  -- be in the run log (its own, or one written for it)
);
create table if not exists folders (
    -- each source folder a mode has brought in line with the backup, as it was then:
    -- a folder without a row here (new, moved back, no longer ignored) is never skipped
    mode text not null, source text not null, dir blob not null,
    st_mode integer, mtime_ns integer,
    -- the walk's signature of the folder then (its listing with every entry's lstat, the
    -- selection rules), the subfolders the walk entered, the files and links kept: a run
    -- whose walk gives the same signature skips the folder without judging its entries
    sig blob, entered blob, count integer,
    mirror_mtime integer,         -- snapshot: the mirror folder's mtime as the run left it
    primary key (mode, source, dir)
);
create table if not exists listings (
    -- what the walk kept of a folder when a mode brought it in line (its files, links
    -- and subfolders, each file's and link's lstat: pipeline.change.listing), valid while
    -- the folder's row above holds the same signature, and read only for a folder whose
    -- signature changed: its entries whose lstat is the one listed are not judged again
    mode text not null, source text not null, dir blob not null,
    sig blob not null,            -- the folder's row's signature when this was kept
    rules blob not null,          -- the mode's rules then (backup.fingerprint)
    listing blob not null,
    primary key (mode, source, dir)
);
-- A folder's row above is a cache of what its records say: any change to the records of
-- its files and links (by snapback or by hand) drops it, so the folder is judged again.
-- (A subfolder's own row in its parent's folder, kind 'dir', is written by the
-- subfolder's task and leaves the parent's row alone.)
create trigger if not exists versions_added after insert on versions when new.entry != 'dir'
begin delete from folders where mode='versioned' and source=new.source and dir=new.dir; end;
create trigger if not exists versions_changed after update on versions when old.entry != 'dir'
begin delete from folders where mode='versioned' and source=old.source and dir=old.dir; end;
create trigger if not exists versions_dropped after delete on versions
begin delete from folders where mode='versioned' and source=old.source and dir=old.dir; end;
create trigger if not exists mirror_added after insert on mirror when new.kind != 'dir'
begin delete from folders where mode='snapshot' and source=new.source and dir=new.dir; end;
create trigger if not exists mirror_changed after update on mirror when old.kind != 'dir'
begin delete from folders where mode='snapshot' and source=old.source and dir=old.dir; end;
create trigger if not exists mirror_dropped after delete on mirror
begin delete from folders where mode='snapshot' and source=old.source and dir=old.dir; end;
create table if not exists garbage (
    -- stored files no row names any more (a whole copy a newer version superseded),
    -- named in the commit that made them so, removed after it: a run killed between
    -- the two leaves them here, and the next writer removes them
    path blob primary key          -- relative to the destination
);
create table if not exists pruned (
    -- a trace of every version row deleted (by prune): its id, path and whether it was
    -- a live version (not a deletion).  The state as of a row id is, per path, the
    -- newest of its rows and of these at or below that id: a live trace there means the
    -- version it had then is no longer kept, which a restore says instead of giving the
    -- older kept version, or nothing, in its place
    id integer primary key,
    source text not null, dir blob not null, name blob not null,
    live integer not null,
    run_id text not null,         -- the run that wrote it: a run's place in the history
                                  -- (``run_order``) stays where its rows were
    entry text not null           -- file | link | dir
);
create index if not exists pruned_by_path on pruned (source, dir, name, id);
create table if not exists traced_from (
    -- the runs' seq when this catalog began to keep the traces above: a prune run
    -- (run id ``prune-...``) up to it, made by an older snapback, dropped versions
    -- without one, and a restore as of a time before it says so
    seq integer not null
);
""" + TRACE_TRIGGER + """
create table if not exists aliases (
    source text not null, entry text not null, rel blob not null, store blob not null,
    primary key (source, entry, rel)
);
"""

def _read_only(path: Path) -> sqlite3.Connection:
    """The catalog opened read-only (a protected backup, read-only media).  One left in
    WAL mode without its side files (by an older snapback's reader) is read as it is,
    ``immutable`` (no writer can be at work where nothing can be written); one with a
    WAL holding commits is read through it, never without."""
    uri = f"file:{quote(os.fsencode(path))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    try:
        conn.execute("pragma user_version").fetchone()
    except sqlite3.OperationalError:
        conn.close()
        wal = path.with_name(path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            # (its index, the -shm, is gone and cannot be made here: SQLite cannot read
            # the journal, and reading the catalog without it would miss those commits)
            raise SnapbackError(
                f"the catalog {path} has commits in its journal ({wal.name}, left by a run "
                "that was stopped) that cannot be read where nothing can be written: copy "
                "the backup folder to writable storage (cp -a) and run this there") from None
        conn = sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None)
    return conn


FORMAT = 4          # pragma user_version of the catalog this code writes (and reads, 2 to 4)
CONTENT_KINDS = ("baseline", "diff", "delta", "full")  # "meta": a new mode, the bytes before it
WHOLE_KINDS = ("baseline", "full")              # an object that is the version itself
CHANGE_KINDS = ("diff", "delta")                # a text diff or a binary delta from the one before
SQL_CONTENT, SQL_WHOLE, SQL_CHANGE = ("(" + ",".join(f"'{k}'" for k in kinds) + ")"
                                      for kinds in (CONTENT_KINDS, WHOLE_KINDS, CHANGE_KINDS))
# Format 1 -> 2: what change detection compares, and the folders table (created by SCHEMA).
UPGRADE_1 = """
alter table versions add column ctime_ns integer;
alter table versions add column ino integer;
alter table mirror add column kind text not null default 'file';
alter table mirror add column ctime_ns integer;
alter table mirror add column ino integer;
"""
# Format 2 -> 3: the walk's signature of each folder in line (issue 18), added to the
# folders table where it lacks them (a writer checks each time: a catalog whose version
# number was set back by hand is mended, not refused).
FOLDER_COLUMNS = (("sig", "blob"), ("entered", "blob"), ("count", "integer"),
                  ("mirror_mtime", "integer"))
# Format 3 -> 4 (immutable objects, runs in order): a whole copy named per version
# instead of a current copy rewritten in place, racily clean records, and the runs.
NEW_COLUMNS = {"versions": (("copy", "blob"), ("racy", "integer")),
               "mirror": (("racy", "integer"),), "folders": FOLDER_COLUMNS,
               "runs": (("logged", "real"),)}
# The newest content row of each path names the current copy a format-3 writer kept
# (``<name>`` in its history folder) as its whole copy; runs are numbered in the order
# their rows were written.
UPGRADE_3 = """
update versions set copy = name where copy is null and id in (
    select max(id) from versions where kind in ('baseline','diff','full') and entry='file'
    group by source, dir, name);
insert or ignore into runs (run_id, started)
    select run_id, min(recorded) from versions group by run_id order by min(id);
"""
INT64 = 1 << 63


def enc(n: int | None) -> int | str | None:
    """An integer SQLite can hold exactly: nanosecond times after 2262 (or inodes past
    2**63) do not fit an INTEGER, and a numeric text would be turned into a lossy REAL."""
    return n if n is None or -INT64 <= n < INT64 else f"n{n}"


def dec(value: int | str | None) -> int | None:
    if value is None or type(value) is int:
        return value
    if isinstance(value, str) and value[:1] == "n":
        try:
            return int(value[1:])
        except ValueError:
            pass
    raise Damaged("time or inode", value)      # (a float, a word: edited by hand)


class Damaged(SnapbackError):
    """A value the catalog holds that no run wrote (a size or mode that is no number,
    a time that is none): the catalog was edited by hand or is damaged (status 1)."""

    def __init__(self, what: str, value: object):
        super().__init__(f"the catalog holds a {what} no run wrote ({value!r}): it was "
                         "edited by hand or is damaged")


class Stored(NamedTuple):
    """What the backup records for one entry of a source folder, as the entry was when it
    was stored: compared with the entry's lstat now (``pipeline.change``)."""
    kind: str                     # file | link | dir
    size: int | None
    mtime_ns: int | None
    mode: int | None
    ctime_ns: int | None
    ino: int | None


class InLine(NamedTuple):
    """A folder a mode brought in line with the backup, as the walk saw it then."""
    st_mode: int
    mtime_ns: int
    sig: bytes | None             # the walk's signature (pipeline.scan), None before format 3
    entered: bytes                # the subfolders the walk entered, NUL-separated
    kept: int | None              # the files and links the mode kept
    mirror_mtime: int | None = None  # the mirror folder's mtime as the run left it (a
                                  # destination may keep coarser times than the source)


class Row(NamedTuple):
    """One row of ``versions`` (a tuple: a catalog read makes thousands)."""
    id: int
    source: str
    dir: bytes
    name: bytes
    entry: str
    kind: str
    time: str
    run_id: str
    note: str
    store: bytes | None
    object: bytes | None
    size: int | None
    sha256: str | None
    mode: int | None
    mtime_ns: int | None
    target: bytes | None
    recorded: float
    object_sha256: str | None
    ctime_ns: int | None = None
    ino: int | None = None
    copy: bytes | None = None     # a whole copy of this version, relative to the store
    racy: int | None = None       # read within its mtime's granularity: compare content

    @property
    def live(self) -> bool:
        return self.kind != "deleted"

    @property
    def stored(self) -> Stored:
        # a racily clean record matches no stat: the next run compares the content
        return Stored(self.entry, None if self.racy else self.size, self.mtime_ns, self.mode,
                      self.ctime_ns, self.ino)

    @property
    def whole(self) -> bytes | None:
        """The stored file that holds this version whole, relative to its store: its
        copy, or its own object when that is a baseline or full copy."""
        if self.copy is not None:
            return self.copy
        return self.object if self.kind in WHOLE_KINDS else None

    @property
    def path(self) -> bytes:
        return self.dir + b"/" + self.name if self.dir else self.name


ADDED_BITS = 1 << 23      # ``Catalog._added``: 1 MB; at 240,000 files, 3% of answers asked


def _added_bit(sha256: str) -> int:
    return hash(sha256) & (ADDED_BITS - 1)        # (this process's hash: kept in it)


COLUMNS = ", ".join(Row._fields)
SIZE = "case when racy then null else size end"     # what a racily clean record compares
_NS_FIELDS = [i for i, f in enumerate(Row._fields)
              if f in ("mtime_ns", "ctime_ns", "ino")]
_MTIME, _CTIME, _INO = _NS_FIELDS
_SOURCE, _DIR, _NAME, _ENTRY, _KIND, _STORE, _OBJECT, _COPY, _SIZE, _MODE = (
    Row._fields.index(f) for f in ("source", "dir", "name", "entry", "kind", "store",
                                   "object", "copy", "size", "mode"))
KINDS = ("baseline", "diff", "delta", "full", "meta", "link", "dir", "deleted")
ENTRIES = ("file", "link", "dir")


class Tampered(SnapbackError):
    """A path the catalog holds leads out of the folder it is relative to, or is no path
    at all (not bytes, a NUL byte): never one snapback wrote (a catalog edited by hand,
    damaged, or a hostile remote's, fetched).  Nothing is read, written or removed
    there (status 1)."""

    def __init__(self, what: str, value: object):
        from .show import display
        shown = display(os.fsdecode(value)) if isinstance(value, bytes) else \
            display(value) if isinstance(value, str) else "none" if value is None else \
            repr(value)
        super().__init__(f"refusing a path the catalog names outside the backup ({what} "
                         f"{shown!r}): the catalog was edited by hand or is damaged")


def leaves(rel: object, empty: bool = True) -> bool:
    """Would ``rel``, a path the catalog holds relative to a folder of the backup (a
    row's folder, history folder, object or whole copy), lead out of it: absolute, a
    ``..`` component, a NUL byte, not bytes at all (``empty``: may it be b"")?"""
    if type(rel) is not bytes:
        return True
    if not rel:
        return not empty
    if rel[:1] != b"/" and b".." not in rel and b"\0" not in rel:
        return False
    return rel[:1] == b"/" or b"\0" in rel or b".." in rel.split(b"/")


def bad_name(name: object) -> bool:
    """A row's name that is not one component of a path (b"": a source's own folder)."""
    return type(name) is not bytes or b"/" in name or b"\0" in name or \
        name in (b".", b"..")


def bad_source(source: object) -> bool:
    """A source name that is not one folder name (the plan's names are)."""
    return type(source) is not str or not source or "/" in source or "\0" in source or \
        source in (".", "..")


def bad_mode(mode: object) -> bool:
    """A mode that is no file mode (a word, a negative number)."""
    return not (mode is None or (type(mode) is int and 0 <= mode < 1 << 32))


def bad_count(value: object) -> bool:
    """A size that is no count (a word, a float, a negative number)."""
    return not (value is None or (type(value) is int and value >= 0))


def check_row(r: tuple[Any, ...] | list[Any]) -> None:
    """Refuse a row whose paths lead out of the backup (``leaves``, ``bad_name``,
    ``bad_source``), or whose values no run wrote (``Damaged``): every versions row a
    query gives passes here."""
    if r[_KIND] not in KINDS:
        raise Damaged("kind", r[_KIND])
    if r[_ENTRY] not in ENTRIES:
        raise Damaged("entry", r[_ENTRY])
    if r[_MTIME] is not None and type(r[_MTIME]) is not int:
        raise Damaged("time", r[_MTIME])
    if bad_count(r[_SIZE]):
        raise Damaged("size", r[_SIZE])
    if bad_mode(r[_MODE]):
        raise Damaged("mode", r[_MODE])
    source, d, n = r[_SOURCE], r[_DIR], r[_NAME]
    s, o, c = r[_STORE], r[_OBJECT], r[_COPY]
    try:       # (the usual row at the cost of a join: nothing suspect anywhere in it)
        joined = b"\x01".join((d, n, b"-" if s is None else s, b"-" if o is None else o,
                                b"-" if c is None else c))
    except TypeError:
        joined = b".."                             # (not bytes: looked at closely)
    if b".." not in joined and b"\0" not in joined and b"\x01/" not in joined and \
            b"\x01./" not in joined and joined[:1] != b"/" and b"/" not in n and \
            n != b"." and s != b"." and b"" not in (s, o, c) and type(source) is str and \
            source and "/" not in source and "\0" not in source and source != "." and \
            (r[_KIND] not in CONTENT_KINDS or (s is not None and o is not None)):
        return
    check_entry(source, d, n)
    if s is not None and bad_store(s):
        raise Tampered("history folder", s)
    if r[_KIND] in CONTENT_KINDS and (s is None or o is None):   # (a version's object)
        raise Tampered("object", o if s is not None else s)
    for what, value in (("object", o), ("copy", c)):
        if value is not None and leaves(value, empty=False):
            raise Tampered(what, value)


def bad_store(store: object) -> bool:
    """A history folder (relative to its source's history) that is not one below it."""
    return leaves(store, empty=False) or store == b"." or \
        (isinstance(store, bytes) and store.startswith(b"./"))


def check_entry(source: object, folder: object, name: object) -> None:
    """The same for a mirror row (source, folder, name)."""
    if bad_source(source):
        raise Tampered("source", source)
    if leaves(folder):
        raise Tampered("folder", folder)
    if bad_name(name):
        raise Tampered("name", name)


def entry_fine(source: object, folder: object, name: object, mode: object = None) -> bool:
    """``check_entry`` in a comprehension, and the entry's mode: True, or it raises."""
    check_entry(source, folder, name)
    if bad_mode(mode):
        raise Damaged("mode", mode)
    return True


class Catalog:
    def __init__(self, path: Path, writable: bool):
        try:
            self._open(path, writable)
        except BaseException as exc:
            # a connection made before the failure (a full disk, Ctrl-C) is closed here,
            # not left to the collector: SQLite removes its -wal and -shm then
            conn = getattr(self, "conn", None)
            if conn is not None:
                conn.close()
            if isinstance(exc, sqlite3.Error):    # unreadable, a folder, not a database...
                raise SnapbackError(f"the catalog {path} cannot be opened: {exc}") from None
            raise

    def _open(self, path: Path, writable: bool) -> None:
        self.path = path
        self.run: tuple[str, float] | None = None    # this run (id, start), registered
        self._registered = False                     # in ``runs`` with its first write
        self._unsettled = False          # the open transaction names files just written
        self._savepoints = 0             # folder savepoints open in it (``begin_folder``)
        self._inserts: dict[tuple[str, ...], str] = {}    # columns -> ``add``'s statement
        # the filesystems mounted below the destination, synced too (``_settle``)
        self._mounts: list[bytes] | None = None
        # A folder's records read at task creation, for its task to take instead of reading
        # them again (``records_in(keep=True)``), dropped by any write that may change
        # them: the run's (``Session.kept``), shared by the catalog its tasks are made
        # with and the one they write with; None: nothing is kept
        self.kept: dict[tuple[str, str, bytes], Any] | None = None
        # listings read for the walk's ``settle``, for task creation to take (``listing``)
        self._listings: dict[tuple[str, str, bytes, bytes, bytes], bytes | None] = {}
        self.writable = writable
        # Writes held back (``_hold``: a folder task's new rows, its folder's records),
        # (statement, values) in the order they came: made before the connection is next
        # used for anything (``conn``), each run of one statement in one ``executemany``.
        # A folder's writes go in together instead of one statement each between the
        # folder's other work (SQLite's code and pages are cold by then: 75 us a row
        # against 36, issue 25); nothing reads or commits without them.  Dropped with the
        # folder or transaction they are in.
        self._held: list[tuple[str, tuple[object, ...]]] = []
        # Held writes failed to be made (a full disk): the open transaction lacks them,
        # and no commit is made until the folder or the transaction is undone, even if
        # the use of ``conn`` that made them had its error caught
        self._unheld: BaseException | None = None
        self._conn: sqlite3.Connection | None = None
        # Checksums of the rows this connection added (a bit each, of 2**23), when the
        # catalog held no version when opened (a first backup): ``holding`` answers
        # "none" for the others without a query
        self._added: bytearray | None = None
        # A table empty when the catalog was opened to write (a first backup): the
        # folders (source, dir) this connection has written rows of in it since; the
        # rows of any other folder are none, known without a query
        self._written: dict[str, set[tuple[str, bytes]]] = {}
        self.rows_added = 0              # versions and mirror rows this connection added
        self._folds = False              # a reader that may write: folds a WAL back in
        if writable:
            self.conn = sqlite3.connect(path, isolation_level=None)
            os.chmod(path, 0o600)            # it names every file: as private as the backup
            self.conn.execute("pragma journal_mode=wal")
            self.conn.execute("pragma synchronous=full")     # a commit survives power loss
            # a folder's savepoint journal in memory, not in a temporary file on disk
            self.conn.execute("pragma temp_store=memory")
            self._check_format(fresh_ok=True)
            found = self.conn.execute("pragma user_version").fetchone()[0]
            upgrade = UPGRADE_1 if found == 1 else ""
            self.conn.executescript("begin;" + upgrade + SCHEMA)
            added: set[str] = set()
            for table, columns in NEW_COLUMNS.items():
                have = {row[1] for row in self.conn.execute(f"pragma table_info({table})")}
                for column, kind in columns:
                    if column not in have:
                        self.conn.execute(f"alter table {table} add column {column} {kind}")
                        added.add(f"{table}.{column}")
            if added - {"runs.logged"} or found < FORMAT:
                for statement in filter(str.strip, UPGRADE_3.split(";")):
                    self.conn.execute(statement)      # (executescript would commit)
            pruned = {row[1] for row in self.conn.execute("pragma table_info(pruned)")}
            if "entry" not in pruned:       # (a development version's table and trigger)
                self.conn.execute("alter table pruned add column entry text")
                self.conn.execute("drop trigger versions_traced")
                self.conn.execute(TRACE_TRIGGER)
            self.conn.execute("insert into traced_from select coalesce((select max(seq) "
                              "from runs), 0) where not exists (select 1 from traced_from)")
            if "runs.logged" in added:      # the runs before it: each has its record
                self.conn.execute("update runs set logged = started where logged is null")
            # (the runs not yet known logged, read by every writing run: one or two)
            self.conn.execute("create index if not exists runs_unlogged on runs (seq) "
                              "where logged is null")
            self.conn.execute(f"pragma user_version={FORMAT}")
            self.conn.execute("commit")
            # each table on its own (helper-68: a first `snapshot` leaves versions empty
            # and the mirror not)
            empty = {table: self.conn.execute(f"select 1 from {table} limit 1").fetchone()
                     is None for table in ("versions", "mirror", "aliases")}
            if empty["versions"]:
                self._added = bytearray(ADDED_BITS // 8)
            self._written = {table: set() for table, none in empty.items() if none}
        elif path.exists() and path.stat().st_size > 0:
            # (A 0-byte catalog is one a first run was killed in while creating it: a
            # reader finds nothing in it, the next writer makes it; open_catalog refuses
            # it beside a backup that holds something.)
            # Between runs the catalog is in rollback mode, so a reader creates no side
            # file; after a killed run it is still in WAL mode and a reader that may
            # write replays the WAL (committed versions are never missed).  A backup
            # that cannot be written (protected, read-only media) is opened read-only.
            if os.access(path, os.W_OK) and os.access(path.parent, os.W_OK):
                self.conn = sqlite3.connect(path, isolation_level=None)
                self._folds = True
            else:
                self.conn = _read_only(path)
            self._check_format(fresh_ok=False)
            if self.conn.execute("pragma user_version").fetchone()[0] == 0:
                self.conn.close()              # no schema yet (a kill right after creation)
                self.conn = None
        self._columns()

    def _columns(self) -> None:
        """The columns this catalog has: a reader of a format-2 or 3 catalog (not yet
        upgraded by a writer) reads the newer ones as null."""
        self.cols, self.size = COLUMNS, SIZE
        self.has_runs = self.has_pruned = self.traced_from = self.dir_traced = True
        if self.conn is None:
            return
        have = {row[1] for row in self.conn.execute("pragma table_info(versions)")}
        if "copy" not in have:
            self.cols = ", ".join(f if f in have else f"null as {f}"
                                  for f in Row._fields)
        mirror = {row[1] for row in self.conn.execute("pragma table_info(mirror)")}
        if "racy" not in mirror:
            self.size = "size"
        tables = {n for (n,) in self.conn.execute(
            "select name from sqlite_master where type='table'")}
        self.has_runs = "runs" in tables
        self.has_pruned = "pruned" in tables     # (written by this version on: older
                                                 # prunes left no trace)
        self.traced_from = "traced_from" in tables
        self.dir_traced = self.has_pruned and "entry" in {
            row[1] for row in self.conn.execute("pragma table_info(pruned)")}

    def _check_format(self, fresh_ok: bool) -> None:
        assert self.conn is not None
        try:
            found = self.conn.execute("pragma user_version").fetchone()[0]
            tables = self.conn.execute("select count(*) from sqlite_master").fetchone()[0]
        except sqlite3.OperationalError:
            raise                 # cannot be opened now (a full disk: its WAL, -shm)
        except sqlite3.DatabaseError as exc:
            raise SnapbackError(f"the catalog {self.path} is unreadable: {exc}") from None
        upgradable = fresh_ok and found == 1           # a writer upgrades format 1 in place
        fresh = found == 0 and tables == 0                  # created, killed before the schema
        if found not in (2, 3, FORMAT) and not upgradable and not fresh:
            raise SnapbackError(f"the catalog {self.path} has format {found}; this snapback "
                                f"reads format {FORMAT}")

    @property
    def conn(self) -> sqlite3.Connection | None:
        """The connection, the rows held back written first."""
        if self._held:
            self._write_held()
        return self._conn

    @conn.setter
    def conn(self, conn: sqlite3.Connection | None) -> None:
        self._held.clear()
        self._conn = conn

    def _hold(self, sql: str, values: tuple[object, ...]) -> None:
        """A write whose result nothing waits for, made with the next use of ``conn``."""
        assert self._conn is not None
        self._held.append((sql, values))

    def _write_held(self) -> None:
        held, self._held = self._held, []
        assert self._conn is not None
        start = 0
        try:
            while start < len(held):
                sql, end = held[start][0], start + 1
                while end < len(held) and held[end][0] == sql:
                    end += 1
                self._conn.executemany(sql, [values for _sql, values in held[start:end]])
                start = end
        except Exception as exc:
            self._unheld = exc
            raise
        # (Ctrl-C between two runs leaves a prefix of the writes, in order, made: the state
        # a Ctrl-C between two statements left before they were held; nothing is written
        # after it in that transaction but its commit)

    def close(self) -> None:
        """Commit what is open and fold the WAL back in; the connection is closed even
        when that fails (a full disk: the error is raised, what was committed is in the
        WAL, which the next opening replays)."""
        self.kept = None                   # (the run's: the other connection's to use)
        if self.conn is not None:
            try:
                self.commit()
                if self.writable:
                    self.conn.execute("pragma journal_mode=delete")   # WAL folded back in
                elif self._folds:
                    self._fold_back()
            finally:
                self.rollback()
                self.conn.close()
                self.conn = None

    def _fold_back(self) -> None:
        """A reader that replayed a killed run's WAL leaves the catalog in rollback mode,
        as a run does: a catalog left in WAL mode without its side files cannot be
        opened read-only (the same disk mounted read-only, the day it fails).  Not while
        another connection has it open (a run: it does so itself when it ends)."""
        assert self.conn is not None
        try:
            if self.conn.execute("pragma journal_mode").fetchone()[0] == "wal":
                self.conn.execute("pragma busy_timeout=0")
                self.conn.execute("pragma journal_mode=delete")
        except sqlite3.Error:
            pass

    def begin(self) -> None:
        """One transaction per folder: a commit per file costs more than the copy."""
        if self.conn is not None and self.writable and not self.conn.in_transaction:
            self.conn.execute("begin")

    def begin_folder(self) -> None:
        """A folder task's changes: a savepoint in the run's open transaction, so that
        a folder that fails is undone alone (``abort_folder``) while the folders before
        it wait for the group's commit (``pipeline.session.Group``)."""
        if self.conn is not None and self.writable:
            self.begin()
            self.conn.execute("savepoint folder")
            self._savepoints += 1

    def end_folder(self) -> None:
        """The folder's changes join the open transaction (committed with its group)."""
        if self.conn is not None and self._savepoints and self.conn.in_transaction:
            self.conn.execute("release folder")
        self._savepoints = max(self._savepoints - 1, 0)

    def abort_folder(self) -> bool:
        """Undo the folder's changes; True when the folders before it in the open
        transaction are kept (False: SQLite dropped the whole transaction, as it does
        on a full disk, or there was no savepoint)."""
        self._held.clear()
        self._unheld = None                 # (undone with the folder's savepoint)
        if self.conn is None or not self._savepoints or not self.conn.in_transaction:
            self.rollback()
            return False
        self._savepoints -= 1
        self._registered = False            # (this run's row may have been entered in it)
        try:
            self.conn.execute("rollback to folder")
            self.conn.execute("release folder")
        except sqlite3.Error:
            self.rollback()
            return False
        return True

    def rollback(self) -> None:
        """Drop the open transaction, if SQLite has not dropped it already (it does on
        a full disk); what it named is not in the catalog, this run's entry in ``runs``
        perhaps neither (entered again with the next write: ``insert or ignore``)."""
        self._held.clear()
        self._unheld = None
        self._unsettled = self._registered = False
        self._savepoints = 0
        if self.conn is not None and self.conn.in_transaction:
            if self.kept:
                self.kept.clear()   # (read before changes now undone: read them again)
            try:
                self.conn.execute("rollback")
            except sqlite3.Error:
                pass              # (already rolled back: "no transaction is active")

    def commit(self) -> None:
        """Commit; what the transaction names (stored files, mirror copies) is put on
        stable storage first, and the commit itself is durable (synchronous=full)."""
        if self.conn is not None and self.conn.in_transaction:
            if self._unheld is not None:    # (its error was caught on the way: say it here)
                lost = self._unheld
                self.rollback()
                error = sqlite3.OperationalError(f"the catalog's writes were not all made: "
                                                 f"{lost}")
                error.__context__ = lost        # (a full disk is said as one: is_full)
                raise error from lost
            if self._unsettled:
                self._settle()
            faults.point("commit")
            try:
                self.conn.execute("commit")
            except sqlite3.Error:
                self.rollback()   # (a full disk): nothing of the transaction is kept
                raise
        self._unsettled = False
        self._savepoints = 0

    def _settle(self) -> None:
        """Put on stable storage what the destination's filesystem holds, and every other
        filesystem mounted below it (an area, or a folder in one, on a disk of its own):
        ``store.settle`` each once.  The mounts are looked for once a run."""
        meta = os.fsencode(self.path.parent)
        store.settle(meta)
        if self._mounts is None:
            synced = {os.lstat(meta).st_dev}
            self._mounts = []
            for folder, st in layout.mounts_under(os.path.dirname(meta)):
                if st.st_dev not in synced:           # (a bind mount of the same one)
                    synced.add(st.st_dev)
                    self._mounts.append(folder)
        for folder in self._mounts:
            store.settle(folder)

    def objects(self, source: str, folder: bytes, name: bytes) -> set[bytes]:
        """The stored objects the catalog refers to for one path."""
        if self.conn is None:
            return set()
        return {o for (o,) in self.conn.execute(
            "select object from versions where source=? and dir=? and name=? and object "
            "is not null", (source, folder, name))}

    def _none_in(self, table: str, source: str, folder: bytes) -> bool:
        """No row of ``folder`` is in ``table``: it was empty when the catalog was opened
        to write (a first backup), and this connection has written none of the folder's
        since (``_written``)."""
        written = self._written.get(table)
        return written is not None and (source, folder) not in written

    def mirror_in(self, source: str, folder: bytes) -> dict[bytes, Stored]:
        """What the mirror holds of one source folder, as recorded: name -> Stored."""
        if self.conn is None:
            return {}
        kept: dict[bytes, Stored] | None = self._take_kept("mirror", source, folder)
        if kept is not None:
            return kept
        if self._none_in("mirror", source, folder):
            return {}
        return {n: Stored(kind, size, dec(mtime), mode, dec(ctime), dec(ino))
                for n, kind, size, mtime, mode, ctime, ino in self.conn.execute(
                    f"select name, kind, {self.size}, mtime_ns, mode, ctime_ns, ino from "
                    "mirror where source=? and dir=?", (source, folder))
                if (not bad_name(n) and not bad_mode(mode))     # (the usual row: no call
                or entry_fine(source, folder, n, mode)}         # more)

    def mirror_entry(self, source: str, folder: bytes, name: bytes) -> Stored | None:
        """What the mirror holds of one entry, as recorded (one row, whatever the folder's
        size: a folder of thousands of entries is not read for one)."""
        if self.conn is None or self._none_in("mirror", source, folder):
            return None
        row = self.conn.execute(
            f"select kind, {self.size}, mtime_ns, mode, ctime_ns, ino from mirror "
            "where source=? and dir=? and name=?", (source, folder, name)).fetchone()
        if row is None:
            return None
        kind, size, mtime, mode, ctime, ino = row
        return Stored(kind, size, dec(mtime), mode, dec(ctime), dec(ino))

    def records(self, mode: str, source: str) -> dict[bytes, dict[bytes, Stored]]:
        """What ``mode`` holds of every entry of a source, by folder: one query (a
        no-change run reads this and the folders, nothing else)."""
        out: dict[bytes, dict[bytes, Stored]] = {}
        if self.conn is None:
            return out
        if mode == "snapshot":
            sql = (f"select dir, name, kind, {self.size}, mtime_ns, mode, ctime_ns, ino "
                   "from mirror where source=?")
        else:
            size = "size" if self.cols != COLUMNS else SIZE
            sql = (f"select dir, name, entry, {size}, mtime_ns, mode, ctime_ns, ino from "
                   "versions where id in (select max(id) from versions where source=? "
                   "group by dir, name) and kind != 'deleted'")
        new = tuple.__new__                  # a Stored without a Python call per row
        for row in self.conn.execute(sql, (source,)):
            folder = out.get(row[0])
            if folder is None:
                folder = out[row[0]] = {}
            if str in (type(row[4]), type(row[6]), type(row[7])):   # past 2262: decode
                row = (*row[:4], dec(row[4]), row[5], dec(row[6]), dec(row[7]))
            folder[row[1]] = new(Stored, row[2:])
        return out

    def records_in(self, mode: str, source: str, folder: bytes,
                   keep: bool = False) -> dict[bytes, Stored]:
        """The same for one folder (``keep``: what was read is kept for the folder's task,
        whose ``mirror_in`` or ``latest_in`` takes it, unless a write touched it since)."""
        if mode == "snapshot":
            mirror = self.mirror_in(source, folder)
            if keep and self.kept is not None:
                self.kept[("mirror", source, folder)] = mirror
            return mirror
        latest = self.latest_in(source, folder)
        if keep and self.kept is not None:
            self.kept[("versions", source, folder)] = latest
        return {n: row.stored for n, row in latest.items() if row.live}

    def keep_mirror(self, source: str, folder: bytes, mirror: dict[bytes, Stored]
                    ) -> dict[bytes, Stored]:
        """``mirror``, ``folder``'s mirror records read with the whole source's
        (``records``), kept for the folder's task as ``records_in`` keeps them."""
        if self.kept is not None:
            self.kept[("mirror", source, folder)] = mirror
        return mirror

    @property
    def pending(self) -> bool:
        """Does this connection hold changes not committed yet (which another sees not)?"""
        return self.conn is not None and self.conn.in_transaction

    def keeps(self, table: str, source: str, folder: bytes) -> bool:
        """Does the run keep what task creation read of ``folder``'s records?"""
        return self.kept is not None and (table, source, folder) in self.kept

    def _take_kept(self, table: str, source: str, folder: bytes) -> Any:
        """What task creation kept of ``folder``'s records in ``table`` (taken once)."""
        return self.kept.pop((table, source, folder), None) if self.kept else None

    def _changed(self, table: str, source: str | None = None, folder: bytes | None = None,
                 below: bytes | None = None) -> None:
        """A write to ``table``: what was kept of ``folder`` (None: of any), and of the
        folder ``below`` and every folder under it, is read again."""
        if not self.kept:
            return
        if folder is None:
            self.kept.clear()
            return
        self.kept.pop((table, source or "", folder), None)
        self.kept.pop((table + "+", source or "", folder), None)     # (``records_of``'s)
        if below is not None:
            for key in [k for k in self.kept if k[0] in (table, table + "+") and
                        k[1] == source and (k[2] == below or k[2].startswith(below + b"/"))]:
                del self.kept[key]

    def folders_seen(self, mode: str, source: str) -> dict[bytes, InLine]:
        """Every folder of a source ``mode`` last brought in line, as it was then."""
        if self.conn is None:
            return {}
        sql = "select dir, st_mode, mtime_ns, {} from folders where mode=? and source=?"
        try:
            rows = self.conn.execute(sql.format("sig, entered, count, mirror_mtime"),
                                     (mode, source)).fetchall()
        except sqlite3.OperationalError:     # format 2 (read, not yet upgraded): no signatures
            rows = self.conn.execute(sql.format("null, null, null, null"),
                                     (mode, source)).fetchall()
        return {d: InLine(st_mode, int(dec(mtime) or 0), sig, entered, count,
                          dec(kept_at) if isinstance(kept_at, (int, str)) else None)
                if isinstance(sig, bytes) and isinstance(entered, bytes) and
                isinstance(count, int) and count >= 0    # else (edited by hand) no signature
                else InLine(st_mode, int(dec(mtime) or 0), None, b"", None)
                for d, st_mode, mtime, sig, entered, count, kept_at in rows}

    def mirror_shas(self, source: str, folder: bytes) -> dict[bytes, str]:
        if self.conn is None:
            return {}
        return {n: sha for n, sha in self.conn.execute(
            "select name, sha256 from mirror where source=? and dir=? and sha256 is not null",
            (source, folder))}

    def set_folder(self, mode: str, source: str, folder: bytes, st: os.stat_result,
                   sig: bytes | None = None, entered: bytes = b"", count: int | None = None,
                   mirror_mtime: int | None = None,
                   listing: tuple[bytes, bytes | None] | None = None) -> None:
        """The folder as in line; with a signature, ``listing`` (the mode's rules, the
        walk's listing: pipeline.change.listing) is kept beside it.  Held back as
        ``add``'s rows are."""
        assert self._conn is not None
        self._enter_run()           # (a run that only brought folders in line is a run too:
                                    # an empty source's first run restores as of its id)
        self._hold("insert or replace into folders (mode, source, dir, st_mode, mtime_ns, sig, "
                   "entered, count, mirror_mtime) values (?,?,?,?,?,?,?,?,?)",
                   (mode, source, folder, st.st_mode, enc(st.st_mtime_ns), sig, entered,
                    count, enc(mirror_mtime)))
        if sig is not None and listing is not None and listing[1] is not None:
            self._hold("insert or replace into listings values (?,?,?,?,?,?)",
                       (mode, source, folder, sig, *listing))

    def listing(self, mode: str, source: str, folder: bytes, sig: bytes, rules: bytes,
                keep: bool = False) -> bytes | None:
        """The listing kept with the folder's row of signature ``sig`` under ``rules``
        (``keep``: kept for the next ask, which takes it; a listing is what its signature
        and rules make of the folder, so a row written since holds the same)."""
        key = (mode, source, folder, sig, rules)
        if key in self._listings:
            return self._listings.pop(key)
        if self.conn is None:
            return None
        try:
            row = self.conn.execute("select listing from listings where mode=? and source=? "
                                    "and dir=? and sig=? and rules=?",
                                    (mode, source, folder, sig, rules)).fetchone()
        except sqlite3.OperationalError:      # (not yet made by a writer of this version)
            return None
        found = row[0] if row is not None and isinstance(row[0], bytes) else None
        if keep:
            self._listings[key] = found
        return found

    def records_of(self, mode: str, source: str, folder: bytes, names: list[bytes]
                   ) -> dict[bytes, Stored]:
        """What ``mode`` records of a few entries of ``folder`` (one row each)."""
        out: dict[bytes, Stored] = {}
        # (kept for the folder's task, which asks for the same rows: ``entry``, ``latest_in``)
        some: dict[bytes, Any] = {}
        for name in names:
            if mode == "snapshot":
                found = some[name] = self.mirror_entry(source, folder, name)
            else:
                row = some[name] = self.latest(source, folder, name)
                found = row.stored if row is not None and row.live else None
            if found is not None:
                out[name] = found
        if self.kept is not None:
            self.kept[("mirror+" if mode == "snapshot" else "versions+", source, folder)] = some
        return out

    def entry(self, source: str, folder: bytes, name: bytes) -> Stored | None:
        """``mirror_entry``, from what task creation kept of the folder when it read it."""
        some = self.kept.get(("mirror+", source, folder)) if self.kept else None
        if some is not None and name in some:
            found: Stored | None = some[name]
            return found
        return self.mirror_entry(source, folder, name)

    def unset_folder(self, mode: str, source: str, folder: bytes) -> None:
        """The folder is being changed: until its task has finished, it is not in line
        (held back as ``add``'s rows are)."""
        self._hold("delete from folders where mode=? and source=? and dir=?",
                   (mode, source, folder))

    def forget_folders(self, mode: str, source: str, path: bytes) -> None:
        """A folder left the backup: it and every folder below it must be looked at
        again if they come back, whatever their stat then."""
        assert self.conn is not None
        self.conn.execute("delete from folders where mode=? and source=? and dir=?",
                          (mode, source, path))
        self.conn.execute("delete from folders where mode=? and source=? and dir>=? and "
                          "dir<?", (mode, source, path + b"/", path + b"0"))
        self.conn.execute("delete from listings where mode=? and source=? and (dir=? or "
                          "dir>=? and dir<?)", (mode, source, path, path + b"/", path + b"0"))

    def _rows(self, sql: str, args: tuple[Any, ...]) -> list[Row]:
        if self.conn is None:
            return []
        out = []
        new = tuple.__new__                  # a Row without a Python call per row
        for r in self.conn.execute(sql, args):
            if str in (type(r[_MTIME]), type(r[_CTIME]), type(r[_INO])):   # past 2262
                r = tuple(dec(v) if i in _NS_FIELDS else v for i, v in enumerate(r))
            check_row(r)
            out.append(new(Row, r))
        return out

    def latest_in(self, source: str, folder: bytes, names: list[bytes] | None = None
                  ) -> dict[bytes, Row]:
        """The newest row of every path directly in ``folder`` (or of those of ``names``
        that have one, at least: a few paths of a large folder are read alone)."""
        kept: dict[bytes, Row] | None = self._take_kept("versions", source, folder)
        if kept is not None:
            return kept
        if self._none_in("versions", source, folder):
            return {}
        if names is not None and len(names) <= 16:
            some = self._take_kept("versions+", source, folder) or {}
            latest = ((name, some[name] if name in some else self.latest(source, folder, name))
                      for name in names)
            return {name: row for name, row in latest if row is not None}
        rows = self._rows(f"select {self.cols} from versions where id in (select max(id) from "
                          "versions where source=? and dir=? group by name)", (source, folder))
        return {r.name: r for r in rows}

    def live_below(self, source: str, folder: bytes) -> list[Row]:
        """The newest row of every path below ``folder`` (any depth) that is not deleted."""
        if not folder:
            rows = self._rows(f"select {self.cols} from versions where id in (select max(id) "
                              "from versions where source=? group by dir, name)", (source,))
            return [r for r in rows if r.live]
        # blobs compare bytewise, and "0" sorts right after "/": [folder/, folder0) is below it
        # (each branch a range of versions_by_path: an OR of them scans the whole source)
        rows = self._rows(
            f"select {self.cols} from versions where id in (select max(id) from versions "
            "where source=? and dir>=? and dir<? group by dir, name union all "
            "select max(id) from versions where source=? and dir=? group by name)",
            (source, folder + b"/", folder + b"0", source, folder))
        return [r for r in rows if r.live]

    def latest(self, source: str, folder: bytes, name: bytes) -> Row | None:
        """The newest row of one path."""
        if self._none_in("versions", source, folder):
            return None
        rows = self._rows(f"select {self.cols} from versions where source=? and dir=? and name=? "
                          "order by id desc limit 1", (source, folder, name))
        return rows[0] if rows else None

    def last_content(self, source: str, folder: bytes, name: bytes) -> Row | None:
        """The newest baseline/diff/full row of a path: its newest content."""
        if self._none_in("versions", source, folder):
            return None
        rows = self._rows(f"select {self.cols} from versions where source=? and dir=? and name=? "
                          f"and kind in {SQL_CONTENT} order by id desc limit 1",
                          (source, folder, name))
        return rows[0] if rows else None

    def chain(self, source: str, folder: bytes, name: bytes, upto: int
              ) -> list[tuple[bytes, bytes, str]] | None:
        """The stored objects that rebuild a path's content version ``upto`` (a row id):
        its last whole object (baseline or full) and every change after it, as (store,
        object, the object's own sha256), oldest first; None without a whole object.
        (Only these columns: a file changed in every run has a long chain.)"""
        assert self.conn is not None
        where = "source=? and dir=? and name=?"
        rows = self.conn.execute(
            f"select kind, store, object, coalesce(object_sha256, sha256) from versions "
            f"where {where} and kind in {SQL_CONTENT} and id<=? and id>=(select max(id) "
            f"from versions where {where} and kind in {SQL_WHOLE} and id<=?) order by id",
            (source, folder, name, upto, source, folder, name, upto)).fetchall()
        if not rows or rows[0][0] not in WHOLE_KINDS:
            return None
        for _kind, store_rel, obj, _sha in rows:
            if bad_store(store_rel):
                raise Tampered("history folder", store_rel)
            if leaves(obj, empty=False):
                raise Tampered("object", obj)
        return [(store, obj, sha) for _kind, store, obj, sha in rows]

    def history(self, source: str, folder: bytes, name: bytes) -> list[Row]:
        return self._rows(f"select {self.cols} from versions where source=? and dir=? and name=? "
                          "order by id", (source, folder, name))

    def rows_under(self, source: str, path: bytes) -> list[Row]:
        """Every row of ``path`` and of everything below it, oldest first."""
        if not path:
            return self._rows(f"select {self.cols} from versions where source=? order by id",
                              (source,))
        folder, _, name = path.rpartition(b"/")
        # (each branch a range of versions_by_path: an OR of them scans the whole source)
        return self._rows(
            f"select {self.cols} from versions where source=? and dir=? and name=? union all "
            f"select {self.cols} from versions where source=? and dir=? union all "
            f"select {self.cols} from versions where source=? and dir>=? and dir<? order by id",
            (source, folder, name, source, path, source, path + b"/", path + b"0"))

    def pruned_under(self, source: str, path: bytes) -> list[tuple[int, bytes, bool, bool]]:
        """The traces of the version rows prune deleted for ``path`` and everything
        below it, (row id, path, was live: not a deletion, was a folder's), oldest
        first."""
        if self.conn is None or not self.has_pruned:
            return []
        folder_row = "entry is 'dir'" if self.dir_traced else "0"
        what = f"select id, dir, name, live, {folder_row} from pruned"
        if not path:
            found = self.conn.execute(f"{what} where source=? order by id", (source,))
        else:
            folder, _, name = path.rpartition(b"/")
            found = self.conn.execute(
                f"{what} where source=? and dir=? and name=? union all "
                f"{what} where source=? and dir=? union all "
                f"{what} where source=? and dir>=? and dir<? order by id",
                (source, folder, name, source, path, source, path + b"/", path + b"0"))
        return [(i, d + b"/" + n if d else n, bool(live), bool(is_dir))
                for i, d, n, live, is_dir in found]

    def untraced_prunes(self, logged: set[str]) -> set[str]:
        """The runs that pruned before this catalog kept traces of what prune drops
        (``traced_from``; every run, in a catalog no writer of this version opened):
        prune runs (``prune-...``), and the runs in ``logged`` (whose log records say
        they pruned: a ``doit all`` with ``retention.auto``)."""
        if self.conn is None or not self.has_runs:
            return set()
        upto = "(select min(seq) from traced_from)" if self.traced_from else \
            "(select max(seq) from runs)"
        return {run_id for (run_id,) in self.conn.execute(
            f"select run_id from runs where seq <= {upto}")
            if run_id.startswith("prune-") or run_id in logged}

    def sources(self) -> list[str]:
        """Every source name the history holds."""
        if self.conn is None:
            return []
        # one seek of versions_by_path per source ("select distinct" reads every row)
        found = [n for (n,) in self.conn.execute(
            "with recursive s(name) as (select min(source) from versions union all "
            "select (select min(source) from versions where source > s.name) from s "
            "where s.name is not null) select name from s where name is not null")]
        for name in found:
            if bad_source(name):
                raise Tampered("source", name)
        return found

    def set_object(self, row_id: int, obj: bytes | str, kind: str | None = None,
                   sha256: str | None = None) -> None:
        """Point a version at another stored object (prune's rewrite of a chain)."""
        assert self.conn is not None
        self._unsettled = True
        self._changed("versions")
        if kind is None:
            self.conn.execute("update versions set object=? where id=?", (obj, row_id))
        else:
            self.conn.execute("update versions set kind=?, object=?, object_sha256=? "
                              "where id=?", (kind, obj, sha256, row_id))

    def drop_versions(self, row_ids: list[int]) -> None:
        assert self.conn is not None
        self._changed("versions")
        self.conn.executemany("delete from versions where id=?", [(i,) for i in row_ids])


    def chain_length(self, source: str, folder: bytes, name: bytes) -> int:
        """How many diffs and deltas follow a path's last whole object (baseline or
        full copy): what rebuilding its newest version applies."""
        assert self.conn is not None
        where = "source=? and dir=? and name=?"
        (count,) = self.conn.execute(
            f"select count(*) from versions where {where} and kind in {SQL_CHANGE} and id > "
            f"coalesce((select max(id) from versions where {where} and kind in {SQL_WHOLE}), 0)",
            (source, folder, name, source, folder, name)).fetchone()
        return int(count)

    def times(self, source: str, folder: bytes, name: bytes) -> set[str]:
        if self.conn is None or self._none_in("versions", source, folder):
            return set()
        return {t for (t,) in self.conn.execute(
            "select time from versions where source=? and dir=? and name=?",
            (source, folder, name))}

    def add(self, returning: bool = False, **fields: object) -> int | None:
        """A version row; its id when ``returning`` (else it is held back, written before
        the connection is next used: ``conn``)."""
        assert self._conn is not None and self.writable
        self._enter_run()
        source, folder = fields.get("source"), fields.get("dir")
        self._changed("versions", source if isinstance(source, str) else None,
                      folder if isinstance(folder, bytes) else None)
        written = self._written.get("versions")
        if written is not None:
            if isinstance(source, str) and isinstance(folder, bytes):
                written.add((source, folder))
            else:
                del self._written["versions"]     # (rows of unknown folders: ask)
        if fields.get("object") is not None or fields.get("copy") is not None:
            self._unsettled = True              # it names a stored file
        for key in ("mtime_ns", "ctime_ns", "ino"):
            if key in fields:
                fields[key] = enc(fields[key])  # type: ignore[arg-type]
        sha = fields.get("sha256")
        if self._added is not None and isinstance(sha, str):
            bit = _added_bit(sha)
            self._added[bit >> 3] |= 1 << (bit & 7)
        keys = tuple(fields)
        sql = self._inserts.get(keys)
        if sql is None:
            sql = self._inserts[keys] = (f"insert into versions ({', '.join(keys)}) "
                                         f"values ({', '.join('?' for _ in keys)})")
        self.rows_added += 1
        if not returning:
            self._hold(sql, tuple(fields.values()))
            return None
        conn = self.conn
        assert conn is not None
        cursor = conn.execute(sql, tuple(fields.values()))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def touch(self, row_id: int, where: tuple[str, bytes], st: os.stat_result,
              racy: bool = False) -> None:
        """Same bytes, mode and mtime, another ctime or inode (a twin put in place, a
        racily clean file compared again): remember them, so the file is not re-read
        next time.  What a restore gives (bytes, mode, mtime) is never changed."""
        assert self.conn is not None
        self._changed("versions", *where)          # (the row's source and folder)
        self.conn.execute("update versions set ctime_ns=?, ino=?, racy=? where id=?",
                          (enc(st.st_ctime_ns), enc(st.st_ino), int(racy) or None, row_id))

    def set_copy(self, source: str, folder: bytes, name: bytes, row_id: int,
                 copy: bytes | None) -> None:
        """``row_id`` is the path's newest content version, kept whole as ``copy``: no
        older row names a whole copy any more (those files go once this commits)."""
        assert self.conn is not None
        self._unsettled = True
        self._changed("versions", source, folder)
        self.conn.execute("update versions set copy=null where source=? and dir=? and name=? "
                          "and copy is not null and id!=?", (source, folder, name, row_id))
        self.conn.execute("update versions set copy=? where id=?", (copy, row_id))

    # -- garbage: files no row names, to be removed after the commit -------------------
    def discard(self, path: bytes) -> None:
        assert self.conn is not None
        self.conn.execute("insert or ignore into garbage values (?)", (path,))

    def has_garbage(self) -> bool:
        """Does a killed run's garbage wait to be removed? (readers too)"""
        if self.conn is None:
            return False
        try:
            return bool(self.conn.execute("select 1 from garbage limit 1").fetchall())
        except sqlite3.OperationalError:              # format 3: no such table
            return False

    def discarded(self) -> list[bytes]:
        if self.conn is None or not self.writable:
            return []
        return [p for (p,) in self.conn.execute("select path from garbage").fetchall()]

    def names(self, source: str, rel: bytes) -> bool:
        """Does a version row name ``rel`` (relative to ``source``'s history) as its
        object or whole copy?  (Each split of it into history folder and object: an
        index range each.)"""
        assert self.conn is not None
        parts = rel.split(b"/")
        for cut in range(1, len(parts)):
            store_rel, obj = b"/".join(parts[:cut]), b"/".join(parts[cut:])
            if self.conn.execute("select 1 from versions where source=? and store=? and "
                                 "(object=? or copy=?) limit 1",
                                 (source, store_rel, obj, obj)).fetchone():
                return True
        return False

    def forget_discarded(self, paths: list[bytes]) -> None:
        """They are gone from the disk: one transaction, no sync needed."""
        assert self.conn is not None
        self.begin()
        self.conn.executemany("delete from garbage where path=?", [(p,) for p in paths])
        faults.point("commit")
        self.conn.execute("commit")

    # -- runs: the order of the history ------------------------------------------------
    def _enter_run(self) -> None:
        """This run takes the next sequence number with its first write."""
        if self._registered or self.run is None:
            return
        assert self.conn is not None
        self.conn.execute("insert or ignore into runs (run_id, started) values (?,?)", self.run)
        self._registered = True

    def run_seq(self, run_id: str, started: float) -> int:
        """This run's sequence number (the run ``run_id`` is entered if none is yet):
        unique for ever, even after prune deletes rows (AUTOINCREMENT never reuses)."""
        assert self.conn is not None
        if self.run is None:
            unique, n = run_id, 2
            while self.run_taken(unique):       # a second prune in the same second
                unique, n = f"{run_id}-{n}", n + 1
            self.run = (unique, started)
        self._enter_run()
        rows = self.conn.execute("select seq from runs where run_id=?", (self.run[0],)
                                 ).fetchall()
        return int(rows[0][0])

    def holding(self, sha256: str, size: int) -> list[tuple[str, bytes]]:
        """Stored files that hold these bytes whole, newest first: (source, path relative
        to that source's history).  A renamed, moved or copied file's content is there
        already (pipeline.versioned links to it)."""
        if self._conn is None or self.cols != COLUMNS:
            return []
        if self._added is not None:
            bit = _added_bit(sha256)
            if not self._added[bit >> 3] & (1 << (bit & 7)):
                return []               # no row of this catalog has these bytes
        assert self.conn is not None    # (the rows held back written: they are asked too)
        rows = self.conn.execute(
            "select source, store, object, copy, kind from versions where sha256=? and "
            "size=? and entry='file' and (kind in ('baseline','full') or copy is not null) "
            "order by id desc limit 4", (sha256, size)).fetchall()
        # (a row whose paths lead out of the backup is no copy to share)
        return [(source, os.path.join(store, copy if copy is not None else obj))
                for source, store, obj, copy, _kind in rows
                if store is not None and (copy is not None or obj is not None)
                and not bad_source(source) and not bad_store(store)
                and not leaves(copy if copy is not None else obj, empty=False)]

    def first_seen(self, row: Row) -> Row | None:
        """The oldest version of another path with ``row``'s bytes, stored before it:
        where a renamed, moved or copied file came from."""
        rows = self._rows(f"select {self.cols} from versions where sha256=? and id<? and "
                          "entry='file' and not (source=? and dir=? and name=?) order by id "
                          "limit 1", (row.sha256, row.id, row.source, row.dir, row.name))
        return rows[0] if rows else None

    def last_run(self) -> tuple[str, float] | None:
        """The newest run in sequence (id, start time by its own clock)."""
        if self.conn is None or not self.has_runs:
            return None
        rows = self.conn.execute("select run_id, started from runs order by seq desc limit 1"
                                 ).fetchall()          # (no statement left open)
        return (rows[0][0], rows[0][1]) if rows else None

    def unlogged_runs(self) -> list[tuple[str, float]]:
        """The runs before this one not yet known to have a record in the run log:
        (run id, start), in order (normally the run before this one alone)."""
        if self.conn is None or not self.has_runs:
            return []
        current = self.run[0] if self.run is not None else None
        return [(run_id, started) for run_id, started in self.conn.execute(
            "select run_id, started from runs where logged is null order by seq").fetchall()
            if run_id != current]

    def note_logged(self, run_ids: list[str], when: float) -> None:
        """These runs have their record in the log: noted in the open transaction (this
        run's first commit commits it; lost with it, it is noted again next time)."""
        assert self.conn is not None
        self.begin()
        self.conn.executemany("update runs set logged = ? where run_id = ?",
                              [(when, r) for r in run_ids])

    def run_changes(self, run_id: str) -> tuple[int, int, int, int]:
        """What one run recorded: (new, updated, deleted) versions of files and links,
        and the mirror copies still named as its.  (Read for a run that ended before its
        run record: rare, so no index by run.)"""
        if self.conn is None:
            return 0, 0, 0, 0
        new = updated = deleted = 0
        for gone, before in self.conn.execute(
                "select v.kind = 'deleted', exists (select 1 from versions p where "
                "p.source = v.source and p.dir = v.dir and p.name = v.name and p.id < v.id) "
                "from versions v where v.run_id = ? and v.entry != 'dir'", (run_id,)):
            if gone:
                deleted += 1
            elif before:
                updated += 1
            else:
                new += 1
        (mirror,), = self.conn.execute("select count(*) from mirror where run_id = ? and "
                                       "kind != 'dir'", (run_id,)).fetchall()
        return new, updated, deleted, int(mirror)

    def run_order(self) -> list[tuple[str, float, int]]:
        """Every run in the order they ran: (run id, start by its own clock, the newest
        row id of the history as that run left it).  The state of the history as of a
        run is every row up to that id: runs never overlap (the lock), so rows are
        numbered in run order whatever the clock said."""
        if self.conn is None:
            return []
        if not self.has_runs:                # format 2 or 3, not yet upgraded
            rows = self.conn.execute("select run_id, min(recorded), max(id) from versions "
                                     "group by run_id order by min(id)").fetchall()
        else:
            # one pass over the history for every run's newest row (a subquery per run
            # would read the whole history once per run: no index is by run)
            newest = dict(self.conn.execute("select run_id, max(id) from versions "
                                            "group by run_id").fetchall())
            if self.has_pruned:          # (a run whose rows prune dropped keeps its place)
                for run_id, last in self.conn.execute("select run_id, max(id) from pruned "
                                                      "group by run_id"):
                    newest[run_id] = max(last, newest.get(run_id) or 0)
            rows = [(run_id, started, newest.get(run_id)) for run_id, started in
                    self.conn.execute("select run_id, started from runs order by seq")]
        out, upto = [], 0
        for run_id, started, last in rows:
            upto = max(upto, last or 0)
            out.append((run_id, float(started), upto))
        return out

    def run_taken(self, run_id: str) -> bool:
        """Is ``run_id`` some run's already (the runs' unique index answers)?"""
        if self.conn is None:
            return False
        sql = ("select 1 from runs where run_id=?" if self.has_runs else
               "select 1 from versions where run_id=? limit 1")
        return bool(self.conn.execute(sql, (run_id,)).fetchall())

    def store_owner(self, source: str, place: bytes) -> str | None:
        """Is ``place`` (relative to versioned_backup/<source>) some path's history folder
        ("store"), the container of some path's history folder ("container"), or
        nobody's (None)?  The catalog, never the names on disk, says."""
        if self.conn is None:
            return None
        inner = (source, place + b"/", place + b"0")
        store, container = self.conn.execute(
            "select exists(select 1 from versions where source=? and store=?) "
            "or exists(select 1 from aliases where source=? and store=?), "
            "exists(select 1 from versions where source=? and store>=? and store<?) "
            "or exists(select 1 from aliases where source=? and store>=? and store<?)",
            (source, place, source, place, *inner, *inner)).fetchone()
        return "store" if store else "container" if container else None

    def referenced(self, source: str, place: bytes) -> set[bytes]:
        """Everything the rows of one history folder name, relative to it: the objects
        and the whole copies."""
        if self.conn is None:
            return set()
        out: set[bytes] = set()
        copy = "copy" if self.cols == COLUMNS else "null"
        for obj, whole in self.conn.execute(f"select object, {copy} from versions where "
                                            "source=? and store=?", (source, place)):
            out.update(x for x in (obj, whole) if x is not None)
        return out

    def aliases_in(self, source: str, entry: str, folder: bytes) -> dict[bytes, bytes]:
        """The aliases of ``entry`` paths directly in ``folder``: name -> store."""
        if self.conn is None or "aliases" in self._written:   # (none, none written)
            return {}
        prefix = folder + b"/" if folder else b""
        rows = self.conn.execute(
            "select rel, store from aliases where source=? and entry=? and rel>=?"
            + (" and rel<?" if folder else ""),
            (source, entry, prefix, *((folder + b"0",) if folder else ())))
        found = {rel[len(prefix):]: store for rel, store in rows
                 if b"/" not in rel[len(prefix):]}
        for store_rel in found.values():
            if bad_store(store_rel):
                raise Tampered("history folder", store_rel)
        return found

    def names_objects(self, source: str) -> bool:
        """Does any row of ``source`` name a stored file (an object or a whole copy; a
        symlink's versions and deletions name none)?"""
        if self.conn is None:
            return False
        copy = "copy" if self.cols == COLUMNS else "null"
        return bool(self.conn.execute(
            f"select exists(select 1 from versions where source=? and (object is not null "
            f"or {copy} is not null))", (source,)).fetchone()[0])

    def nothing_under(self, source: str, place: bytes) -> bool:
        """Does no row and no alias of ``source`` name ``place`` (relative to its
        history) or anything below it?  (b"": the whole history of ``source``.)"""
        if self.conn is None:
            return True
        if not place:
            found = self.conn.execute(
                "select exists(select 1 from versions where source=? and store is not null) "
                "or exists(select 1 from aliases where source=?)", (source, source)).fetchone()
            return not found[0]
        # one range of the index: place itself, place/..., and (answered "no", the
        # careful way follows) the few names between them ("place.txt", "place-2")
        hi = place + b"0"
        found = self.conn.execute(
            "select exists(select 1 from versions where source=? and store>=? and store<?) "
            "or exists(select 1 from aliases where source=? and store>=? and store<?)",
            (source, place, hi, source, place, hi)).fetchone()
        return not found[0]

    def alias(self, source: str, entry: str, rel: bytes) -> bytes | None:
        if self.conn is None or "aliases" in self._written:
            return None                     # (none when opened, none written since)
        row = self.conn.execute("select store from aliases where source=? and entry=? and rel=?",
                                (source, entry, rel)).fetchone()
        if row and bad_store(row[0]):
            raise Tampered("history folder", row[0])
        return row[0] if row else None

    def set_alias(self, source: str, entry: str, rel: bytes, store: bytes) -> None:
        assert self.conn is not None
        self._written.pop("aliases", None)          # (asked from now on)
        self.conn.execute("insert or replace into aliases values (?,?,?,?)",
                          (source, entry, rel, store))

    def set_mirror(self, source: str, folder: bytes, name: bytes, st: AnyStat,
                   sha256: str | None, run_id: str, kind: str = "file",
                   racy: bool = False) -> None:
        """The mirror holds ``name`` as the source entry ``st`` was when it was copied
        (for a file, ``sha256`` is what verify checks the copy against); held back as
        ``add``'s rows are."""
        assert self._conn is not None
        self._enter_run()
        self._unsettled = True
        self._changed("mirror", source, folder)
        written = self._written.get("mirror")
        if written is not None:
            written.add((source, folder))
        self._hold(
            "insert or replace into mirror (source, dir, name, size, mtime_ns, sha256, mode, "
            "run_id, kind, ctime_ns, ino, racy) values (?,?,?,?,?,?,?,?,?,?,?,?)",
            (source, folder, name, st.st_size, enc(st.st_mtime_ns), sha256, st.st_mode,
             run_id, kind, enc(st.st_ctime_ns), enc(st.st_ino), int(racy) or None))
        self.rows_added += 1

    def touch_mirror(self, source: str, folder: bytes, name: bytes, st: os.stat_result,
                     racy: bool = False) -> None:
        """Same bytes: the mirror copy took the source's new mtime and mode."""
        assert self.conn is not None
        self._enter_run()
        self._unsettled = True
        self._changed("mirror", source, folder)
        self.conn.execute("update mirror set mtime_ns=?, mode=?, ctime_ns=?, ino=?, racy=? "
                          "where source=? and dir=? and name=?",
                          (enc(st.st_mtime_ns), st.st_mode, enc(st.st_ctime_ns),
                           enc(st.st_ino), int(racy) or None, source, folder, name))

    def drop_mirror(self, source: str, folder: bytes, name: bytes) -> None:
        """A file or folder left the mirror (a folder: everything below it too)."""
        assert self.conn is not None
        path = folder + b"/" + name if folder else name
        self._changed("mirror", source, folder, below=path)
        # three statements, each a range of the primary key (one with OR is a scan of
        # every row of the source: a deletion cost as much as the whole mirror)
        self.conn.execute("delete from mirror where source=? and dir=? and name=?",
                          (source, folder, name))
        self.conn.execute("delete from mirror where source=? and dir=?", (source, path))
        self.conn.execute("delete from mirror where source=? and dir>=? and dir<?",
                          (source, path + b"/", path + b"0"))
        self.forget_folders("snapshot", source, path)

    def mirror_rows(self) -> list[tuple[Any, ...]]:
        if self.conn is None:
            return []
        return [(src, d, n, size, dec(mtime), sha, mode) for src, d, n, size, mtime, sha, mode
                in self.conn.execute("select source, dir, name, size, mtime_ns, sha256, mode "
                                     "from mirror where kind='file'")
                if entry_fine(src, d, n, mode)]

    def all_rows(self) -> list[Row]:
        return self._rows(f"select {self.cols} from versions order by id", ())

    def histories(self) -> Iterator[list[Row]]:
        """Every path's rows, oldest first, one path at a time (never the whole
        catalog in memory: verify of a home of 240,000 files)."""
        if self.conn is None:
            return
        history: list[Row] = []
        for r in self.conn.execute(f"select {self.cols} from versions "
                                   "order by source, dir, name, id"):
            row = list(r)
            for i in _NS_FIELDS:
                row[i] = dec(row[i])
            check_row(row)
            current = Row(*row)
            if history and (history[-1].source, history[-1].dir, history[-1].name) != (
                    current.source, current.dir, current.name):
                yield history
                history = []
            history.append(current)
        if history:
            yield history

    def iter_mirror_files(self) -> Iterator[tuple[Any, ...]]:
        """``mirror_rows``, one at a time."""
        if self.conn is None:
            return
        for src, d, n, size, mtime, sha, mode in self.conn.execute(
                "select source, dir, name, size, mtime_ns, sha256, mode from mirror "
                "where kind='file'"):
            check_entry(src, d, n)
            yield src, d, n, size, dec(mtime), sha, mode

    def iter_mirror_names(self) -> Iterator[tuple[str, bytes, bytes]]:
        """(source, dir, name) of every entry of the mirror, one at a time."""
        if self.conn is None:
            return
        for src, d, n in self.conn.execute("select source, dir, name from mirror"):
            check_entry(src, d, n)
            yield src, d, n

    def mirror_entries(self) -> list[tuple[Any, ...]]:
        """Every entry of the mirror, files, links and folders (issue 15: fetch and check):
        (source, dir, name, kind, size, sha256, mode, mtime_ns)."""
        if self.conn is None:
            return []
        return [(src, d, n, kind, size, sha, mode, dec(mtime)) for src, d, n, kind, size, sha,
                mode, mtime in self.conn.execute("select source, dir, name, kind, size, sha256, "
                                                 "mode, mtime_ns from mirror")
                if entry_fine(src, d, n, mode)]


def open_catalog(meta_dir: Path, writable: bool) -> Catalog:
    """The catalog of the backup at ``meta_dir``'s parent.  A catalog that is missing or
    empty beside a backup that holds something is an error: a new, empty one would
    start a second history beside the first and hide every earlier version."""
    path = meta_dir / CATALOG
    for place, kind in ((meta_dir, stat.S_ISDIR), (path, stat.S_ISREG)):
        try:
            st = os.lstat(place)
        except FileNotFoundError:
            break
        if not kind(st.st_mode):              # sqlite would follow a link, or open a FIFO
            raise SnapbackError(f"{place} is not a {'folder' if kind is stat.S_ISDIR else 'file'}"
                                " (a link, or something else): not followed, nothing was "
                                "written")
    try:
        empty = os.lstat(path).st_size == 0
    except FileNotFoundError:
        empty = True
    if empty and _holds_a_backup(meta_dir.parent):
        state = "empty" if os.path.lexists(path) else "missing"
        raise SnapbackError(
            f"the catalog {path} is {state}, but {meta_dir.parent} holds a backup: nothing "
            "was written. Put the catalog back (from your off-site copy: snapback sync sends "
            "it), or move the backup aside and start a new one")
    if writable:
        os.makedirs(meta_dir, mode=0o700, exist_ok=True)
    return Catalog(path, writable)


def _holds_a_backup(destination: Path) -> bool:
    for area in AREAS:
        try:
            with os.scandir(destination / area) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        with os.scandir(entry.path) as inner:
                            if any(True for _ in inner):
                                return True
        except (FileNotFoundError, NotADirectoryError):
            continue
    return False
