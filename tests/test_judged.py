"""A folder whose entries are the ones the backup records, with some files changed (an
edit, a chmod, a touch): doit's checker is given those files, and the folder's tasks
judge those alone; the others match their records by the one rule (pipeline.change),
as every file of an unchanged folder does.  What the run records is what a run that
judged every file records."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

import pytest
from support import Backup, aged, history_of, make_tree, tree

from pipeline import snapshot, versioned
from pipeline.catalog import Catalog


def _judged(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """The files each mode's tasks judge in the runs that follow (name -> set)."""
    seen: dict[str, set[str]] = {"snapshot": set(), "versioned": set()}
    mirror_file, history_file = snapshot._Folder.file, versioned.History.file

    def mirror(self: snapshot._Folder, name: str, st: os.stat_result) -> None:
        seen["snapshot"].add(f"{self.job.folder.rel}/{name}")
        mirror_file(self, name, st)

    def history(self: versioned.History, name: str, st: os.stat_result) -> None:
        seen["versioned"].add(f"{os.fsdecode(self.rel)}/{name}")
        history_file(self, name, st)
    monkeypatch.setattr(snapshot._Folder, "file", mirror)
    monkeypatch.setattr(versioned.History, "file", history)
    return seen


def _whole_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The reads of a whole folder's (or source's) records in the runs that follow."""
    calls: list[str] = []

    def spy(name: str) -> Any:
        real = getattr(Catalog, name)

        def read(self: Catalog, *args: Any, **kwargs: Any) -> Any:
            names = args[2] if name == "latest_in" and len(args) > 2 else kwargs.get("names")
            if names is None or len(names) > 16:
                calls.append(f"{name}{args[:3]}")
            return real(self, *args, **kwargs)
        return read
    for name in ("records", "records_in", "mirror_in", "latest_in"):
        monkeypatch.setattr(Catalog, name, spy(name))
    return calls


def test_a_folder_in_line_but_for_some_files_judges_those(backup: Backup,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    make_tree(backup.src, {"d": {f"f{i}.txt": f"file {i}\n" for i in range(8)},
                           "e": {"g.txt": "g\n"}})
    aged(backup.src)
    code, out = backup.run("all")
    assert code == 0, out
    seen = _judged(monkeypatch)
    whole = _whole_reads(monkeypatch)
    d = backup.src / "d"
    (d / "f1.txt").write_text("file 1, edited\n")         # an edit
    os.chmod(d / "f2.txt", 0o600)                          # a chmod: same bytes
    os.utime(d / "f3.txt", ns=(10**18, 10**18))            # a touch: same bytes
    aged(d / "f1.txt", seconds=30)
    code, out = backup.run("all")
    assert code == 0, out
    changed = {"d/f1.txt", "d/f2.txt", "d/f3.txt"}
    assert seen == {"snapshot": changed, "versioned": changed}
    assert whole == [], "the folder's listing says which files changed: no record of the " \
        "others is read"
    assert tree(backup.mirror, with_mtime=True) == tree(backup.src, with_mtime=True)
    kinds = {rel: [r.kind for r in history_of(backup, rel)] for rel in
             ("d/f0.txt", "d/f1.txt", "d/f2.txt", "d/f3.txt")}
    assert kinds == {"d/f0.txt": ["baseline"], "d/f1.txt": ["baseline", "diff"],
                     "d/f2.txt": ["baseline", "meta"], "d/f3.txt": ["baseline", "meta"]}
    # nothing left to judge: the next run passes every folder by at the walk
    seen["snapshot"].clear()
    seen["versioned"].clear()
    code, out = backup.run("all")
    assert code == 0, out
    assert seen == {"snapshot": set(), "versioned": set()}


def test_a_folder_with_an_entry_come_or_gone_judges_every_file(
        backup: Backup, monkeypatch: pytest.MonkeyPatch) -> None:
    make_tree(backup.src, {"d": {f"f{i}.txt": f"file {i}\n" for i in range(4)}})
    aged(backup.src)
    code, out = backup.run("all")
    assert code == 0, out
    seen = _judged(monkeypatch)
    (backup.src / "d" / "f0.txt").unlink()
    (backup.src / "d" / "f1.txt").write_text("edited\n")
    aged(backup.src / "d" / "f1.txt", seconds=30)
    code, out = backup.run("all")
    assert code == 0, out
    every = {"d/f1.txt", "d/f2.txt", "d/f3.txt"}
    assert seen == {"snapshot": every, "versioned": every}
    assert tree(backup.mirror, with_mtime=True) == tree(backup.src, with_mtime=True)
    assert [r.kind for r in history_of(backup, "d/f0.txt")] == ["baseline", "deleted"]


@pytest.mark.parametrize("damage", ["marshal header of 2**31 items", "length past the end",
                                    "empty", "another folder's"])
def test_a_listing_damaged_by_hand_is_not_trusted(backup: Backup, damage: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A listing that is not the folder's (bytes damaged, one copied from another folder)
    leaves the folder judged by its records: the run completes, nothing is skipped, and
    nothing in it asks for memory by a length the listing holds (helper-38: a header of
    2**31 items made every later run fail with MemoryError, or the kernel kill it)."""
    make_tree(backup.src, {"d": {f"f{i}.txt": f"file {i}\n" for i in range(4)},
                           "e": {f"g{i}.txt": f"other {i}\n" for i in range(4)}})
    aged(backup.src)
    code, out = backup.run("all")
    assert code == 0, out
    bad = {"marshal header of 2**31 items": b"(\xff\xff\xff\x7f",
           "length past the end": b"\xff" * 8 + b"f0.txt", "empty": b""}.get(damage)
    with sqlite3.connect(backup.meta / "catalog.sqlite3") as db:
        if bad is None:
            db.execute("update listings set listing=(select listing from listings as o "
                       "where o.mode=listings.mode and o.dir=?) where dir=?", (b"e", b"d"))
        else:
            db.execute("update listings set listing=? where dir=?", (bad, b"d"))
        assert db.execute("select count(*) from listings where dir=?", (b"d",)).fetchone() \
            == (2,)
    seen = _judged(monkeypatch)
    whole = _whole_reads(monkeypatch)
    (backup.src / "d" / "f1.txt").write_text("file 1, edited\n")
    aged(backup.src / "d" / "f1.txt", seconds=30)
    code, out = backup.run("all")
    assert code == 0, out
    # the folder's records read, and by them the edited file judged
    assert whole and seen == {"snapshot": {"d/f1.txt"}, "versioned": {"d/f1.txt"}}
    assert tree(backup.mirror, with_mtime=True) == tree(backup.src, with_mtime=True)
    assert [r.kind for r in history_of(backup, "d/f1.txt")] == ["baseline", "diff"]
