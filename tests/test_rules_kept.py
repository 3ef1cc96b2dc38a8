"""A folder that changed but holds the same names is not judged against the rules again
when a mode kept every one of its files, links and subfolders under the same rules and
no ignore file (``scan.settle``): the rules judge a path by its name and kind alone.
Anything that can change what the rules say of one of them makes the run judge the
folder as before: another rule, an ignore file added or removed above it, a name come
or gone, a kind changed."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import Backup, aged, make_tree

from pipeline.selection import Selector


def _judging(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files and links the rules judge in the runs that follow (folders aside)."""
    seen: list[str] = []
    real = Selector.ignored_by

    def spy(self: Selector, rel: str, is_dir: bool, *args: object) -> object:
        if not is_dir:
            seen.append(rel)
        return real(self, rel, is_dir, *args)
    monkeypatch.setattr(Selector, "ignored_by", spy)
    return seen


def _mirrored(b: Backup) -> set[str]:
    return {str(p.relative_to(b.mirror)) for p in b.mirror.rglob("*") if p.is_file()}


def test_an_edit_in_a_folder_kept_whole_judges_no_rule(backup: Backup,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    b = backup
    make_tree(b.src, {"d": {f"f{i}.txt": f"file {i}\n" for i in range(6)}, "top.txt": "t\n"})
    aged(b.src)
    assert b.run("all")[0] == 0
    judged = _judging(monkeypatch)
    (b.src / "d" / "f3.txt").write_text("edited\n")
    code, out = b.run("all")
    assert code == 0, out
    assert judged == []
    assert (b.mirror / "d" / "f3.txt").read_text() == "edited\n"
    # a name come: the folder is judged, and what the rules leave out stays out
    (b.src / "d" / "new.txt").write_text("new\n")
    (b.src / "d" / "scratch.swp").write_text("editor litter\n")
    code, out = b.run("all")
    assert code == 0, out
    assert "d/scratch.swp" in judged and "d/new.txt" in judged
    assert _mirrored(b) == {"top.txt", "d/new.txt", *(f"d/f{i}.txt" for i in range(6))}


def test_a_folder_with_a_file_left_out_is_judged_again(backup: Backup,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    b = backup
    make_tree(b.src, {"d": {"a.txt": "a\n", "b.swp": "litter\n"}})
    aged(b.src)
    assert b.run("all")[0] == 0
    judged = _judging(monkeypatch)
    (b.src / "d" / "a.txt").write_text("edited\n")
    assert b.run("all")[0] == 0
    assert sorted(judged) == ["d/a.txt", "d/b.swp"]
    assert _mirrored(b) == {"d/a.txt"}


@pytest.mark.parametrize("how", ["plan", "ignore file above gone", "ignore file above added"])
def test_rules_that_change_with_an_edit_take_effect(backup: Backup, how: str) -> None:
    """The edit changes the folder's signature; the rules' change must not be missed
    because the folder holds the same names as before."""
    b = backup
    make_tree(b.src, {"p": {"d": {"a.txt": "a\n", "keep.log": "log\n"}}})
    if how == "plan":
        b.write_plan()
    elif how == "ignore file above gone":
        b.write_plan(ignore=["*.log"])
        (b.src / "p" / ".backupignore").write_text("!keep.log\n")
    else:
        b.write_plan()
    aged(b.src)
    assert b.run("all")[0] == 0
    assert "p/d/keep.log" in _mirrored(b)
    if how == "plan":
        b.write_plan(ignore=["*.log"])
    elif how == "ignore file above gone":
        (b.src / "p" / ".backupignore").unlink()
    else:
        (b.src / "p" / ".backupignore").write_text("*.log\n")
    (b.src / "p" / "d" / "a.txt").write_text("edited\n")
    code, out = b.run("all")
    assert code == 0, out
    assert "p/d/keep.log" not in _mirrored(b), out
    assert (b.mirror / "p" / "d" / "a.txt").read_text() == "edited\n"


def test_a_kind_changed_under_the_same_name_is_judged(backup: Backup, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """``build/`` left out as a folder, kept as a file: a file named build that becomes
    a folder is left out, though the folder holds the same names."""
    b = backup
    b.write_plan(ignore=["build/"])
    make_tree(b.src, {"d": {"a.txt": "a\n", "build": "a file named build\n"}})
    aged(b.src)
    assert b.run("all")[0] == 0
    assert "d/build" in _mirrored(b)
    (b.src / "d" / "build").unlink()
    make_tree(b.src / "d" / "build", {"out.o": "object\n"})
    (b.src / "d" / "a.txt").write_text("edited\n")
    code, out = b.run("all")
    assert code == 0, out
    assert _mirrored(b) == {"d/a.txt"}, out


def test_a_listing_that_names_a_file_left_out_does_not_keep_it(backup: Backup) -> None:
    """A listing edited by hand to name a file the rules leave out (helper-41) leaves the
    folder judged: the file stays out, run after run."""
    import sqlite3
    import struct
    b = backup
    b.write_plan(ignore=["*.log"])
    make_tree(b.src, {"d": {"a.txt": "a\n", "b.txt": "b\n", "c.log": "log\n",
                            "sub": {"s.txt": "s\n"}}})
    aged(b.src)
    assert b.run("all")[0] == 0
    with sqlite3.connect(b.meta / "catalog.sqlite3") as db:
        for mode, listing in db.execute("select mode, listing from listings where dir=?",
                                        (b"d",)).fetchall():
            size = struct.unpack("<Q", listing[:8])[0]
            names, ints = listing[8:8 + size], listing[8 + size:]
            files, links, subdirs = names.split(b"\0\0")
            forged = b"\0\0".join((files + b"\0c.log", links, subdirs))
            db.execute("update listings set listing=? where mode=? and dir=?",
                       (struct.pack("<Q", len(forged)) + forged + ints + ints[:40], mode,
                        b"d"))
    for text in ("edited\n", "edited again\n"):
        (b.src / "d" / "a.txt").write_text(text)
        code, out = b.run("all")
        assert code == 0, out
        assert "c.log" not in out
        assert _mirrored(b) == {"d/a.txt", "d/b.txt", "d/sub/s.txt"}
