"""`doit all` reads each file once (issue 25): the snapshot task's reading of a file
also gives the folder's versioned task its copy, which that task takes only if the
file has not changed since (its stat, ctime included) and was not written to within
the timestamps' tick."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from support import (
    Backup,
    aged,
    change_behind_stat,
    history_of,
    make_tree,
    next_second,
    rebuilt,
    strace,
)


def _opens(b: Backup, *args: str) -> dict[str, int]:
    """How many times the run opened each file of the source."""
    counts: dict[str, int] = {}
    for line in strace(b, "open,openat", *args):
        for path in (p for p in b.src.rglob("*") if p.is_file()):
            if f'"{path}"' in line and "= -1" not in line:
                counts[str(path.relative_to(b.src))] = counts.get(
                    str(path.relative_to(b.src)), 0) + 1
    return counts


def _staging(b: Backup) -> list[str]:
    tmp = b.meta / "tmp"
    return sorted(os.listdir(tmp)) if tmp.is_dir() else []


def test_all_opens_each_file_once_and_leaves_no_copy_behind(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "a\n" * 50, "d": {"b.bin": "b" * 9000, "c.txt": "c\n"}})
    aged(backup.src)
    assert _opens(backup, "all") == {"a.txt": 1, "d/b.bin": 1, "d/c.txt": 1}
    assert _staging(backup) == []
    (backup.src / "a.txt").write_text("a2\n" * 50)             # a change, aged too
    then = (backup.src / "a.txt").stat().st_mtime_ns - 30 * 10**9
    os.utime(backup.src / "a.txt", ns=(then, then))
    assert _opens(backup, "all") == {"a.txt": 1}
    assert rebuilt(backup, "a.txt") == [b"a\n" * 50, b"a2\n" * 50]
    assert backup.run("verify")[0] == 0
    assert _staging(backup) == []


def test_all_commits_once_per_folder(backup: Backup, monkeypatch: pytest.MonkeyPatch
                                     ) -> None:
    """A folder's mirror records wait for its history records: one commit, one sync,
    for both (before: one each); and by default the folders done within a second
    share one commit (a sync is a disk flush)."""
    make_tree(backup.src, {f"d{i}": {"f.txt": f"{i}\n"} for i in range(8)})
    aged(backup.src)
    monkeypatch.setenv("SNAPBACK_COMMIT_EVERY", "0")
    syncs = [line for line in strace(backup, "syncfs,sync", "all") if "sync" in line]
    assert 8 <= len(syncs) <= 8 + 2, syncs       # 8 folders with files (the run record)
    assert backup.run("verify")[0] == 0
    for i in range(8):
        (backup.src / f"d{i}" / "f.txt").write_text(f"{i} again\n")
    aged(backup.src)
    monkeypatch.delenv("SNAPBACK_COMMIT_EVERY")
    syncs = [line for line in strace(backup, "syncfs,sync", "all") if "sync" in line]
    assert 1 <= len(syncs) <= 1 + 2, syncs       # one commit (the run record)
    assert backup.run("verify")[0] == 0
    assert [len(history_of(backup, f"d{i}/f.txt")) for i in range(8)] == [2] * 8


def test_a_file_written_within_the_tick_is_read_again(
        backup: Backup, coarse_disk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file read in the tick (here: the second) it was written in may be written again
    without its stat changing: the snapshot task's reading is not handed over, the
    versioned task reads it itself; a file written ticks before is read once."""
    monkeypatch.setenv("SNAPBACK_READ_AHEAD", "0")   # the run's own readings (in-process)
    from pipeline import store
    backup.src = coarse_disk / "src"
    backup.write_plan()
    make_tree(backup.src, {"old.txt": "o\n", "new.txt": "n\n"})
    aged(backup.src)
    next_second()                         # their ctimes: a second ago, another tick
    new = os.fsencode(backup.src / "new.txt")
    real = store.copy_to_tmps
    reads: list[bytes] = []

    def reading(src: bytes, *args, **kwargs):  # type: ignore[no-untyped-def]
        if src == new and not reads.count(new):
            next_second()
            (backup.src / "new.txt").write_text("N\n")          # this very second
        reads.append(os.path.basename(src))
        return real(src, *args, **kwargs)

    monkeypatch.setattr(store, "copy_to_tmps", reading)
    code, out = backup.run("all")
    monkeypatch.undo()
    assert code == 0, out
    assert sorted(reads) == [b"new.txt", b"new.txt", b"old.txt"]
    assert rebuilt(backup, "new.txt") == [b"N\n"]
    assert _staging(backup) == []


@pytest.mark.parametrize("how", ["rewritten, its mtime set back", "replaced", "removed"])
def test_a_file_changed_between_the_two_tasks_is_recorded_as_it_is(
        backup: Backup, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """The versioned task never records the snapshot task's reading of a file that
    changed since: same size and mtime but a new ctime, a new inode, or gone."""
    from pipeline import versioned
    make_tree(backup.src, {"f.txt": "first\n", "g.txt": "g\n"})
    aged(backup.src)
    path = backup.src / "f.txt"
    before = path.stat()
    real = versioned.History.file

    def changed_first(self: versioned.History, name: str, st: os.stat_result) -> None:
        if name == "f.txt":
            change_behind_stat(path, before, how)
        real(self, name, st)

    monkeypatch.setattr(versioned.History, "file", changed_first)
    code, out = backup.run("all")
    monkeypatch.undo()
    assert code == 0, out
    assert (backup.mirror / "f.txt").read_text() == "first\n"   # as the snapshot read it
    assert _staging(backup) == []
    rows = history_of(backup, "f.txt")
    if how == "removed":
        assert rows == []                    # gone before it was recorded: nothing kept
    else:
        assert [r.sha256 for r in rows] == [hashlib.sha256(b"again\n").hexdigest()]
        assert rebuilt(backup, "f.txt") == [b"again\n"]
    assert rebuilt(backup, "g.txt") == [b"g\n"]
    code, out = backup.run("all")                               # the mirror catches up
    assert code == 0 and backup.run("verify")[0] == 0, out
    if how != "removed":
        assert (backup.mirror / "f.txt").read_text() == "again\n"


def test_a_file_the_history_ignores_is_not_copied_for_it(backup: Backup) -> None:
    backup.write_plan(versioned={"ignore": ["*.iso"]})
    make_tree(backup.src, {"disk.iso": "x" * 5000, "notes.txt": "n\n"})
    aged(backup.src)
    code, out = backup.run("all")
    assert code == 0, out
    assert [r.name for r in backup.catalog()
            if r.entry == "file"] == [b"notes.txt"]
    assert (backup.mirror / "disk.iso").exists()
    assert _staging(backup) == []


def test_a_file_written_after_the_walk_is_not_handed_over(
        backup: Backup, coarse_disk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk saw an old mtime, but the file was written just before its copy: the
    copy is of a file written within the tick, so the versioned task reads it again."""
    monkeypatch.setenv("SNAPBACK_READ_AHEAD", "0")   # the run's own readings (in-process)
    from pipeline import session, snapshot
    backup.src = coarse_disk / "src"
    backup.write_plan()
    make_tree(backup.src, {"f.txt": "old\n", "g.txt": "g\n"})
    aged(backup.src)
    next_second()
    real_file, real_hand = snapshot._Folder.file, session.Session.hand_over
    handed: list[bytes] = []

    def written_first(self: snapshot._Folder, name: str, st: os.stat_result) -> None:
        if name == "f.txt":
            next_second()
            (backup.src / "f.txt").write_text("new!\n")           # this very second
        real_file(self, name, st)

    def hand_over(self: session.Session, source: str, folder: bytes, name: bytes,
                  copied: object) -> None:
        handed.append(name)
        real_hand(self, source, folder, name, copied)  # type: ignore[arg-type]

    monkeypatch.setattr(snapshot._Folder, "file", written_first)
    monkeypatch.setattr(session.Session, "hand_over", hand_over)
    code, out = backup.run("all")
    monkeypatch.undo()
    assert code == 0, out
    assert handed == [b"g.txt"]
    assert rebuilt(backup, "f.txt") == [b"new!\n"]
    assert _staging(backup) == []
