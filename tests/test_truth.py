"""The backup, not doit's memory, decides what is stored (issue 12).

One named test per case that was seen losing data silently.  Each ends with
what a user would check: the mirror, the history (restore), ``verify --deep``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat

import pytest
from support import Backup, aged, as_nobody, at, history_of, lines, make_tree, tree


def restored(b: Backup, path: str, when: str | None = None) -> dict:
    into = b.base / "restored-check"
    shutil.rmtree(into, ignore_errors=True)
    args = ["restore", path, "--to", str(into)] + (["--at", when] if when else [])
    b.doit(*args, check=True)
    return tree(into)


def mode_of(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def assert_verified(b: Backup) -> None:
    result = b.doit("verify", "--deep")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_folder_moved_out_and_back_is_backed_up_again(backup: Backup) -> None:
    make_tree(backup.src, {"proj": {"a.txt": "a\n", "sub": {"b.txt": "b\n"}}, "x.txt": "x\n"})
    backup.doit("all", check=True)
    os.rename(backup.src / "proj", backup.base / "proj.old")
    backup.doit("all", check=True)
    assert not (backup.mirror / "proj").exists()
    os.rename(backup.base / "proj.old", backup.src / "proj")
    result = backup.doit("all", check=True)
    assert "src/proj/a.txt" in lines(result.stdout, "new")
    assert tree(backup.mirror) == tree(backup.src)
    assert history_of(backup, "proj/a.txt")[-1].kind != "deleted"
    assert restored(backup, str(backup.src / "proj")) == {
        k: v for k, v in tree(backup.src).items() if k == "proj" or k.startswith("proj/")}
    assert restored(backup, str(backup.src / "proj"))["proj/sub/b.txt"][1] == b"b\n"
    assert_verified(backup)


def test_a_deleted_folder_put_back_by_restore_is_backed_up_again(backup: Backup) -> None:
    make_tree(backup.src, {"docs": {"a.txt": "a\n", "b.txt": "b\n"}})
    at(backup, "2030-01-01T10:00:00", "all")
    shutil.rmtree(backup.src / "docs")
    at(backup, "2030-01-01T11:00:00", "all")
    backup.doit("restore", str(backup.src / "docs"), "--at", "2030-01-01T10:00",
                "--to", str(backup.src), check=True)        # keeps the old mtimes
    at(backup, "2030-01-01T12:00:00", "all")
    assert tree(backup.mirror) == tree(backup.src)
    assert [r.kind for r in history_of(backup, "docs/a.txt")][-1] != "deleted"
    assert_verified(backup)


def test_an_ignore_file_line_removed_brings_the_files_back(backup: Backup) -> None:
    """Backed up, then left out by a line of .backupignore, then the line removed: the
    folder comes back with the stat it had when it was last stored."""
    make_tree(backup.src, {"data": {"t.csv": "1,2\n", "sub": {"u.csv": "3\n"}}, "a.txt": "a"})
    backup.doit("all", check=True)
    (backup.src / ".backupignore").write_text("data/\n")
    backup.doit("all", check=True)
    assert not (backup.mirror / "data").exists()
    (backup.src / ".backupignore").write_text("# nothing left out\n")
    backup.doit("all", check=True)
    assert (backup.mirror / "data" / "sub" / "u.csv").read_text() == "3\n"
    assert history_of(backup, "data/sub/u.csv")[-1].kind != "deleted"
    assert tree(backup.mirror) == tree(backup.src)


def test_a_plan_rule_change_takes_effect_on_the_next_run(backup: Backup) -> None:
    make_tree(backup.src, {"build": {"out.o": "o", "deep": {"x.o": "x"}}, "keep.txt": "k"})
    backup.doit("all", check=True)
    backup.write_plan(ignore=["build/"])
    result = backup.doit("all", check=True)
    assert "src/build/ (2 files)" in lines(result.stdout, "deleted")
    assert not (backup.mirror / "build").exists()
    backup.write_plan(ignore=[])
    backup.doit("all", check=True)
    assert (backup.mirror / "build" / "deep" / "x.o").read_text() == "x"
    assert history_of(backup, "build/deep/x.o")[-1].kind != "deleted"
    backup.write_plan(ignore=["*.txt"])
    result = backup.doit("all", check=True)
    assert "src/keep.txt" in lines(result.stdout, "deleted")
    assert not (backup.mirror / "keep.txt").exists()


def test_keep_deleted_never_expires_a_file_that_came_back(backup: Backup) -> None:
    make_tree(backup.src, {"proj": {"a.txt": "a\n"}})
    backup.write_plan(retention={"keep_deleted": "1d"})
    at(backup, "2030-01-01T10:00:00", "all")
    os.rename(backup.src / "proj", backup.base / "away")
    at(backup, "2030-01-02T10:00:00", "all")
    os.rename(backup.base / "away", backup.src / "proj")
    at(backup, "2030-01-03T10:00:00", "all")
    at(backup, "2030-02-01T10:00:00", "prune")
    assert history_of(backup, "proj/a.txt")[-1].kind != "deleted"
    assert restored(backup, str(backup.src / "proj" / "a.txt"))["a.txt"][1] == b"a\n"


def test_a_chmod_reaches_the_mirror_the_history_and_every_restore(backup: Backup) -> None:
    make_tree(backup.src, {"secret": "s\n", "d": {"f": "f\n"}})
    os.chmod(backup.src / "secret", 0o644)
    at(backup, "2030-01-01T10:00:00", "all")
    os.chmod(backup.src / "secret", 0o600)
    os.chmod(backup.src / "d", 0o700)
    result = at(backup, "2030-01-01T11:00:00", "all")
    assert "src/secret (mode 0600)" in lines(result.stdout, "updated")
    assert mode_of(backup.mirror / "secret") == 0o600
    assert mode_of(backup.mirror / "d") == 0o700
    kinds = [r.kind for r in history_of(backup, "secret")]
    assert kinds == ["baseline", "meta"]                   # no second copy of the bytes
    assert restored(backup, str(backup.src / "secret"), "2030-01-01T10:00")["secret"][2] == 0o644
    assert restored(backup, str(backup.src / "secret"), "2030-01-01T11:00")["secret"][2] == 0o600
    assert restored(backup, str(backup.src / "secret"))["secret"] == ("file", b"s\n", 0o600)
    assert restored(backup, str(backup.src / "d"), "2030-01-01T10:00")["d"][2] == 0o755
    assert restored(backup, str(backup.src / "d"), "2030-01-01T11:00")["d"][2] == 0o700
    assert_verified(backup)
    # and nothing more happens on the next run
    result = at(backup, "2030-01-01T12:00:00", "all")
    assert lines(result.stdout, "updated") == [] and lines(result.stdout, "new") == []


def test_a_chmod_is_seen_with_checker_mtime_too(backup: Backup) -> None:
    make_tree(backup.src, {"secret": "s\n"})
    backup.write_plan(checker="mtime")
    backup.doit("all", check=True)
    os.chmod(backup.src / "secret", 0o600)
    backup.doit("all", check=True)
    assert mode_of(backup.mirror / "secret") == 0o600
    assert history_of(backup, "secret")[-1].mode & 0o777 == 0o600


def test_swapped_twins_are_seen(backup: Backup) -> None:
    """Same size, same mtime, bytes swapped (tar x, cp -p, unzip leave files so)."""
    make_tree(backup.src, {"one": "AAAA", "two": "BBBB"})
    when = os.stat(backup.src / "one").st_mtime_ns
    os.utime(backup.src / "two", ns=(when, when))
    backup.doit("all", check=True)
    os.rename(backup.src / "one", backup.src / "tmp")
    os.rename(backup.src / "two", backup.src / "one")
    os.rename(backup.src / "tmp", backup.src / "two")
    result = backup.doit("all", check=True)
    assert sorted(set(lines(result.stdout, "updated"))) == ["src/one", "src/two"]
    assert (backup.mirror / "one").read_text() == "BBBB"
    assert restored(backup, str(backup.src / "two"))["two"][1] == b"AAAA"


def test_a_same_size_rewrite_with_the_mtime_moved_back_is_seen(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "version 1\n"})
    backup.doit("all", check=True)
    before = os.stat(backup.src / "a.txt")
    (backup.src / "a.txt").write_text("version 2\n")
    os.utime(backup.src / "a.txt", ns=(before.st_atime_ns, before.st_mtime_ns))
    backup.doit("all", check=True)
    assert (backup.mirror / "a.txt").read_text() == "version 2\n"
    assert [r.kind for r in history_of(backup, "a.txt")] == ["baseline", "diff"]


def test_a_non_utf8_folder_name_does_not_stop_later_runs(backup: Backup) -> None:
    folder = os.path.join(os.fsencode(backup.src), b"caf\xe9")
    os.mkdir(folder)
    with open(os.path.join(folder, b"n\xf6te.txt"), "wb") as fh:
        fh.write(b"bytes\n")
    for _ in range(2):
        backup.doit("all", check=True)
    (backup.src / "later.txt").write_text("later\n")
    result = backup.doit("all", check=True)
    assert set(lines(result.stdout, "new")) == {"src/later.txt"}
    assert os.path.exists(os.path.join(os.fsencode(backup.mirror), b"caf\xe9", b"n\xf6te.txt"))
    assert_verified(backup)


def test_an_mtime_after_2262_is_stored_and_blocks_nothing(backup: Backup) -> None:
    make_tree(backup.src, {"d": {"future.txt": "f\n", "other.txt": "o\n"}})
    far = 10_400_000_000 * 10**9                         # 2299: past SQLite's INTEGER
    os.utime(backup.src / "d" / "future.txt", ns=(far, far))
    result = backup.doit("all", check=True)
    assert "src/d/other.txt" in lines(result.stdout, "new")
    assert os.stat(backup.mirror / "d" / "future.txt").st_mtime_ns == far
    again = backup.doit("all", check=True)                 # and it is not stored twice
    assert lines(again.stdout, "new") == [] and lines(again.stdout, "updated") == []
    assert restored(backup, str(backup.src / "d"))["d/future.txt"][1] == b"f\n"
    assert_verified(backup)


def test_a_mtime_before_1970_is_stored(backup: Backup) -> None:
    make_tree(backup.src, {"old.txt": "1960\n"})
    os.utime(backup.src / "old.txt", ns=(-300_000_000 * 10**9,) * 2)
    backup.doit("all", check=True)
    assert os.stat(backup.mirror / "old.txt").st_mtime_ns == -300_000_000 * 10**9
    assert lines(backup.doit("all", check=True).stdout, "updated") == []


@pytest.mark.parametrize("command", ["versioned", "all"])
def test_an_entry_that_cannot_be_examined_is_failed_never_deleted(nobody_backup,
                                                                 command: str) -> None:
    b, python = nobody_backup
    make_tree(b.src, {"box": {"a.txt": "a\n"}, "x.txt": "x\n"})
    b.write_plan(snapshot={"ignore": ["*.nothing"]})       # a mode view, as issue 12 saw
    assert as_nobody(b, python, command).returncode == 0
    os.chmod(b.src / "box", 0o644)                          # listable, entries not stat-able
    result = as_nobody(b, python, command)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "src/box/a.txt" in " ".join(lines(result.stdout, "FAILED"))
    assert lines(result.stdout, "deleted") == []
    rows = [r for r in b.catalog() if r.name == b"a.txt"]
    assert rows[-1].kind != "deleted"
    os.chmod(b.src / "box", 0o755)


def test_the_sweep_records_no_deletion_below_a_source_root_it_cannot_list(backup: Backup
                                                                         ) -> None:
    """The plan check refuses an unreadable source, so only a race reaches this: the
    source root lists fine when the plan is read, not when the sweep runs."""
    from pipeline import versioned
    from pipeline.plan import load
    from pipeline.scan import Folder
    from pipeline.session import Session, SweepJob
    make_tree(backup.src, {"a.txt": "a\n", "d": {"b.txt": "b\n"}})
    backup.doit("versioned", check=True)
    session = Session(load(backup.plan))
    try:
        job = SweepJob(session.plan.sources[0], (Folder("", None, error="Permission denied"),),
                       backup.versions, 1 << 20)
        # said (FAILED, status 1: helper-34), and nothing below it taken as gone
        assert versioned.sweep(job, session) is not None
    finally:
        session.release()
    assert [r.kind for r in backup.catalog() if r.kind == "deleted"] == []


def test_whatever_removes_from_the_backup_removes_what_says_it_is_stored(backup: Backup) -> None:
    """A mirror copy deleted by hand is copied again once its folder is looked at, and
    the catalog never keeps records of entries that are neither in source nor mirror."""
    make_tree(backup.src, {"d": {"a.txt": "a\n", "b.txt": "b\n"}})
    backup.snapshot()
    os.unlink(backup.mirror / "d" / "a.txt")
    (backup.src / "d" / "c.txt").write_text("c\n")          # the folder changes
    backup.snapshot()
    assert (backup.mirror / "d" / "a.txt").read_text() == "a\n"
    with sqlite3.connect(backup.meta / "catalog.sqlite3") as db:
        names = sorted(n for (n,) in db.execute("select name from mirror where dir=?", (b"d",)))
    assert names == [b"a.txt", b"b.txt", b"c.txt"]


def test_a_no_change_run_executes_no_action_and_writes_nothing(backup: Backup) -> None:
    make_tree(backup.src, {"a": {"x.txt": "x"}, "b.txt": "b", "l": {}})
    os.symlink("b.txt", backup.src / "link")
    aged(backup.src)               # (a file written just before a run is read again next run)
    backup.doit("all", check=True)
    before = tree(backup.dest, with_mtime=True)
    result = backup.doit("all", "--verbose", check=True)
    assert "0 new, 0 updated, 0 deleted, 0 failed" in result.stdout
    assert tree(backup.dest, with_mtime=True) == before


def test_a_folder_restored_at_a_time_has_that_times_mtime(backup: Backup) -> None:
    make_tree(backup.src, {"d": {"a.txt": "a\n"}})
    os.utime(backup.src / "d", ns=(1_700_000_000 * 10**9,) * 2)
    at(backup, "2030-01-01T10:00:00", "versioned")
    first = os.stat(backup.src / "d").st_mtime_ns
    (backup.src / "d" / "b.txt").write_text("b\n")          # the folder's mtime moves
    at(backup, "2030-01-01T11:00:00", "versioned")
    second = os.stat(backup.src / "d").st_mtime_ns
    assert first != second
    for when, want in (("2030-01-01T10:00", first), ("2030-01-01T11:00", second)):
        into = backup.base / f"r{want}"
        backup.doit("restore", str(backup.src / "d"), "--at", when, "--to", str(into), check=True)
        assert os.stat(into / "d").st_mtime_ns == want


def test_a_mirror_copy_removed_by_hand_is_copied_again(backup: Backup) -> None:
    """Nothing changed in the source: the mirror folder's mtime says it was touched."""
    make_tree(backup.src, {"d": {"f": "one\n", "e": {"g": "two\n"}}, "top": "t\n"})
    backup.doit("all", check=True)
    os.unlink(backup.mirror / "d" / "f")
    explained = backup.doit("explain", str(backup.src / "d" / "f"))
    assert "missing from the mirror: the next run copies it again" in explained.stdout
    assert lines(backup.doit("all", check=True).stdout, "new") == ["src/d/f"]
    shutil.rmtree(backup.mirror / "d")
    backup.doit("all", check=True)
    assert tree(backup.mirror) == tree(backup.src)
    assert_verified(backup)


def test_an_empty_catalog_left_by_a_first_run_killed_at_its_start_is_a_new_one(
        backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "a\n"})
    backup.meta.mkdir(parents=True)
    (backup.meta / "catalog.sqlite3").write_bytes(b"")
    backup.doit("snapshot", check=True)
    assert (backup.mirror / "a.txt").read_text() == "a\n"
    assert_verified(backup)


def test_a_folder_that_becomes_a_link_leaves_no_record_below_it(backup: Backup) -> None:
    make_tree(backup.src, {"a": "a\n", "kind": {"f": "f\n"}})
    backup.doit("all", check=True)
    shutil.rmtree(backup.src / "kind")
    os.symlink("a", backup.src / "kind")
    backup.doit("all", check=True)
    assert os.readlink(backup.mirror / "kind") == "a"
    assert_verified(backup)
    again = backup.doit("all", check=True)
    assert lines(again.stdout, "new") == [] and lines(again.stdout, "updated") == []


def test_twins_swapped_after_a_chmod_are_copied_in_one_process(backup: Backup) -> None:
    """Found by test_life: the bytes of a file and of its mirror copy were compared with
    the standard library's filecmp, which remembers answers by size and mtime for the
    life of the process; two files of equal size and mtime that swapped places were
    then taken for the same bytes, and the mirror kept the old content."""
    one, two = backup.src / "same1", backup.src / "same2"
    one.write_bytes(b"AAAA")
    two.write_bytes(b"BBBB")
    os.utime(two, ns=(one.stat().st_mtime_ns,) * 2)
    assert backup.run("snapshot")[0] == 0
    os.chmod(two, 0o600)                       # compared, found equal: metadata only
    assert backup.run("snapshot")[0] == 0
    os.rename(one, backup.src / "swap.tmp")
    os.rename(two, one)
    os.rename(backup.src / "swap.tmp", two)
    assert backup.run("snapshot")[0] == 0
    assert (backup.mirror / "same1").read_bytes() == b"BBBB"
    assert (backup.mirror / "same2").read_bytes() == b"AAAA"


@pytest.mark.parametrize("line", [["versioned", "cleanup"], ["snapshot", "cleanup"],
                                  ["all", "cleanup"], ["cleanup"]])
def test_cleanup_beside_another_command_sweeps_both_modes_and_never_calls_a_mirror_retired(
        backup: Backup, line: list[str]) -> None:
    """`doit versioned cleanup` used to skip the mirror's sweep, say so in nothing, and
    advise `rm -r` of the live mirror (adversary of issue 18)."""
    make_tree(backup.src, {"a.txt": "a\n", "b.txt": "b\n"})
    backup.doit("all", check=True)
    made = backup.doit("snapshot", "--dry-run", check=True)
    assert "note:" not in made.stdout
    cleanup_off = backup.dest / "system_snapshot" / "src" / "b.txt"
    backup.write_plan(snapshot={"cleanup": False})
    (backup.src / "b.txt").unlink()
    backup.doit("all", check=True)
    assert cleanup_off.exists()                       # kept while cleanup is off
    backup.write_plan()
    result = backup.doit(*line)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not cleanup_off.exists()
    assert "no longer in the plan" not in result.stdout + result.stderr
    assert tree(backup.mirror) == tree(backup.src)


@pytest.mark.parametrize("line", [["snapshot", "cleanup"], ["all", "cleanup"]])
def test_a_dry_run_with_cleanup_says_each_deletion_once(backup: Backup, line: list[str]) -> None:
    """The sweep said again what the folder task had said (adversary of issue 18), and
    the files below a folder the folder task said deleted."""
    make_tree(backup.src, {"g": "1\n", "h": "2\n", "sub": {"k": "3\n"}})
    backup.doit("all", check=True)
    (backup.src / "g").unlink()
    (backup.src / "sub" / "k").unlink()
    (backup.src / "sub").rmdir()
    dry = backup.doit(*line, "--dry-run", check=True)
    real = backup.doit(*line, check=True)
    assert [l.removeprefix("(dry run) ") for l in dry.stdout.splitlines() if "deleted " in l
            and not l.startswith(("snapshot:", "versioned:"))] == \
        [l for l in real.stdout.splitlines() if l.startswith("deleted ")]
    twice = 2 if line == ["snapshot", "cleanup"] else 1
    assert sorted(lines(real.stdout, "deleted")) == ["src/g"] * twice + \
        ["src/sub/ (1 file)"] * twice


@pytest.mark.parametrize("dry", [False, True])
def test_cleanup_says_a_vanished_folder_once_with_its_files(backup: Backup, dry: bool) -> None:
    """`doit cleanup` alone, after a folder and a file left the source: the history says
    the folder once, with its files, as the mirror does, and a dry run says and counts
    what the run does (helper-28: the folder's file was said alone, then the folder as
    "(0 files)"; a dry run said both and counted 3 deletions, the run 2)."""
    make_tree(backup.src, {"a.txt": "a\n", "y.txt": "y\n", "gone": {"x.txt": "x\n"}})
    backup.doit("all", check=True)
    (backup.src / "gone" / "x.txt").unlink()
    (backup.src / "gone").rmdir()
    (backup.src / "y.txt").unlink()
    result = backup.doit("cleanup", *(["--dry-run"] if dry else []), check=True)
    out = [line.removeprefix("(dry run) ") for line in result.stdout.splitlines()]
    # (both modes' deletions committed together: one line each, as for any change)
    assert sorted(line.split(None, 2)[1:] for line in out if line.startswith("deleted ")) == [
        ["[mirror+history]", "src/gone/ (1 file)"], ["[mirror+history]", "src/y.txt"]
    ], result.stdout
    assert any(line.startswith("versioned: 1 file, 0 new, 0 updated, 2 deleted")
               for line in out), result.stdout
