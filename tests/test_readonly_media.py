"""A backup that cannot be written here: read-only media, or a disk the kernel remounted
read-only after errors (ext4's errors=remount-ro, the day a disk starts dying).  Every
recovery command works on it; a backup run says so in one line, status 1, and writes
nothing.  The read-only view is a bind mount of the destination (skips where mounting
is not allowed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from support import Backup, digest, hold_with_stopped_run, make_tree, tree


@pytest.fixture
def read_only(tmp_path: Path):
    """A function that makes a folder read-only where it is, or a read-only view of
    another (a read-only bind mount); unmounted at the end."""
    mounted: list[Path] = []

    def make(path: Path, of: Path | None = None) -> None:
        """``path`` becomes a read-only view of ``of`` (default: of itself)."""
        for cmd in (["mount", "--bind", str(of or path), str(path)],
                    ["mount", "-o", "remount,ro,bind", str(path)]):
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:                     # probing mount, not snapback
                if mounted or cmd[1] == "-o":
                    subprocess.run(["umount", str(path)], check=False)
                pytest.skip(f"cannot bind-mount read-only here: {result.stderr.strip()}")
            if cmd[1] == "--bind":
                mounted.append(path)
    yield make
    for path in reversed(mounted):
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=False)


def _backed_up(b: Backup) -> dict:
    make_tree(b.src, {"notes.txt": "one\n", "docs": {"a.md": "alpha\n", "b.bin": b"\0\1"}})
    assert b.run("all")[0] == 0
    (b.src / "notes.txt").write_text("two\n")
    assert b.run("all")[0] == 0
    return tree(b.src)


def test_every_recovery_command_reads_a_backup_on_read_only_media(backup: Backup, read_only,
                                                                   tmp_path: Path):
    b = backup
    before = _backed_up(b)
    first = b.runs()[0]
    read_only(b.dest)
    out_dir = tmp_path / "back"
    code, out = b.run("restore", str(b.src), "--to", str(out_dir))
    assert code == 0, out
    assert tree(out_dir) == before
    code, out = b.run("restore", str(b.src / "notes.txt"), "--at", json.loads(first)["run_id"],
                      "--to", str(tmp_path / "old"))
    assert code == 0, out
    assert (tmp_path / "old" / "notes.txt").read_text() == "one\n"
    for args in (("verify", "--deep"), ("history",), ("history", str(b.src / "notes.txt")),
                 ("diff", str(b.src / "notes.txt"))):
        code, out = b.run(*args)
        assert code == 0, (args, out)
        assert "lock" not in out, (args, out)
    remote = tmp_path / "remote"                 # off-site from the read-only disk
    b.write_plan(remote={"target": str(remote)})
    code, out = b.run("sync")
    assert code == 0, out
    assert digest(remote / ".snapback" / "catalog.sqlite3") == \
        digest(b.meta / "catalog.sqlite3")


def test_a_backup_run_on_read_only_media_is_one_line_and_status_1(backup: Backup, read_only):
    b = backup
    _backed_up(b)
    (b.src / "notes.txt").write_text("three\n")
    read_only(b.dest)
    code, out = b.run("all")
    assert code == 1, out
    assert out.strip().splitlines() == [
        f"snapback: cannot use the lock {b.meta / 'lock'}: Read-only file system "
        "(the backup cannot be written here)"], out
    # and once it can be written again, the run completes
    subprocess.run(["umount", str(b.dest)], check=True)
    assert b.run("all")[0] == 0
    assert (b.mirror / "notes.txt").read_text() == "three\n"


def test_a_reader_through_a_read_only_view_is_75_while_a_run_writes(
        backup: Backup, read_only, tmp_path: Path):
    """The read-only view and a writable mount of one backup share the lock file: a run
    writing through the writable one holds the lock, and a reader through the read-only
    view gets status 75 (it takes the lock shared), not a catalog changing under it."""
    b = backup
    _backed_up(b)
    view = tmp_path / "view"
    view.mkdir()
    read_only(view, b.dest)
    (b.src / "notes.txt").write_text("four\n")
    writer = hold_with_stopped_run(b, "all")
    try:
        reader = Backup(b.base, b.src, view, tmp_path / "view.yaml")
        reader.write_plan()
        code, out = reader.run("verify")
        assert code == 75, out
        assert "another snapback run holds" in out
    finally:
        os.kill(writer.pid, signal.SIGCONT)
        writer.wait(timeout=120)
    assert writer.returncode == 0
    code, out = reader.run("verify")
    assert code == 0, out



@pytest.mark.parametrize("reader", ["snapback", "an older reader"])
def test_a_killed_run_then_a_read_then_read_only_media(backup: Backup, read_only, tmp_path: Path,
                                                     reader: str) -> None:
    """A run killed with its last commits in the catalog's journal (WAL), then a read on
    the writable disk, then the disk read-only (helper-41): a reader that replayed the
    journal leaves the catalog in rollback mode, as a run does; one that left it in WAL
    mode without its side files (an older snapback) is read as it is."""
    b = backup
    before = _backed_up(b)
    (b.src / "notes.txt").write_text("three\n")
    make_tree(b.src, {"more": {f"m{i}.bin": bytes([i]) * 64 for i in range(30)}})
    killed = b.doit("all", env={"SNAPBACK_FAULT": "commit:2"})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert (b.meta / "catalog.sqlite3-wal").exists()
    if reader == "snapback":
        code, out = b.run("history")
        assert code == 0, out
    else:
        import sqlite3
        db = sqlite3.connect(b.meta / "catalog.sqlite3")
        db.execute("select count(*) from versions").fetchone()
        db.close()
    assert not (b.meta / "catalog.sqlite3-wal").exists()
    read_only(b.dest)
    for args in (("history",), ("verify",), ("history", str(b.src / "notes.txt"))):
        code, out = b.run(*args)
        assert code == 0, (args, out)
    code, out = b.run("restore", str(b.src / "docs"), "--to", str(tmp_path / "docs"))
    assert code == 0, out
    assert tree(tmp_path / "docs") == {k: v for k, v in before.items() if k.startswith("docs")}


def test_a_journal_with_commits_but_no_index_on_read_only_media_says_what_to_do(
        backup: Backup, read_only, tmp_path: Path) -> None:
    """A run killed with commits in the journal, the journal's index (-shm) lost (a copy
    that left it out), then read-only media: SQLite cannot read the journal there, and
    the catalog without it would miss those commits.  One line says why and what to do
    (helper-42: "unable to open database file"); a writable copy reads it all."""
    b = backup
    _backed_up(b)
    make_tree(b.src, {"more": {f"m{i}.bin": bytes([i]) * 64 for i in range(30)}})
    killed = b.doit("all", env={"SNAPBACK_FAULT": "commit:2"})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert (b.meta / "catalog.sqlite3-wal").stat().st_size > 0
    (b.meta / "catalog.sqlite3-shm").unlink()
    read_only(b.dest)
    result = b.doit("history", str(b.src / "notes.txt"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == (
        f"snapback: the catalog {b.meta / 'catalog.sqlite3'} has commits in its journal "
        "(catalog.sqlite3-wal, left by a run that was stopped) that cannot be read where "
        "nothing can be written: copy the backup folder to writable storage (cp -a) and "
        "run this there\n")
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(b.dest), str(copy)], check=True)
    b.write_plan(destination=str(copy))
    found = b.doit("history", str(b.src / "notes.txt"))
    assert found.returncode == 0, found.stderr
    assert len([line for line in found.stdout.splitlines() if "baseline" in line
                or "diff" in line]) == 2, found.stdout


def test_a_lock_released_on_a_disk_gone_read_only(tmp_path: Path) -> None:
    """The disk remounted read-only under a run (ext4's errors=remount-ro, forced here
    through the kernel's trigger_fs_error): its lock is released without a traceback
    (helper-41: exit status 3 at the very end of such a run)."""
    import shutil

    from pipeline.lock import Lock
    if not shutil.which("mkfs.ext4"):
        pytest.skip("needs mkfs.ext4")
    image, disk = tmp_path / "disk.img", tmp_path / "disk"
    disk.mkdir()
    with open(image, "wb") as fh:
        fh.truncate(16 << 20)
    subprocess.run(["mkfs.ext4", "-q", str(image)], check=True, capture_output=True)
    if subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(image), str(disk)],
                      capture_output=True).returncode != 0:      # probing the machine
        pytest.skip("cannot mount a loop filesystem here")
    opened: list[Lock] = []
    try:
        device = subprocess.run(["findmnt", "-no", "SOURCE", str(disk)], capture_output=True,
                                text=True).stdout.strip().rpartition("/")[2]
        trigger = Path(f"/sys/fs/ext4/{device}/trigger_fs_error")
        if not trigger.exists():
            pytest.skip("this kernel cannot force an ext4 error")
        lock = Lock(disk / "dest" / ".snapback" / "lock")
        opened.append(lock)
        lock.acquire(note="test")
        trigger.write_text("1\n")                 # the kernel remounts it read-only
        with pytest.raises(OSError):
            (disk / "probe").write_text("x")
        lock.release()
        assert lock.fd is None
    finally:
        for held in opened:                  # (a failed release leaves it open: the
            if held.fd is not None:          # disk could not be unmounted)
                os.close(held.fd)
        if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], check=False)   # (never left mounted)
