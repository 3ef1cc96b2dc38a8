"""protect / unprotect, and backup runs on a protected backup, as an unprivileged user."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest
from support import Backup, as_nobody, make_tree, tree


@pytest.fixture
def nb(nobody_backup):
    return nobody_backup


def run(b: Backup, python: str, *args: str) -> subprocess.CompletedProcess:
    result = as_nobody(b, python, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def writable(b: Backup) -> list[str]:
    """Everything in the mirror and the history that still has a write bit."""
    out = []
    for area in ("system_snapshot", "versioned_backup"):
        for dirpath, dirnames, filenames in os.walk(b.dest / area):
            for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
                st = os.lstat(name)
                if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o222:
                    out.append(name)
    return out


def ctimes(root: Path) -> dict[str, int]:
    return {p: os.lstat(p).st_ctime_ns for p in map(str, root.rglob("*"))}


def test_protected_backup_is_read_only_and_runs_still_update_it(nb) -> None:
    b, python = nb
    make_tree(b.src, {"a.txt": "a\n", "secret.txt": "s\n", "docs": {"b.md": "b\n"}})
    os.chmod(b.src / "secret.txt", 0o600)
    run(b, python, "all")
    run(b, python, "protect")
    assert writable(b) == []
    assert stat.S_IMODE(os.stat(b.mirror / "a.txt").st_mode) == 0o444
    assert stat.S_IMODE(os.stat(b.mirror / "secret.txt").st_mode) == 0o400   # stays private
    assert stat.S_IMODE(os.stat(b.mirror / "docs").st_mode) == 0o555
    assert stat.S_IMODE(os.stat(b.dest).st_mode) == 0o700

    # a no-change run touches no permission
    before = ctimes(b.dest / "system_snapshot") | ctimes(b.dest / "versioned_backup")
    run(b, python, "all")
    assert ctimes(b.dest / "system_snapshot") | ctimes(b.dest / "versioned_backup") == before

    # changes still get in, and leave everything read-only
    (b.src / "a.txt").write_text("a\nchanged\n")
    (b.src / "docs" / "b.md").unlink()
    make_tree(b.src, {"docs": {"new": {"c.txt": "c\n"}}})
    run(b, python, "all")
    assert (b.mirror / "a.txt").read_text() == "a\nchanged\n"
    assert not (b.mirror / "docs" / "b.md").exists()
    assert (b.mirror / "docs" / "new" / "c.txt").read_text() == "c\n"
    assert len(list((b.versions / "a.txt" / "a.txt_diffs").iterdir())) == 1
    assert writable(b) == []
    run(b, python, "verify", "--deep")

    run(b, python, "unprotect")
    assert stat.S_IMODE(os.stat(b.mirror / "a.txt").st_mode) & 0o200
    assert stat.S_IMODE(os.stat(b.mirror / "docs").st_mode) & 0o200


def test_protect_true_in_the_plan_protects_after_each_run(nb) -> None:
    b, python = nb
    b.write_plan(protect=True)
    make_tree(b.src, {"a.txt": "a\n", "d": {"b.txt": "b\n"}})
    run(b, python, "all")
    assert writable(b) == []
    (b.src / "d" / "b.txt").write_text("b2\n")
    run(b, python, "all")
    assert writable(b) == []
    assert tree(b.mirror) .keys() == tree(b.src).keys()


def test_protect_that_cannot_record_itself_changes_nothing(nb) -> None:
    """protect writes its marker (``.snapback/protected``) before it changes a mode: a
    ``.snapback`` folder the user cannot write to is one line and status 1, and every
    mode as it was, not a backup made read-only that no run knows is protected
    (helper-26)."""
    b, python = nb
    make_tree(b.src, {"a.txt": "a\n", "docs": {"b.md": "b\n"}})
    run(b, python, "all")
    meta = b.dest / ".snapback"
    os.chmod(meta, 0o555)
    try:
        before = {p: os.lstat(p).st_mode for p in map(str, b.dest.rglob("*"))}
        result = as_nobody(b, python, "protect")
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1, \
            result.stderr
        assert "protected" in result.stderr, result.stderr    # what could not be written
        assert {p: os.lstat(p).st_mode for p in map(str, b.dest.rglob("*"))} == before
    finally:
        os.chmod(meta, 0o700)
    run(b, python, "protect")
    assert writable(b) == []
    os.chmod(meta, 0o555)
    try:                                   # unprotect the same: nothing changed, one line
        before = {p: os.lstat(p).st_mode for p in map(str, b.dest.rglob("*"))}
        result = as_nobody(b, python, "unprotect")
        assert result.returncode == 1, result.stdout + result.stderr
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert "protected" in result.stderr, result.stderr
        assert {p: os.lstat(p).st_mode for p in map(str, b.dest.rglob("*"))} == before
    finally:
        os.chmod(meta, 0o700)
    run(b, python, "unprotect")
    assert (b.mirror / "a.txt").stat().st_mode & 0o200


def test_a_deleted_symlink_in_a_protected_backup_is_recorded(backup: Backup) -> None:
    """helper-34: with protect: true, a deleted symlink (a file's, or one in a deleted
    folder) made the history fail on every later run: its deletion looked for a history
    folder that a link never has."""
    backup.write_plan(protect=True)
    make_tree(backup.src, {"a": {"f.txt": "x\n"}, "d": {"g.txt": "g\n"}})
    os.symlink("f.txt", backup.src / "a" / "l")
    os.symlink("g.txt", backup.src / "d" / "m")
    code, out = backup.run("all")
    assert code == 0, out
    (backup.src / "a" / "l").unlink()
    for name in ("m", "g.txt"):
        (backup.src / "d" / name).unlink()
    (backup.src / "d").rmdir()
    code, out = backup.run("all")
    assert code == 0, out
    said = {tuple(line.split()[:3]) for line in out.splitlines()}
    assert ("deleted", "[mirror+history]", "src/a/l") in said, out
    assert ("deleted", "[mirror+history]", "src/d/") in said, out
    code, out = backup.run("all")
    assert code == 0 and out.count("0 new, 0 updated, 0 deleted, 0 failed") == 2, out
    assert [r.kind for r in backup.catalog() if r.name == b"l"] == ["link", "deleted"]


def test_a_folder_whose_records_the_catalog_refused_is_read_only_after_the_run(
        backup: Backup) -> None:
    """helper-51: with protect: true, a snapshot task that failed after it had made its
    mirror folder writable (the catalog refused the folder's records: here a trigger
    added by hand, as a full disk would) left that folder writable for good, since
    later runs find it in line and never touch it.  The run's end makes read-only
    what its tasks could not."""
    backup.write_plan(protect=True)
    make_tree(backup.src, {"a": {"f.txt": "x\n"}, "b": {"g.txt": "g\n"}})
    code, out = backup.run("all")
    assert code == 0 and writable(backup) == [], out
    (backup.src / "a" / "f.txt").write_text("x2\n")
    (backup.src / "a" / "new.txt").write_text("n\n")
    db = sqlite3.connect(backup.meta / "catalog.sqlite3")
    db.execute("create trigger refuse before insert on folders when new.mode='snapshot' "
               "and new.dir=x'61' begin select raise(abort, 'refused'); end")
    db.commit()
    db.close()
    code, out = backup.run("all")
    assert code == 1 and "FAILED" in out and "refused" in out, out
    assert writable(backup) == [], out


def _killed_with_folders_open(backup: Backup, every: str = "0") -> None:
    """Changes in two folders, and a run killed at its second commit (with a commit a
    second, its only one): folders it made writable stay so, and its flag stays."""
    (backup.src / "a" / "f.txt").write_text("x2\n")
    (backup.src / "c").mkdir()
    (backup.src / "c" / "c.txt").write_text("c\n")
    killed = backup.doit("all", env={"SNAPBACK_FAULT": "commit:2" if every == "0" else
                                     "commit:1", "SNAPBACK_COMMIT_EVERY": every})
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert writable(backup) != []


@pytest.mark.parametrize("every", ["0", "1"], ids=["a commit per folder", "a commit a second"])
def test_a_killed_protected_run_leaves_nothing_writable_after_the_next(backup: Backup,
                                                                         every: str) -> None:
    """helper-52: a protected run killed at its commit left the folders it had made
    writable so for good (later runs find them in line and never open them), and a
    subfolder its parent's task made stayed writable when its own task never ran (the
    run interrupted, or only the parent's task asked for).  A killed run leaves a flag
    on disk (``.snapback/opening``), and the next backup run protects the whole backup
    again, whatever took the lock in between; a new subfolder is read-only again with
    its parent's task."""
    backup.write_plan(protect=True)
    make_tree(backup.src, {"a": {"f.txt": "x\n", "sub": {"g.txt": "g\n"}}, "b": {"h": "h\n"}})
    code, out = backup.run("all")
    assert code == 0 and writable(backup) == [], out
    (backup.src / "a" / "new.txt").write_text("n\n")
    _killed_with_folders_open(backup, every)
    # helper-53: the run that takes the lock next may be a verify, or one folder's task
    assert backup.doit("verify", "--deep").returncode == 0
    assert backup.doit("snapshot:src/b").returncode == 0
    assert writable(backup) == [], "one folder's task protects the whole backup again"
    killed = backup.doit("all", env={"SNAPBACK_FAULT": "commit:1",
                                     "SNAPBACK_COMMIT_EVERY": every})
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert backup.doit("verify").returncode == 0
    code, out = backup.run("all")
    assert code == 0, out
    assert writable(backup) == [], out
    assert not (backup.meta / "opening").exists()
    (backup.src / "d").mkdir()
    (backup.src / "d" / "d.txt").write_text("d\n")
    stopped = backup.doit("snapshot:src")                   # the root's task alone
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert writable(backup) == [], stopped.stdout


@pytest.mark.parametrize("fault", ["commit:2:enospc", "fsync:2:enospc", "commit:2"])
def test_a_protected_run_that_failed_its_commit_is_completed_by_the_next(
        nb, monkeypatch: pytest.MonkeyPatch, fault: str) -> None:
    """helper-54: as a user the permission bits bind (root is above them), a run whose
    commit failed (a full disk, a kill) left objects no row names in the read-only
    ``_diffs/`` folders of a protected backup; the next run's sweep of them was refused
    ("Permission denied") on every run after, and those files' changes were never
    recorded.  The sweep opens a folder before it removes anything from it."""
    b, python = nb
    make_tree(b.src, {"a": {f"f{i}.txt": f"line {i}\n" for i in range(1, 6)},
                      "b": {f"g{i}.txt": f"x{i}\n" for i in range(1, 4)}})
    run(b, python, "all")
    run(b, python, "protect")
    for folder, name in [("a", "f1.txt"), ("a", "f2.txt"), ("b", "g1.txt"), ("b", "g2.txt")]:
        with (b.src / folder / name).open("a") as fh:
            fh.write("more\n")
    monkeypatch.setenv("SNAPBACK_FAULT", fault)
    monkeypatch.setenv("SNAPBACK_COMMIT_EVERY", "0")     # (the second folder's commit)
    failed = as_nobody(b, python, "all")
    assert failed.returncode in (1, -9), failed.stdout + failed.stderr
    monkeypatch.delenv("SNAPBACK_FAULT")
    done = run(b, python, "all")
    assert "FAILED" not in done.stdout + done.stderr
    assert writable(b) == [], done.stdout
    verified = as_nobody(b, python, "verify", "--deep")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    restored = b.base / "restored"
    got = as_nobody(b, python, "restore", str(b.src), "--to", str(restored))
    assert got.returncode == 0, got.stdout + got.stderr
    assert tree(restored) == tree(b.src), got.stdout


@pytest.mark.parametrize("stand_in", ["dangling link", "link to a missing file", "folder"])
def test_the_opening_flag_is_never_followed_and_always_taken_down(
        backup: Backup, tmp_path: Path, stand_in: str) -> None:
    """helper-54: a link in place of ``.snapback/opening`` after a killed run was
    followed (the flag made outside the backup, or not at all: then the backup was not
    protected again, without a word); a folder in its place stayed for good.  Whatever
    stands there says a run may have left folders writable, and the flag replaces it."""
    backup.write_plan(protect=True)
    make_tree(backup.src, {"a": {"f.txt": "x\n"}, "b": {"h": "h\n"}})
    code, out = backup.run("all")
    assert code == 0 and writable(backup) == [], out
    _killed_with_folders_open(backup)
    flag = backup.meta / "opening"
    flag.unlink()
    outside = tmp_path / "outside"
    outside.mkdir()
    if stand_in == "dangling link":
        flag.symlink_to(tmp_path / "nowhere" / "x")
    elif stand_in == "link to a missing file":
        flag.symlink_to(outside / "flag")
    else:
        (flag / "inner").mkdir(parents=True)
    code, out = backup.run("all")
    assert code == 0, out
    assert writable(backup) == [], out
    assert not os.path.lexists(flag), out
    assert list(outside.iterdir()) == [], "nothing made outside the backup"


def test_a_recreated_tree_in_a_protected_backup_is_no_change(backup: Backup) -> None:
    """helper-54: the same files made again (``cp -a``: same bytes, modes and mtimes,
    new inodes) were each "updated (mode 0644)" in a protected mirror, whose copies have
    no write bits; a mode is a change against the source's record."""
    backup.write_plan(protect=True)
    make_tree(backup.src, {"a.txt": "a\n", "d": {"b.txt": "b\n"}})
    code, out = backup.run("all")
    assert code == 0, out
    copy = backup.src.with_name("src2")
    shutil.copytree(backup.src, copy)           # (copy2: modes and mtimes kept)
    shutil.rmtree(backup.src)
    copy.rename(backup.src)
    code, out = backup.run("all")
    assert code == 0, out
    assert [line for line in out.splitlines() if line.startswith(("updated", "new"))] == [], out
    os.chmod(backup.src / "a.txt", 0o600)       # a real new mode still is one
    code, out = backup.run("all")
    assert code == 0 and "mode 0600" in out, out
    assert writable(backup) == []


def test_a_folder_in_the_flags_place_is_moved_aside_never_entered(
        nb, monkeypatch: pytest.MonkeyPatch) -> None:
    """helper-55, helper-56: a folder in the flag's place holding a read-only folder
    could not be removed by its owner (every run then protected the whole backup again,
    without a word); one too deep crashed every run (RecursionError), and one holding a
    mount point had the removal reach outside the backup.  A folder there is never
    entered: an empty one is removed, any other moved aside in .snapback, and said."""
    b, python = nb
    b.write_plan(protect=True)
    make_tree(b.src, {"a": {"f.txt": "x\n"}})
    run(b, python, "all")
    try:
        _move_flag_folders_aside(b, python)
    finally:                                      # (too deep for the fixture's rmtree)
        for left in b.meta.glob("opening*"):
            subprocess.run(["rm", "-rf", str(left)], check=True)


def _move_flag_folders_aside(b: Backup, python: str) -> None:
    flag = b.meta / "opening"
    for number, mode in enumerate((0o555, 0o000), start=1):
        (flag / "sub").mkdir(parents=True)
        (flag / "sub" / "f").write_text("x\n")
        if number == 2:                           # deeper than Python's recursion limit
            fd = os.open(flag, os.O_RDONLY)
            for _ in range(1200):
                os.mkdir("d", dir_fd=fd)
                inner = os.open("d", os.O_RDONLY, dir_fd=fd)
                os.close(fd)
                fd = inner
            os.close(fd)
        os.chmod(flag / "sub", mode)
        os.chmod(flag, mode)
        for path in (flag, flag / "sub"):
            os.lchown(path, 65534, 65534)
        (b.src / "a" / "f.txt").write_text(f"x{mode}\n")
        done = run(b, python, "all")
        out = done.stdout + done.stderr
        assert not os.path.lexists(flag), out
        aside = b.meta / f"opening.{number}"
        assert os.path.isdir(aside) and f"moved to {aside}" in out, out
        assert "Traceback" not in out and writable(b) == []
    flag.mkdir()                                  # an empty one: removed, nothing said
    (b.src / "a" / "f.txt").write_text("x3\n")
    done = run(b, python, "all")
    assert not os.path.lexists(flag) and "moved" not in done.stdout + done.stderr
