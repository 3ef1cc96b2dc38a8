"""The exit-status contract (README, Exit status): one case per test, each code exact.

0 everything done; 1 some files could not be handled or verify found damage;
2 the plan or the command line is invalid (nothing done); 75 another run holds
the lock (nothing done).  Messages for 1, 2 and 75 are one line, in snapback's
words: never a traceback, never doit's internals.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import pytest
from support import SNAPBACK, Backup, as_nobody, hold_with_stopped_run, make_tree

DOIT_INTERNALS = ("Traceback", "failed unexpectedly", "CmdOption", "UnmetDependency",
                  "ERROR:", "Error parsing", "report:", "cleanup:")


def one_line(result: subprocess.CompletedProcess) -> str:
    """The one snapback line on stderr, checked for doit internals."""
    err = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(err) == 1, result.stderr
    for word in DOIT_INTERNALS:
        assert word not in result.stderr + result.stdout, result.stderr
    assert err[0].startswith("snapback: ")
    return err[0]


@pytest.fixture
def backed_up(backup: Backup) -> Backup:
    make_tree(backup.src, {"a.txt": "a\n", "docs": {"b.txt": "b\n"}})
    backup.doit("all", check=True)
    return backup


def test_0_everything_done(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "a\n"})
    result = backup.doit("all")
    assert result.returncode == 0 and result.stderr == ""


# ---- 1: some files could not be handled, everything else was -----------------

def test_1_unreadable_file_one_line_no_task_names(nobody_backup) -> None:
    b, python = nobody_backup
    make_tree(b.src, {"ok.txt": "fine", "secret.txt": "no", "sub": {"c.txt": "c"}})
    os.chmod(b.src / "secret.txt", 0o000)
    result = as_nobody(b, python, "all")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED   [mirror+history] src/secret.txt: Permission denied" in result.stdout
    for word in DOIT_INTERNALS:
        assert word not in result.stdout + result.stderr
    assert len(result.stderr.splitlines()) <= 1
    assert (b.mirror / "sub" / "c.txt").read_text() == "c"


def test_1_unlistable_folder(nobody_backup) -> None:
    b, python = nobody_backup
    make_tree(b.src, {"private": {"d.txt": "d"}, "ok.txt": "fine"})
    os.chmod(b.src / "private", 0o000)
    result = as_nobody(b, python, "snapshot")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED   src/private/: cannot list" in result.stdout
    assert "all failed" not in result.stderr and "Traceback" not in result.stderr


def test_0_once_a_folder_can_be_searched_again(nobody_backup) -> None:
    """helper-32: a source folder that could not be searched (0600) gives its mirror
    folder that mode too; once it can be, the runs that follow open the mirror folder
    again (status 0), not fail on it forever."""
    import stat
    b, python = nobody_backup
    make_tree(b.src, {"a": {"f.txt": "1\n"}, "ok.txt": "fine"})
    assert as_nobody(b, python, "all").returncode == 0
    os.chmod(b.src / "a", 0o600)
    result = as_nobody(b, python, "all")
    assert result.returncode == 1, result.stdout + result.stderr
    assert stat.S_IMODE(os.stat(b.mirror / "a").st_mode) == 0o600
    os.chmod(b.src / "a", 0o700)
    (b.src / "a" / "f.txt").write_text("2\n")
    for _ in range(2):
        result = as_nobody(b, python, "all")
        assert result.returncode == 0, result.stdout + result.stderr
    assert (b.mirror / "a" / "f.txt").read_text() == "2\n"
    assert stat.S_IMODE(os.stat(b.mirror / "a").st_mode) == 0o700


def test_0_once_a_folder_with_subfolders_can_be_searched_again(nobody_backup) -> None:
    """helper-33: the 0600 folder holds a subfolder; the run that failed in it left
    the mirror folder at 0600 while the catalog still held the folder as in line from
    the run before, so no later run looked at it and its subfolder failed every time."""
    import stat

    from support import tree
    b, python = nobody_backup
    make_tree(b.src, {"a": {"b": {"f.txt": "x\n"}}})
    assert as_nobody(b, python, "snapshot").returncode == 0
    os.chmod(b.src / "a", 0o600)
    assert as_nobody(b, python, "snapshot").returncode == 1
    os.chmod(b.src / "a", 0o755)
    (b.src / "a" / "b" / "g.txt").write_text("y\n")
    for _ in range(2):
        result = as_nobody(b, python, "snapshot")
        assert result.returncode == 0, result.stdout + result.stderr
    assert tree(b.mirror) == tree(b.src)
    assert stat.S_IMODE(os.stat(b.mirror / "a").st_mode) == 0o755


def test_0_a_deleted_folder_whose_mirror_folder_cannot_be_searched_leaves(
        nobody_backup) -> None:
    """helper-33: removing a mirror folder enters every folder below it, whatever mode
    it took from its source (0600, 0000): the run that removes it says it once."""
    from support import tree
    b, python = nobody_backup
    make_tree(b.src, {"a": {"b": {"f.txt": "x\n", "c": {"g.txt": "g"}}, "keep.txt": "k"}})
    assert as_nobody(b, python, "snapshot").returncode == 0
    os.chmod(b.src / "a" / "b" / "c", 0o000)
    os.chmod(b.src / "a" / "b", 0o600)
    assert as_nobody(b, python, "snapshot").returncode == 1
    os.chmod(b.src / "a" / "b", 0o700)
    os.chmod(b.src / "a" / "b" / "c", 0o700)
    shutil.rmtree(b.src / "a" / "b")
    result = as_nobody(b, python, "snapshot")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deleted  src/a/b/" in result.stdout, result.stdout
    assert tree(b.mirror) == tree(b.src)


def test_1_cleanup_deletes_nothing_below_an_entry_it_cannot_examine(nobody_backup) -> None:
    """helper-34: a folder at 0600 lists its names but not what they are; the history's
    cleanup took a subfolder it could not examine as gone and recorded its files
    deleted, and `cleanup` said nothing of what it could not examine (status 0)."""
    b, python = nobody_backup
    make_tree(b.src, {"a": {"b": {"c": {"f.txt": "x\n"}, "g.txt": "g\n"}},
                      "e": {"h.txt": "h\n"}})
    assert as_nobody(b, python, "all").returncode == 0
    os.chmod(b.src / "a" / "b", 0o600)
    os.chmod(b.src / "e", 0o000)
    for _ in range(2):
        result = as_nobody(b, python, "cleanup")
        assert result.returncode == 1, result.stdout + result.stderr
        lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
        assert not [line for line in lines if line.startswith("deleted")], result.stdout
        for where in ("mirror", "history"):       # (each mode's sweep says its own)
            assert f"FAILED [{where}] src/a/b/c: cannot stat: Permission denied" in lines
            assert f"FAILED [{where}] src/a/b/g.txt: cannot stat: Permission denied" \
                in lines
            assert f"FAILED [{where}] src/e/: cannot list: Permission denied" in lines
        assert result.stderr.count("\n") <= 1, result.stderr
    os.chmod(b.src / "e", 0o755)
    os.chmod(b.src / "a" / "b", 0o755)
    result = as_nobody(b, python, "all")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [r.kind for r in b.catalog() if r.name in (b"f.txt", b"g.txt")] == \
        ["baseline", "baseline"]


def test_1_cleanup_removes_from_a_mirror_folder_it_must_open_first(nobody_backup) -> None:
    """helper-35: the mirror folder took 0600 from its source folder; `cleanup` could
    not list it, took that as nothing to remove and said nothing, while the history
    recorded the deletion."""
    import stat

    from support import tree
    b, python = nobody_backup
    make_tree(b.src, {"d": {"f.txt": "f\n", "x.txt": "x\n", "sub": {"s.txt": "s\n"}}})
    assert as_nobody(b, python, "all").returncode == 0
    os.chmod(b.src / "d", 0o600)
    assert as_nobody(b, python, "all").returncode == 1
    (b.src / "d" / "x.txt").unlink()
    result = as_nobody(b, python, "cleanup")
    assert result.returncode == 1, result.stdout + result.stderr   # (f.txt, sub: no lstat)
    lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
    assert "deleted [mirror+history] src/d/x.txt" in lines, result.stdout   # (both modes)
    assert not (b.mirror / "d" / "x.txt").exists() and (b.mirror / "d" / "f.txt").exists()
    assert stat.S_IMODE(os.stat(b.mirror / "d").st_mode) == 0o600
    result = as_nobody(b, python, "cleanup")                       # nothing more to do
    assert not [line for line in result.stdout.splitlines() if line.startswith("deleted")]
    assert stat.S_IMODE(os.stat(b.mirror / "d").st_mode) == 0o600
    os.chmod(b.src / "d", 0o755)
    assert as_nobody(b, python, "all").returncode == 0
    assert tree(b.mirror) == tree(b.src)


def test_1_path_too_long_for_the_system(backup: Backup) -> None:
    make_tree(backup.src, {"ok.txt": "fine"})
    fd = os.open(backup.src, os.O_RDONLY)
    try:
        for _ in range(20):                                  # 20 x 250 bytes > PATH_MAX
            os.mkdir(b"d" * 250, dir_fd=fd)
            new = os.open(b"d" * 250, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = new
        os.close(os.open(b"leaf.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)
    result = backup.doit("all")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "File name too long" in result.stdout
    for word in DOIT_INTERNALS:
        assert word not in result.stdout + result.stderr
    assert (backup.mirror / "ok.txt").read_text() == "fine"


def test_1_disk_full(backup: Backup, small_disk) -> None:
    backup.dest = small_disk / "dest"
    backup.write_plan()
    make_tree(backup.src, {"small.txt": "v1\n"})
    backup.doit("all", check=True)
    (backup.src / "huge.bin").write_bytes(os.urandom(2_500_000))
    result = backup.doit("all")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "No space left on device" in result.stdout + result.stderr
    for word in DOIT_INTERNALS:
        assert word not in result.stdout + result.stderr


def test_1_verify_found_damage(backed_up: Backup) -> None:
    (backed_up.mirror / "a.txt").write_text("damaged\n")
    result = backed_up.doit("verify")
    assert result.returncode == 1
    assert "1 problem" in one_line(result)


def test_1_runs_log_replaced_by_a_folder(backed_up: Backup) -> None:
    log = backed_up.meta / "runs.jsonl"
    log.unlink()
    log.mkdir()
    history = backed_up.doit("history")
    assert history.returncode == 1
    assert "cannot read the run log" in one_line(history)
    (backed_up.src / "new.txt").write_text("n\n")
    run = backed_up.doit("snapshot")
    assert run.returncode == 1
    assert "cannot add this run" in one_line(run)
    assert (backed_up.mirror / "new.txt").exists()          # the backup itself was made


def test_1_catalog_of_another_format(backed_up: Backup) -> None:
    import sqlite3
    with sqlite3.connect(backed_up.meta / "catalog.sqlite3") as db:
        db.execute("pragma user_version=99")
    (backed_up.src / "new.txt").write_text("n\n")
    modes = {p: p.lstat().st_mode for p in backed_up.dest.rglob("*")}
    for command in (["snapshot"], ["history", "src/a.txt"], ["protect"], ["unprotect"],
                    ["prune", "--keep-last", "1"], ["verify"]):
        result = backed_up.doit(*command)
        assert result.returncode == 1, (command, result.stderr)
        assert "has format 99" in one_line(result)
    assert not (backed_up.mirror / "new.txt").exists()
    # a newer snapback's backup is left as it was: not made read-only (or writable)
    assert {p: p.lstat().st_mode for p in backed_up.dest.rglob("*")} == modes


def test_0_staging_folder_replaced_by_a_file(backed_up: Backup) -> None:
    tmp = backed_up.meta / "tmp"
    if tmp.is_dir():
        os.rmdir(tmp)
    tmp.write_text("not a folder")
    (backed_up.src / "new.txt").write_text("n\n")
    result = backed_up.doit("all")
    assert result.returncode == 0, result.stderr
    assert tmp.is_dir()


def test_1_restore_into_an_unwritable_folder(nobody_backup) -> None:
    b, python = nobody_backup
    make_tree(b.src, {"a.txt": "a\n"})
    assert as_nobody(b, python, "versioned").returncode == 0
    locked = b.base / "locked"
    locked.mkdir()
    os.chmod(locked, 0o555)                        # root's, and nobody cannot write it
    result = as_nobody(b, python, "restore", "src/a.txt", "--to", str(locked / "out"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Permission denied" in one_line(result)


# ---- 2: the plan or the command line is invalid; nothing was done -------------

def test_2_invalid_plan(backup: Backup) -> None:
    backup.write_plan(bogus=1)
    result = backup.doit("snapshot")
    assert result.returncode == 2
    assert "unknown key" in result.stderr and "Traceback" not in result.stderr
    assert not backup.dest.exists()


@pytest.mark.parametrize("args, option, hint", [
    (["snapshot", "--dryrun"], "--dryrun", "did you mean --dry-run?"),
    (["all", "--note", "x", "--quite"], "--quite", "did you mean --quiet?"),
    (["restore", "--att", "2026-11-20", "src/a.txt"], "--att", "did you mean --at?"),
    (["restore", "src/a.txt", "--att", "2026-11-20"], "--att", "did you mean --at?"),
    (["prune", "--keep-lst", "3"], "--keep-lst", "did you mean --keep-last?"),
    (["verify", "--dep"], "--dep", "did you mean --deep?"),
    (["history", "--dry-run"], "--dry-run", "its options: --quiet"),
])
def test_2_unknown_option_anywhere(backed_up: Backup, args, option, hint) -> None:
    before = backed_up.runs()
    result = backed_up.doit(*args)
    assert result.returncode == 2
    line = one_line(result)
    assert f"unknown option {option} for snapback {args[0]}" in line and hint in line
    assert backed_up.runs() == before


def test_2_options_after_a_folder_task(backed_up: Backup) -> None:
    result = backed_up.doit("snapshot:src", "--dry-run")
    assert result.returncode == 2
    assert "snapback snapshot --dry-run" in one_line(result)


def test_2_unknown_command(backed_up: Backup) -> None:
    result = backed_up.doit("snapshto")
    assert result.returncode == 2
    assert "did you mean snapshot?" in one_line(result)


def test_0_report_into_a_missing_folder_makes_it(backed_up: Backup) -> None:
    (backed_up.src / "new.txt").write_text("n\n")
    report = backed_up.base / "no" / "such" / "r.json"
    result = backed_up.doit("all", "--quiet", "--report", str(report))
    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""
    assert json.loads(report.read_text())["modes"]["snapshot"]["new"] == 1
    assert (backed_up.mirror / "new.txt").exists()


@pytest.mark.parametrize("where", ["folder", "unwritable", "device", "a name ending in /"])
def test_0_a_report_that_cannot_be_written_never_costs_the_backup(backed_up: Backup,
                                                                   where: str) -> None:
    """The backup is done: exit 0 (a scheduler must not take it for a failed backup), and
    one warning line on stderr, which cron mails and the journal keeps.  A device is
    left as it is (helper-60: as root, `--report /dev/full` made /dev/full a file)."""
    (backed_up.src / "new.txt").write_text("n\n")
    report = backed_up.base / "rep"
    report.mkdir()
    if where == "unwritable":
        (report / "sub").write_text("a file where the report's folder would be\n")
        report = report / "sub" / "r.json"
    if where == "device":
        report = report / "null"
        try:
            os.mknod(report, 0o666 | stat.S_IFCHR, os.makedev(1, 3))   # /dev/null's
        except PermissionError:
            pytest.skip("mknod needs root")
    given = str(report)
    if where == "a name ending in /":        # (helper-61: a file named newdir was made;
        report = backed_up.base / "new\ndir"    # helper-62: a newline, two warning lines)
        given = f"{report}/"
    result = backed_up.doit("snapshot", "--quiet", "--report", given)
    assert result.returncode == 0
    assert result.stdout == ""
    assert one_line(result).startswith("snapback: warning: the report ")
    if where == "a name ending in /":
        assert not report.exists()
    assert (backed_up.mirror / "new.txt").exists()
    if where == "device":
        assert stat.S_ISCHR(os.lstat(report).st_mode)


def test_2_restore_to_an_existing_file(backed_up: Backup) -> None:
    result = backed_up.doit("restore", "src/a.txt", "--to", str(backed_up.plan))
    assert result.returncode == 2
    assert "is not a folder" in one_line(result)


def test_2_restore_to_empty(backed_up: Backup) -> None:
    result = backed_up.doit("restore", "src/a.txt", "--to=")
    assert result.returncode == 2
    assert "--to needs a folder" in one_line(result)


def test_2_restore_into_the_backup(backed_up: Backup) -> None:
    inside = backed_up.dest / "versioned_backup" / "out"
    result = backed_up.doit("restore", "src/a.txt", "--to", str(inside))
    assert result.returncode == 2
    assert "inside the backup" in one_line(result)
    assert not inside.exists()
    os.symlink(backed_up.dest, backed_up.base / "alias")          # another name for it
    aliased = backed_up.doit("restore", "src/a.txt", "--to", str(backed_up.base / "alias" / "x"))
    assert aliased.returncode == 2
    assert "inside the backup" in one_line(aliased)
    assert not (backed_up.dest / "x").exists()


def test_2_restore_over_an_existing_file_without_force(backed_up: Backup) -> None:
    out = backed_up.base / "out"
    make_tree(out, {"a.txt": "mine\n"})
    result = backed_up.doit("restore", "src/a.txt", "--to", str(out))
    assert result.returncode == 2
    assert "nothing was written" in one_line(result)
    assert (out / "a.txt").read_text() == "mine\n"


def test_2_unknown_time(backed_up: Backup) -> None:
    result = backed_up.doit("restore", "src/a.txt", "--at", "yesterday-ish")
    assert result.returncode == 2
    assert "cannot read the time" in one_line(result)


def test_2_path_not_in_the_backup(backed_up: Backup) -> None:
    result = backed_up.doit("history", "/nowhere/at/all")
    assert result.returncode == 2
    one_line(result)


# ---- 75: another run holds the lock; nothing was done --------------------------

@pytest.mark.parametrize("command", [["snapshot"], ["all", "--quiet"],
                                     ["restore", "src/a.txt"], ["verify"], ["prune", "--keep-last", "1"]])
def test_75_lock_held(backed_up: Backup, command) -> None:
    for i in range(200):
        (backed_up.src / f"f{i}.txt").write_text(str(i))
    proc = hold_with_stopped_run(backed_up, "all")
    try:
        result = backed_up.doit(*command)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.communicate(timeout=120)
    assert result.returncode == 75, result.stdout + result.stderr
    line = one_line(result)
    assert "another snapback run holds" in line and f"pid {proc.pid}" in line
    assert len(line) < 300
    assert result.stdout == ""
    assert proc.returncode == 0


def test_75_lock_held_writes_a_report_that_says_so(backed_up: Backup) -> None:
    """README: the report is written on every run; a run that found the lock held left
    the last run's report, which a monitor read as this run's (note 18's open list)."""
    report = backed_up.base / "reports" / "last.json"
    first = backed_up.doit("all", "--quiet", "--report", str(report))
    assert first.returncode == 0, first.stderr
    done = json.loads(report.read_text())
    for i in range(200):
        (backed_up.src / f"f{i}.txt").write_text(str(i))
    proc = hold_with_stopped_run(backed_up, "all")
    try:
        result = backed_up.doit("all", "--quiet", "--report", str(report))
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.communicate(timeout=120)
    assert result.returncode == 75, result.stdout + result.stderr
    assert result.stdout == "" and "another snapback run holds" in one_line(result)
    said = json.loads(report.read_text())
    assert said["run_id"] != done["run_id"] and said["mode"] == "all"
    assert "another snapback run holds" in said["locked"] and f"pid {proc.pid}" in said["locked"]
    assert said["counts"] == {} and said["failed"] == [] and said["in_catalog"] is False
    assert "locked" not in done
    assert all("locked" not in json.loads(line)
               for line in (backed_up.meta / "runs.jsonl").read_text().splitlines())


# ---- every command takes --quiet -----------------------------------------------

@pytest.mark.parametrize("command", [
    ["snapshot"], ["versioned"], ["all"], ["cleanup"], ["history"], ["history", "src/a.txt"],
    ["restore", "src/a.txt", "--to", "OUT"], ["diff", "src/a.txt"], ["verify"],
    ["protect"], ["unprotect"], ["explain", "SRC/a.txt"], ["prune"],
])
def test_quiet_is_accepted_by_every_command(backed_up: Backup, command) -> None:
    (backed_up.src / "a.txt").write_text("a2\n")
    backed_up.doit("versioned", check=True)
    args = [str(backed_up.base / "out") if w == "OUT" else
            str(backed_up.src / "a.txt") if w == "SRC/a.txt" else w for w in command]
    result = backed_up.doit(*args, "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""


# ---- anything else is a bug: then, and only then, a traceback ---------------------

def test_70_a_bug_is_the_only_traceback(backed_up: Backup) -> None:
    buggy = backed_up.base / "buggy.py"           # the snapback command with a broken command
    buggy.write_text("import sys\n"
                     "import pipeline.commands.history\n"
                     "pipeline.commands.history.run = lambda *a, **k: 1 / 0\n"
                     "from pipeline.__main__ import main\nsys.exit(main())\n")
    result = subprocess.run([SNAPBACK[0], str(buggy), "history", f"config={backed_up.plan}"],
                            capture_output=True, text=True, timeout=120, cwd=backed_up.base)
    assert result.returncode == 70
    assert "snapback: bug:" in result.stderr and "ZeroDivisionError" in result.stderr
    assert "Traceback" in result.stderr


def test_1_a_destination_that_cannot_be_made_is_one_line(nobody_backup) -> None:
    """helper-62: a destination in a folder the user cannot write was a PermissionError's
    traceback, status 3.  One line, status 1, nothing done."""
    import tempfile
    b, python = nobody_backup
    make_tree(b.src, {"a.txt": "a\n"})
    above = Path(tempfile.mkdtemp(prefix="snapback-root-only-"))
    try:
        os.chmod(above, 0o755)                    # root's: nobody may look, not write
        b.write_plan(destination=str(above / "dest"))
        result = as_nobody(b, python, "all")
        assert result.returncode == 1, result.stdout + result.stderr
        assert one_line(result) == (f"snapback: the destination {above / 'dest'} cannot be "
                                    "made: Permission denied; nothing was done")
        assert not (above / "dest").exists()
    finally:
        shutil.rmtree(above)
