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

