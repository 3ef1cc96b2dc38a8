"""Hostile trees against the history's layout (issue 13): nothing written outside the
destination through a link, no path's history taken for another's by its name, every
name a filesystem accepts kept, rebuilt, restored and applied by GNU patch."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from support import Backup, as_nobody, gnu_patch_chain, history_of, lines, make_tree, rebuilt, tree


def snapshot_tree(root: Path) -> dict:
    return tree(root, with_mtime=True)


def test_a_link_turned_folder_never_leads_the_history_outside(nobody_backup) -> None:
    """q -> outside is stored (its current copy is a link in the history); q then
    becomes a folder holding q/ and files: nothing may be written through that link."""
    b, python = nobody_backup
    outside = b.base / "outside"
    make_tree(outside, {"keep.txt": "keep\n"})
    os.chmod(outside, 0o777)                          # writable by nobody: only design stops it
    os.symlink(str(outside), b.src / "q")
    make_tree(b.src, {"x.txt": "x\n"})
    assert as_nobody(b, python, "all").returncode == 0
    before = snapshot_tree(outside)
    os.unlink(b.src / "q")
    make_tree(b.src, {"q": {"evil.txt": "e\n", "q": {"evil.txt": "e2\n"},
                            "q_diffs": {"x": "1\n"}}})
    for _ in range(2):
        result = as_nobody(b, python, "all")
        assert result.returncode == 0, result.stdout + result.stderr
        (b.src / "q" / "q" / "evil.txt").write_text("e3\n")
    assert snapshot_tree(outside) == before
    assert b.doit("verify", "--deep").returncode == 0
    into = b.base / "back"
    b.doit("restore", str(b.src / "q"), "--to", str(into), check=True)
    assert (into / "q" / "q" / "evil.txt").read_text() == "e3\n"
    shutil.rmtree(into)
    os.chmod(outside, 0o755)


def test_a_link_planted_in_the_history_is_never_followed(nobody_backup) -> None:
    """Someone replaces a history folder by a link to elsewhere: the run fails that
    file, writes nothing there."""
    b, python = nobody_backup
    outside = b.base / "elsewhere"
    outside.mkdir()
    os.chmod(outside, 0o777)
    make_tree(b.src, {"d": {"a.txt": "1\n"}})
    assert as_nobody(b, python, "versioned").returncode == 0
    hist = b.versions / "d"
    shutil.rmtree(hist)
    os.symlink(str(outside), hist)
    (b.src / "d" / "a.txt").write_text("2\n")
    (b.src / "d" / "new.txt").write_text("n\n")
    result = as_nobody(b, python, "versioned")
    assert result.returncode == 1, result.stdout + result.stderr       # that folder failed
    assert "FAILED   src/d/: is not a folder" in result.stdout and "not followed" in result.stdout
    assert list(outside.iterdir()) == []


def test_things_planted_where_new_histories_go(nobody_backup) -> None:
    """Issue 25: a new file's history folder is made at once when the catalog names
    nothing in its folder's place (a new folder, a first backup: no query per file).
    Planted before the new folder n/ is backed up: a link to elsewhere where a.txt's
    history folder goes, a file where b.txt's goes, a link where the folder e's
    histories go.  Nothing is written through a link; each file gets a history
    folder of its own (a.txt's: ``a.txt~2``, e's files: in ``e~2``) and restores."""
    b, python = nobody_backup
    outside = b.base / "elsewhere"
    outside.mkdir()
    os.chmod(outside, 0o777)
    make_tree(b.src, {"first.txt": "1\n"})
    assert as_nobody(b, python, "versioned").returncode == 0
    make_tree(b.src, {"n": {"a.txt": "a\n", "b.txt": "b\n", "c.txt": "c\n",
                            "d": {"x.txt": "x\n"}, "e": {"y.txt": "y\n"}}})
    planted = b.versions / "n"
    planted.mkdir()
    os.chmod(planted, 0o777)
    os.symlink(str(outside), planted / "a.txt")
    (planted / "b.txt").write_text("planted\n")
    os.symlink(str(outside), planted / "e")
    result = as_nobody(b, python, "versioned")
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(outside.iterdir()) == []
    assert (planted / "b.txt").read_text() == "planted\n"
    stores = {r.name: r.store for r in b.catalog() if r.kind == "baseline"}
    assert stores[b"a.txt"] == b"n/a.txt~2" and stores[b"b.txt"] == b"n/b.txt~2"
    assert stores[b"c.txt"] == b"n/c.txt" and stores[b"x.txt"] == b"n/d/x.txt"
    assert stores[b"y.txt"] == b"n/e~2/y.txt"
    into = b.base / "back"
    b.doit("restore", str(b.src / "n"), "--to", str(into), check=True)
    assert [(into / "n" / f).read_text() for f in ("a.txt", "b.txt", "c.txt", "d/x.txt",
                                                   "e/y.txt")] == ["a\n", "b\n", "c\n", "x\n",
                                                                   "y\n"]
    assert b.doit("verify", "--deep").returncode == 0


def test_a_link_planted_in_the_mirror_is_never_followed(nobody_backup) -> None:
    b, python = nobody_backup
    outside = b.base / "elsewhere"
    outside.mkdir()
    os.chmod(outside, 0o777)
    make_tree(b.src, {"d": {"e": {"a.txt": "1\n"}, "x.txt": "x\n"}})
    assert as_nobody(b, python, "snapshot").returncode == 0
    shutil.rmtree(b.mirror / "d")
    os.symlink(str(outside), b.mirror / "d")
    (outside / "e").mkdir()
    os.chmod(outside / "e", 0o777)
    (b.src / "d" / "e" / "a.txt").write_text("2\n")        # only d/e changes
    first = as_nobody(b, python, "snapshot")
    assert first.returncode == 0, first.stdout + first.stderr         # the link is replaced
    assert lines(first.stdout, "new") == ["src/d/e/a.txt", "src/d/x.txt"]
    assert list((outside / "e").iterdir()) == []
    result = as_nobody(b, python, "snapshot")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not os.path.islink(b.mirror / "d")
    assert tree(b.mirror) == tree(b.src)


def test_a_file_and_a_folder_of_one_name_keep_both_histories(backup: Backup) -> None:
    """File x, then folder x whose children are named like x's own history files."""
    make_tree(backup.src, {"x": "v1\n"})
    backup.doit("versioned", check=True)
    (backup.src / "x").write_text("v2\n")
    backup.doit("versioned", check=True)
    (backup.src / "x").unlink()
    day = history_of(backup, "x")[0].time[:10]
    make_tree(backup.src, {"x": {"x_diffs": "c1\n", "x_versions": "c2\n",
                                 f"x-baseline-{day}": "c3\n", "x": "c4\n"}})
    backup.doit("versioned", check=True)
    for name in ("x_diffs", "x_versions", f"x-baseline-{day}", "x"):
        (backup.src / "x" / name).write_text(name + " changed\n")
    backup.doit("versioned", check=True)
    backup.doit("prune", "--keep-last", "5", check=True)
    assert rebuilt(backup, "x")[:2] == [b"v1\n", b"v2\n"]
    for name, first in (("x_diffs", b"c1\n"), ("x_versions", b"c2\n"),
                        (f"x-baseline-{day}", b"c3\n"), ("x", b"c4\n")):
        assert rebuilt(backup, f"x/{name}") == [first, (name + " changed\n").encode()]
    assert backup.doit("verify", "--deep").returncode == 0
    # and back to a file: all three histories survive
    shutil.rmtree(backup.src / "x")
    (backup.src / "x").write_text("v3\n")
    backup.doit("versioned", check=True)
    assert [v for v in rebuilt(backup, "x") if v is not None] == [b"v1\n", b"v2\n", b"v3\n"]
    assert backup.doit("verify", "--deep").returncode == 0


HOSTILE = [
    "new\nline.txt",
    "a\n@@ -1 +1 @@\n-x\n+y",
    "back\\slash.txt",
    "quo\"te's.txt",
    "tab\there.txt",
    "-leading-dash.txt",
    "--- a.txt",
    "+++ b.txt",
    "spaces  at end  ",
    os.fsdecode(b"latin1-\xe9\xff.txt"),
    "\u00e9t\u00e9 \U0001f600.txt",
    "x" * 240 + ".txt",
    "y" * 255,
    "z" * 200 + ".d" * 27,
]


@pytest.mark.parametrize("name", HOSTILE, ids=lambda n: repr(n)[:30])
def test_every_name_a_filesystem_accepts(backup: Backup, tmp_path: Path, name: str) -> None:
    folder = backup.src / "d"
    folder.mkdir()
    path = folder / name
    versions = [b"one\n", b"one\ntwo\n", b"one\r\ntwo\r\n", b"\x00binary\x01", b"last"]
    for data in versions:
        path.write_bytes(data)
        result = backup.doit("all")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "FAILED" not in result.stdout
    assert (backup.mirror / "d" / name).read_bytes() == b"last"
    assert rebuilt(backup, f"d/{name}") == versions
    text_chain = gnu_patch_chain(backup, f"d/{name}", tmp_path)
    assert text_chain[:3] == versions[:3]
    assert backup.doit("verify", "--deep").returncode == 0
    into = tmp_path / "restored"
    backup.doit("restore", str(path), "--at", history_of(backup, f"d/{name}")[1].time,
                "--to", str(into), check=True)
    assert (into / name).read_bytes() == versions[1]
    again = backup.doit("all", check=True)
    assert lines(again.stdout, "updated") == [] and lines(again.stdout, "new") == []
