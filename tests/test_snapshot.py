"""doit snapshot, end to end: real trees, real doit runs in a subprocess."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import sys
import time

import pytest
from support import Backup, Link, digests, lines, make_tree, tree


def seed(b: Backup) -> None:
    make_tree(b.src, {
        "notes.txt": "first line\n",
        "docs": {"report.md": "# report\n", "data.bin": bytes(range(256)) * 40},
        "app": {"templates": {"emails": {}}, "main.py": "print('hi')\n"},
        "empty": {},
        "proj": {"__pycache__": {"m.cpython-311.pyc": b"\0pyc"}, "m.py": "x = 1\n",
                 "node_modules": {"left": {"index.js": "no"}}},
        "link-in": Link("docs/report.md"),
        "link-out": Link("/etc/hostname"),
        "dangling": Link("does/not/exist"),
    })


def expected_mirror(b: Backup) -> dict:
    """The source as the mirror should hold it: ignored folders left out."""
    want = tree(b.src, with_mtime=True)
    return {k: v for k, v in want.items()
            if not k.startswith(("proj/__pycache__", "proj/node_modules"))}


def test_first_run_mirrors_files_folders_links_modes_and_mtimes(backup: Backup) -> None:
    seed(backup)
    os.chmod(backup.src / "notes.txt", 0o600)
    os.utime(backup.src / "docs" / "report.md", ns=(1_600_000_000_123_456_789,) * 2)
    result = backup.snapshot()
    assert tree(backup.mirror, with_mtime=True) == expected_mirror(backup)
    assert stat.S_IMODE(os.stat(backup.mirror / "notes.txt").st_mode) == 0o600
    assert os.readlink(backup.mirror / "link-out") == "/etc/hostname"   # never followed
    assert (backup.mirror / "app" / "templates" / "emails").is_dir()
    assert (backup.mirror / "empty").is_dir()
    assert lines(result.stdout, "new") == sorted([
        "src/notes.txt", "src/docs/report.md", "src/docs/data.bin", "src/app/main.py",
        "src/proj/m.py", "src/link-in", "src/link-out", "src/dangling",
        "src/empty/", "src/app/templates/emails/"])       # empty folders get a line too
    assert "8 new" in result.stdout and "0 failed" in result.stdout
    assert stat.S_IMODE(os.stat(backup.dest).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(backup.meta).st_mode) == 0o700


def test_no_change_run_writes_nothing_and_runs_no_action(backup: Backup) -> None:
    seed(backup)
    backup.snapshot()
    before, bytes_before = tree(backup.dest, with_mtime=True), digests(backup.dest)
    assert ".snapback/catalog.sqlite3" in bytes_before
    result = backup.snapshot()
    assert [l for l in result.stdout.splitlines() if not l.startswith("snapshot:")] == []
    assert "0 new, 0 updated, 0 deleted, 0 failed" in result.stdout
    assert tree(backup.dest, with_mtime=True) == before
    assert digests(backup.dest) == bytes_before        # no byte of the destination changed
    assert len(backup.runs()) == 1


def test_changed_file_is_copied_and_reported(backup: Backup) -> None:
    seed(backup)
    backup.snapshot()
    (backup.src / "docs" / "report.md").write_text("# report\nmore\n")
    result = backup.snapshot()
    assert lines(result.stdout, "updated") == ["src/docs/report.md"]
    assert (backup.mirror / "docs" / "report.md").read_text() == "# report\nmore\n"
    assert json.loads(backup.runs()[-1])["counts"]["updated"] == 1


def test_same_size_change_with_new_mtime_is_copied(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "aaaa"})
    backup.snapshot()
    (backup.src / "a.txt").write_text("bbbb")
    os.utime(backup.src / "a.txt", ns=(1, 2_000_000_000_000_000_000))
    backup.snapshot()
    assert (backup.mirror / "a.txt").read_text() == "bbbb"


def test_touched_unchanged_file_is_not_copied_and_not_rehashed_later(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "same bytes\n", "b.txt": "other\n"})
    backup.snapshot()
    new_mtime = time.time_ns() + 5_000_000_000
    os.utime(backup.src / "a.txt", ns=(new_mtime, new_mtime))
    inode = os.stat(backup.mirror / "a.txt").st_ino
    result = backup.snapshot()
    assert lines(result.stdout, "updated") == [] and lines(result.stdout, "new") == []
    assert os.stat(backup.mirror / "a.txt").st_ino == inode          # not rewritten
    assert os.stat(backup.mirror / "a.txt").st_mtime_ns == new_mtime  # mtime follows
    # the catalog now records the new mtime: later runs do not read the file again
    with sqlite3.connect(backup.meta / "catalog.sqlite3") as db:
        recorded = db.execute("select mtime_ns from mirror where name=?", (b"a.txt",)).fetchone()
    assert recorded == (new_mtime,)


def test_checker_mtime_copies_a_touched_file(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "same bytes\n"})
    backup.write_plan(checker="mtime")
    backup.snapshot()
    os.utime(backup.src / "a.txt", ns=(time.time_ns() + 5_000_000_000,) * 2)
    assert lines(backup.snapshot().stdout, "updated") == ["src/a.txt"]


def test_deletions_leave_the_mirror_but_empty_templates_stay(backup: Backup) -> None:
    seed(backup)
    backup.snapshot()
    (backup.src / "notes.txt").unlink()
    (backup.src / "app" / "main.py").unlink()        # app/ now holds only empty templates
    for path in sorted((backup.src / "docs").rglob("*"), reverse=True):
        path.unlink()
    (backup.src / "docs").rmdir()
    (backup.src / "link-in").unlink()
    result = backup.snapshot()
    assert lines(result.stdout, "deleted") == [
        "src/app/main.py", "src/docs/ (2 files)", "src/link-in", "src/notes.txt"]
    assert tree(backup.mirror, with_mtime=True) == expected_mirror(backup)
    assert (backup.mirror / "app" / "templates" / "emails").is_dir()
    # the cleanup sweep over the whole mirror keeps them too
    swept = backup.doit("cleanup", check=True)
    assert lines(swept.stdout, "deleted") == []
    assert (backup.mirror / "app" / "templates" / "emails").is_dir()


def test_newly_ignored_files_and_folders_leave_the_mirror(backup: Backup) -> None:
    seed(backup)
    backup.snapshot()
    backup.write_plan(ignore=["*.bin", "app/"])
    result = backup.snapshot()
    assert lines(result.stdout, "deleted") == ["src/app/ (1 file)", "src/docs/data.bin"]
    assert not (backup.mirror / "app").exists()
    assert not (backup.mirror / "docs" / "data.bin").exists()


def test_kind_changes_file_to_folder_and_back(backup: Backup) -> None:
    make_tree(backup.src, {"x": "a file", "y": {"inner.txt": "in"}})
    backup.snapshot()
    (backup.src / "x").unlink()
    make_tree(backup.src, {"x": {"now.txt": "a folder"}})
    (backup.src / "y" / "inner.txt").unlink()
    (backup.src / "y").rmdir()
    (backup.src / "y").write_text("now a file")
    backup.snapshot()
    assert tree(backup.mirror) == tree(backup.src)


def test_dry_run_changes_nothing_and_a_real_run_still_does_the_work(backup: Backup) -> None:
    seed(backup)
    backup.snapshot()
    (backup.src / "notes.txt").write_text("changed\n")
    (backup.src / "new.txt").write_text("new\n")
    (backup.src / "docs" / "data.bin").unlink()
    before, bytes_before = tree(backup.dest, with_mtime=True), digests(backup.dest)
    dry = backup.doit("snapshot", "--dry-run", check=True)
    assert "(dry run)" in dry.stdout
    assert lines(dry.stdout.replace("(dry run) ", ""), "updated") == ["src/notes.txt"]
    assert lines(dry.stdout.replace("(dry run) ", ""), "new") == ["src/new.txt"]
    assert tree(backup.dest, with_mtime=True) == before
    assert digests(backup.dest) == bytes_before        # not the catalog, not the run log
    real = backup.snapshot()
    assert lines(real.stdout, "updated") == ["src/notes.txt"]
    assert lines(real.stdout, "new") == ["src/new.txt"]
    assert lines(real.stdout, "deleted") == ["src/docs/data.bin"]
    assert tree(backup.mirror, with_mtime=True) == expected_mirror(backup)


def test_dry_run_on_a_new_destination_creates_nothing(backup: Backup) -> None:
    seed(backup)
    result = backup.doit("snapshot", "--dry-run", check=True)
    assert "(dry run) new" in result.stdout
    assert not backup.dest.exists()


def test_note_reaches_the_run_record_and_report_file(backup: Backup) -> None:
    seed(backup)
    report = backup.base / "report.json"
    backup.snapshot("--note", "before upgrade", "--report", str(report))
    record = json.loads(backup.runs()[-1])
    assert record["note"] == "before upgrade" and record["mode"] == "snapshot"
    assert record["counts"]["new"] == 8 and record["bytes"] > 10_000
    assert json.loads(report.read_text())["counts"] == record["counts"]
    # a no-change run writes no record, but --report still gets its summary
    backup.snapshot("--report", str(report))
    assert len(backup.runs()) == 1
    assert json.loads(report.read_text())["counts"]["new"] == 0


def test_quiet_prints_nothing_unless_something_failed(backup: Backup) -> None:
    seed(backup)
    for command in ("snapshot", "all", "all"):       # a first run, a change, no change
        (backup.src / "n.txt").write_text(command)
        result = backup.doit(command, "--quiet", check=True)
        assert result.stdout == result.stderr == ""
    fd = os.open(backup.src, os.O_RDONLY)             # a path too long for the system:
    try:                                              # FAILED, even for root
        for _ in range(20):
            os.mkdir(b"d" * 250, dir_fd=fd)
            new = os.open(b"d" * 250, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = new
        os.close(os.open(b"leaf.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)
    result = backup.doit("all", "--quiet")
    assert result.returncode == 1
    assert "FAILED" in result.stdout and " 1 failed" in result.stdout      # and the summary


def test_verbose_names_the_pattern_that_skipped_each_path(backup: Backup) -> None:
    seed(backup)
    make_tree(backup.src, {"venvish": {"pyvenv.cfg": "home = /usr\n", "lib": {"x.py": ""}}})
    result = backup.snapshot("--verbose")
    assert "skipped  src/proj/node_modules/: ignored by 'node_modules/' (built-in)" in result.stdout
    assert "skipped  src/proj/__pycache__/: ignored by '__pycache__/' (built-in)" in result.stdout
    assert "skipped  src/venvish/: a Python virtual environment (holds pyvenv.cfg)" in result.stdout
    assert not (backup.mirror / "venvish").exists()


def test_destination_inside_the_source_is_never_backed_up(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "a"})
    backup.dest = backup.src / "backups"
    backup.write_plan()
    backup.snapshot()
    backup.snapshot()
    assert not (backup.mirror / "backups").exists()
    assert (backup.mirror / "a.txt").read_text() == "a"


def test_non_utf8_and_odd_names_round_trip(backup: Backup) -> None:
    names = [b"caf\xe9.txt", b"-leading-dash", b"new\nline", "ünïcödé.md".encode(), b"x" * 255]
    for name in names:
        with open(os.path.join(os.fsencode(backup.src), name), "wb") as fh:
            fh.write(name)
    result = backup.snapshot()
    assert "0 failed" in result.stdout
    for name in names:
        with open(os.path.join(os.fsencode(backup.mirror), name), "rb") as fh:
            assert fh.read() == name
    assert backup.snapshot().stdout.count("\n") == 1      # and nothing changes after


def test_special_files_are_skipped_and_reported(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "a"})
    os.mkfifo(backup.src / "pipe")
    result = backup.doit("snapshot", "--verbose", check=True)
    assert "skipped  src/pipe: special file (named pipe): not backed up" in result.stdout
    assert not (backup.mirror / "pipe").exists()


def test_mirror_damage_is_repaired_when_the_folder_runs(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "a", "b.txt": "b"})
    backup.snapshot()
    (backup.mirror / "a.txt").write_text("corrupted!")
    (backup.mirror / "stray.txt").write_text("not in source")
    (backup.src / "b.txt").write_text("b2")          # makes the folder's task run
    backup.snapshot()
    assert tree(backup.mirror) == tree(backup.src)


def test_doit_keeps_no_state_of_its_own(backup: Backup) -> None:
    """doit's state is served from the catalog: nothing beside it can go stale."""
    seed(backup)
    backup.snapshot()
    backup.doit("versioned", check=True)
    assert sorted(p.name for p in backup.meta.iterdir()) == ["catalog.sqlite3", "lock",
                                                             "runs.jsonl", "tmp"]

def test_plain_output_off_a_terminal(backup: Backup) -> None:
    seed(backup)
    result = backup.snapshot("--verbose")
    assert "\x1b" not in result.stdout + result.stderr
    assert "\r" not in result.stdout


def test_terminal_gets_links_and_a_progress_bar(backup: Backup) -> None:
    import shutil
    import subprocess
    if not shutil.which("script"):
        pytest.skip("needs util-linux script for a pseudo-terminal")
    make_tree(backup.src, {f"d{i}": {f"f{j}.txt": "x" * 100 for j in range(2)} for i in range(100)})
    cmd = (f"stty cols 120 rows 40; {sys.executable} -m pipeline snapshot "
           f"config={backup.plan}")
    out = subprocess.run(["script", "-qc", cmd, "/dev/null"], capture_output=True,
                         timeout=120, env={**os.environ, "PWD": str(backup.base),
                                           "SNAPBACK_PROGRESS_AFTER": "0"}).stdout
    assert b"\x1b]8;;file://" in out                      # OSC 8 link to the stored copy
    assert b"/200 files" in out                            # the progress display: files


@pytest.mark.parametrize("second", ["snapshot", "all"])
def test_a_folder_change_after_a_first_snapshot_is_said(backup: Backup, second: str) -> None:
    """helper-68: after a first `snapshot` (the history empty, the mirror not), a run
    took the mirror for empty too and asked it nothing: a folder's new mode went
    unsaid and a folder made again was said as new."""
    make_tree(backup.src, {"a": {"b": {"f": "1\n"}}, "d1": {"e": {}}})
    os.chmod(backup.src / "a" / "b", 0o755)
    backup.doit("snapshot", check=True)
    os.chmod(backup.src / "a" / "b", 0o700)
    result = backup.doit(second)
    assert result.returncode == 0, result.stderr
    assert "updated" in result.stdout and "src/a/b/ (mode 0700)" in result.stdout, result.stdout
    assert not [line for line in result.stdout.splitlines()        # (the history's first
                if "src/d1/e/" in line and "history]" not in line], result.stdout   # is new)
