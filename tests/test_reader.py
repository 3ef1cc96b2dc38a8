"""A second process reads the files a run will copy, ahead of its tasks (pipeline.reader).

The tasks take its copies only if the file is still as it was read; nothing of it
outlives the run; the counts, records and fault points are the run's own.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from support import Backup, aged, change_behind_stat, history_of, make_tree, rebuilt

MODES = ["snapshot", "versioned", "all"]


def _staging(b: Backup) -> list[str]:
    tmp = b.meta / "tmp"
    return sorted(os.listdir(tmp)) if tmp.is_dir() else []


def _run_reading(backup: Backup, monkeypatch: pytest.MonkeyPatch,
                 *args: str) -> tuple[int, str, dict[str, set[str]]]:
    """A run whose every reading of a source file is logged with the reading process
    (the child is forked from this process: it inherits the patch): its status, its
    output and, per file, who read it ("run", "child")."""
    from pipeline import store
    log = backup.base / "reads.log"
    real = store.copy_to_tmps

    def logged(src: bytes, *more, **kwargs):  # type: ignore[no-untyped-def]
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()} {os.fsdecode(src)}\n")
        return real(src, *more, **kwargs)

    monkeypatch.setattr(store, "copy_to_tmps", logged)
    try:
        code, out = backup.run(*args)
    finally:
        monkeypatch.setattr(store, "copy_to_tmps", real)
    found: dict[str, set[str]] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        pid, name = line.split(" ", 1)
        found.setdefault(name, set()).add("run" if int(pid) == os.getpid() else "child")
    return code, out, found


@pytest.mark.parametrize("mode", MODES)
def test_the_files_are_read_in_a_second_process_and_nothing_of_it_is_left(
        backup: Backup, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    tree = {f"d{d}": {f"f{i}.txt": f"{d} {i}\n" * (i + 1) for i in range(5)}
            for d in range(3)}
    make_tree(backup.src, {**tree, "top.bin": "x" * 70_000})
    aged(backup.src)
    code, out, readers = _run_reading(backup, monkeypatch, mode)
    assert code == 0, out
    assert len(readers) == 16
    assert {n: w for n, w in readers.items() if w != {"child"}} == {}   # each read once
    assert _staging(backup) == []
    if mode != "versioned":
        assert (backup.mirror / "d2" / "f4.txt").read_text() == "2 4\n" * 5
    if mode != "snapshot":
        assert rebuilt(backup, "d1/f3.txt") == [b"1 3\n" * 4]
        assert rebuilt(backup, "top.bin") == [b"x" * 70_000]
    assert backup.run("verify", "--deep")[0] == 0
    assert "16 files, 16 new, 0 updated, 0 deleted, 0 failed" in out, out


def test_all_after_a_first_snapshot_reads_the_history_s_files_ahead_too(
        backup: Backup, monkeypatch: pytest.MonkeyPatch) -> None:
    # the mirror in line, the history empty: every file is the versioned tasks' to read,
    # and one folder's snapshot task copies a changed file for both modes
    make_tree(backup.src, {f"d{d}": {f"f{i}.txt": f"{d} {i}\n" for i in range(4)}
                           for d in range(3)})
    aged(backup.src)
    code, out = backup.run("snapshot")
    assert code == 0, out
    (backup.src / "d1" / "f0.txt").write_text("changed\n")
    os.utime(backup.src / "d1" / "f0.txt", (1e9, 1e9))
    code, out, readers = _run_reading(backup, monkeypatch, "all")
    assert code == 0, out
    assert len(readers) == 12
    assert {n: w for n, w in readers.items() if w != {"child"}} == {}   # each read once
    assert _staging(backup) == []
    assert backup.run("verify", "--deep")[0] == 0
    assert rebuilt(backup, "d1/f0.txt") == [b"changed\n"]
    assert (backup.mirror / "d1" / "f0.txt").read_text() == "changed\n"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("how", ["rewritten, its mtime set back", "replaced", "removed"])
def test_a_file_changed_after_it_was_read_ahead_is_recorded_as_it_is(
        backup: Backup, monkeypatch: pytest.MonkeyPatch, mode: str, how: str) -> None:
    """The child reads the file, then it changes (same size and mtime: a new ctime, or
    a new inode, or gone) before the task comes to it: the task reads it itself."""
    from pipeline import store
    make_tree(backup.src, {"f.txt": "first\n", "g.txt": "g\n"})
    aged(backup.src)
    path = backup.src / "f.txt"
    before = path.stat()
    real = store.copy_to_tmps
    run = os.getpid()

    def then_changed(src: bytes, *args, **kwargs):  # type: ignore[no-untyped-def]
        copied = real(src, *args, **kwargs)
        if os.getpid() != run and src == os.fsencode(path):
            (backup.base / "changed").touch()
            change_behind_stat(path, before, how)
        return copied

    monkeypatch.setattr(store, "copy_to_tmps", then_changed)
    code, out = backup.run(mode)
    monkeypatch.undo()
    assert code == 0, out
    assert (backup.base / "changed").exists()          # read ahead, then changed
    assert _staging(backup) == []
    if mode != "versioned":
        mirrored = backup.mirror / "f.txt"
        assert (mirrored.read_text() if how != "removed" else mirrored.exists()) == \
            ("again\n" if how != "removed" else False)
    if mode != "snapshot":
        rows = history_of(backup, "f.txt")
        if how == "removed":
            assert rows == []
        else:
            assert [r.sha256 for r in rows] == [hashlib.sha256(b"again\n").hexdigest()]
        assert rebuilt(backup, "g.txt") == [b"g\n"]
    assert backup.run("verify", "--deep")[0] == 0


def test_nothing_is_read_ahead_on_a_nearly_full_disk(
        backup: Backup, small_disk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its last bytes go to the copies the run places (reader.KEEP_FREE)."""
    backup.dest = small_disk / "dest"
    backup.write_plan()
    make_tree(backup.src, {f"f{i}.txt": f"{i}\n" for i in range(6)})
    aged(backup.src)
    code, out, readers = _run_reading(backup, monkeypatch, "all")
    assert code == 0, out
    assert set().union(*readers.values()) == {"run"}


def test_off_when_asked(backup: Backup, monkeypatch: pytest.MonkeyPatch) -> None:
    make_tree(backup.src, {f"f{i}.txt": f"{i}\n" for i in range(6)})
    aged(backup.src)
    monkeypatch.setenv("SNAPBACK_READ_AHEAD", "0")
    code, out, readers = _run_reading(backup, monkeypatch, "versioned")
    assert code == 0, out
    assert set().union(*readers.values()) == {"run"}


def test_a_killed_run_takes_its_reader_with_it(backup: Backup) -> None:
    """SIGKILL at a rename: no process of the run is left (it would hold the lock's
    file open and write into the staging folder), the next run completes."""
    make_tree(backup.src, {f"d{d}": {f"f{i}.txt": f"{d}{i}\n" for i in range(20)}
                           for d in range(20)})
    aged(backup.src)
    killed = backup.doit("all", env={"SNAPBACK_FAULT": "rename:3"})
    assert killed.returncode == -9
    deadline = time.monotonic() + 5                    # (SIGKILL is delivered at once)
    while _stray(backup) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _stray(backup) == []
    code, out = backup.run("all")
    assert code == 0, out
    assert _staging(backup) == []
    assert backup.run("verify", "--deep")[0] == 0
    assert rebuilt(backup, "d19/f19.txt") == [b"1919\n"]


def _stray(b: Backup) -> list[str]:
    return [pid for pid in os.listdir("/proc") if pid.isdigit() and str(b.plan) in _cmdline(pid)]


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_two_commands_on_one_line(backup: Backup) -> None:
    """`doit snapshot versioned`: the second command's tasks are made after the reader
    started; they read their files themselves."""
    make_tree(backup.src, {"a": {f"f{i}.txt": f"{i}\n" for i in range(3)},
                           "b": {f"g{i}.txt": f"{i}\n" for i in range(3)}})
    aged(backup.src)
    code, out = backup.run("snapshot", "versioned")
    assert code == 0, out
    assert "versioned: 6 files, 6 new" in out, out
    assert rebuilt(backup, "b/g2.txt") == [b"2\n"]
    assert (backup.mirror / "a" / "f1.txt").read_text() == "1\n"
    assert _staging(backup) == []
    assert backup.run("verify", "--deep")[0] == 0


def test_not_on_one_core(backup: Backup, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run pinned to one CPU (taskset, a container's cpuset) reads its files itself."""
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity here")
    make_tree(backup.src, {f"f{i}.txt": f"{i}\n" for i in range(6)})
    aged(backup.src)
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        code, out, readers = _run_reading(backup, monkeypatch, "versioned")
    finally:
        os.sched_setaffinity(0, cpus)
    assert code == 0, out
    assert set().union(*readers.values()) == {"run"}


@pytest.mark.parametrize("mode", MODES)
def test_a_big_folder_comes_a_chunk_at_a_time(
        backup: Backup, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """A folder is sent in chunks (a task waits for one, and the staging folder holds a
    few, never a whole folder of photos); every file is still read once, by the child."""
    from pipeline import reader
    monkeypatch.setattr(reader, "CHUNK_FILES", 3)
    monkeypatch.setattr(reader, "AHEAD_CHUNKS", 2)
    make_tree(backup.src, {"big": {f"p{i:02}.jpg": f"{i}" * (100 + i) for i in range(11)},
                           "small": {"s.txt": "s\n"}})
    aged(backup.src)
    code, out, readers = _run_reading(backup, monkeypatch, mode)
    assert code == 0, out
    assert len(readers) == 12
    assert {n: w for n, w in readers.items() if w != {"child"}} == {}
    assert _staging(backup) == []
    assert backup.run("verify", "--deep")[0] == 0
    if mode != "snapshot":
        assert rebuilt(backup, "big/p10.jpg") == [b"10" * 110]


def test_a_run_of_one_named_folder_reads_no_folder_planned_before_it(
        backup: Backup, monkeypatch: pytest.MonkeyPatch) -> None:
    """`doit snapshot:src/z` runs one folder task of a first backup: the child reads
    that folder's files, not those of the folders planned before it (on a home, the
    whole tree read into the staging folder and thrown away before the task moves)."""
    make_tree(backup.src, {d: {f"f{i}.txt": f"{d}{i}\n" for i in range(4)}
                           for d in ("a", "m", "z")})
    aged(backup.src)
    code, out, readers = _run_reading(backup, monkeypatch, "snapshot:src/z")
    assert code == 0, out
    assert {Path(name).parent.name for name in readers} == {"z"}
    assert (backup.mirror / "z" / "f3.txt").read_text() == "z3\n"
    assert not (backup.mirror / "m").exists()
    assert _staging(backup) == []


def test_named_folders_out_of_the_planned_order(backup: Backup) -> None:
    """`doit snapshot:src/z snapshot:src/a`: each task still gets its own files."""
    make_tree(backup.src, {d: {f"f{i}.txt": f"{d}{i}\n" for i in range(4)}
                           for d in ("a", "m", "z")})
    aged(backup.src)
    code, out = backup.run("snapshot:src/z", "snapshot:src/a")
    assert code == 0, out
    assert (backup.mirror / "z" / "f3.txt").read_text() == "z3\n"
    assert (backup.mirror / "a" / "f0.txt").read_text() == "a0\n"
    assert not (backup.mirror / "m").exists()
    assert _staging(backup) == []


def test_a_mirror_on_a_mount_of_its_own(backup: Backup) -> None:
    """system_snapshot/ a mount of its own (a btrfs subvolume, a bind mount, another
    disk): a copy made in the staging folder cannot be renamed into it (EXDEV); the
    task reads its files itself, as it does without the reader (was: every file read
    ahead FAILED, "Invalid cross-device link")."""
    import subprocess
    make_tree(backup.src, {d: {f"f{i}.txt": f"{d}{i}\n" for i in range(4)}
                           for d in ("a", "b")})
    aged(backup.src)
    elsewhere = backup.base / "elsewhere"
    elsewhere.mkdir()
    backup.mirror.parent.mkdir(parents=True)
    mounted = subprocess.run(["mount", "--bind", str(elsewhere), str(backup.mirror.parent)],
                             capture_output=True)
    if mounted.returncode != 0:                     # probing the machine, not snapback
        pytest.skip(f"cannot bind-mount here: {mounted.stderr.decode().strip()}")
    try:
        code, out = backup.run("snapshot")
        assert code == 0, out
        assert "8 files, 8 new, 0 updated, 0 deleted, 0 failed" in out, out
        assert (backup.mirror / "b" / "f3.txt").read_text() == "b3\n"
        assert _staging(backup) == []
    finally:
        subprocess.run(["umount", str(backup.mirror.parent)], check=False)


@pytest.mark.parametrize("mode", MODES)
def test_a_copy_gone_from_the_staging_folder_is_read_again(
        backup: Backup, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """The child's copy is gone when the task comes to it (the staging folder emptied
    or replaced under the run): the task reads the file itself; the file is not taken
    for one deleted since the walk (was: no line, not counted, exit 0, not backed up)."""
    from pipeline import store
    make_tree(backup.src, {"f.txt": "first\n", "g.txt": "g\n"})
    aged(backup.src)
    real = store.copy_to_tmps
    run = os.getpid()

    def then_gone(src: bytes, *args, **kwargs):  # type: ignore[no-untyped-def]
        copied = real(src, *args, **kwargs)
        if os.getpid() != run:
            for tmp in copied.tmps:
                os.unlink(tmp)
        return copied

    monkeypatch.setattr(store, "copy_to_tmps", then_gone)
    code, out = backup.run(mode)
    monkeypatch.undo()
    assert code == 0, out
    assert "2 files, 2 new, 0 updated, 0 deleted, 0 failed" in out, out
    if mode != "versioned":
        assert (backup.mirror / "f.txt").read_text() == "first\n"
    if mode != "snapshot":
        assert rebuilt(backup, "f.txt") == [b"first\n"]
    assert _staging(backup) == []


def test_a_staging_folder_replaced_by_a_file_under_the_run(
        backup: Backup, monkeypatch: pytest.MonkeyPatch) -> None:
    """The staging folder replaced by a file after the child read a file: the copy to
    rename is not there (ENOTDIR, not ENOENT); the task reads the file itself, as it did
    when it looked for the copy first (was: FAILED "Not a directory", exit 1)."""
    import shutil

    from pipeline import store
    make_tree(backup.src, {"f.txt": "first\n", "g.txt": "g\n", "h.txt": "h\n"})
    aged(backup.src)
    real = store.copy_to_tmps
    run = os.getpid()

    def then_a_file(src: bytes, *args, **kwargs):  # type: ignore[no-untyped-def]
        copied = real(src, *args, **kwargs)
        staging = os.path.dirname(copied.tmps[0])
        if os.getpid() != run and os.path.isdir(staging):
            shutil.rmtree(staging)
            with open(staging, "w"):
                pass
        return copied

    monkeypatch.setattr(store, "copy_to_tmps", then_a_file)
    code, out = backup.run("snapshot")
    monkeypatch.undo()
    assert code == 0, out
    assert "3 files, 3 new, 0 updated, 0 deleted, 0 failed" in out, out
    assert (backup.mirror / "f.txt").read_text() == "first\n"
    assert backup.run("verify", "--deep")[0] == 0
    assert _staging(backup) == []


@pytest.mark.parametrize("mode", ["versioned", "all"])
def test_a_staging_folder_removed_under_the_run_is_no_file_deleted_since_the_walk(
        backup: Backup, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """The staging folder removed under a run that reads its files itself (one core, or
    no reader): a copy into it fails with ENOENT, which is not the file leaving the
    source.  The file is copied or FAILED, never passed over (was: "3 files, 0 new,
    0 failed", exit 0, nothing backed up, and the folder recorded in line: the next
    run backed up nothing either)."""
    from pipeline import store
    monkeypatch.setenv("SNAPBACK_READ_AHEAD", "0")
    make_tree(backup.src, {"d": {"f.txt": "first\n", "g.txt": "g\n", "h.txt": "h\n"}})
    aged(backup.src)
    real = store.copy_to_tmps
    staging = os.fsencode(backup.meta / "tmp")

    def then_gone(src: bytes, folders, *args, **kwargs):  # type: ignore[no-untyped-def]
        if staging in folders and os.path.isdir(staging):
            import shutil
            shutil.rmtree(staging)
        return real(src, folders, *args, **kwargs)

    monkeypatch.setattr(store, "copy_to_tmps", then_gone)
    code, out = backup.run(mode)
    monkeypatch.undo()
    assert code == 1, out
    assert out.count("3 files, 0 new, 0 updated, 0 deleted, 3 failed") == \
        (2 if mode == "all" else 1), out
    assert "Traceback" not in out
    code, out = backup.run(mode)
    assert code == 0, out
    assert out.count("3 files, 3 new, 0 updated, 0 deleted, 0 failed") == \
        (2 if mode == "all" else 1), out
    if mode == "all":
        assert (backup.mirror / "d" / "f.txt").read_text() == "first\n"
    assert rebuilt(backup, "d/f.txt") == [b"first\n"]
    assert backup.run("verify", "--deep")[0] == 0
    assert _staging(backup) == []
