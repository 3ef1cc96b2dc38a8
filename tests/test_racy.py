"""Racily clean files (git's term): a rewrite of the same size in the same tick of
the filesystem's clock as the run that read the file leaves size, mtime and ctime
as they were.  On a filesystem with 1 s timestamps (ext4 with 128-byte inodes, as
FAT, exFAT, SMB and NFS keep coarse times) such a file is compared by content on
the next run, in both modes."""

from __future__ import annotations

import os
import time

import pytest
from support import Backup, make_tree, rebuilt


def _in_one_second(step) -> bool:
    """Run ``step`` at the start of a second; did it end within that second?"""
    time.sleep(1 - time.time() % 1 + 0.02)      # (waits for the clock, not for the program)
    second = int(time.time())
    step()
    return int(time.time()) == second


@pytest.mark.parametrize("checker", ["hash", "mtime"])
def test_a_rewrite_in_the_same_second_as_the_run_is_stored_next_run(
        backup: Backup, coarse_disk, checker: str) -> None:
    backup.src = coarse_disk / "src"
    backup.src.mkdir()
    backup.write_plan(checker=checker)
    path = backup.src / "notes.txt"

    def write_run_rewrite() -> None:
        make_tree(backup.src, {"notes.txt": "aaaa\n"})
        code, out = backup.run("all")
        assert code == 0, out
        before = os.stat(path)
        path.write_text("bbbb\n")                        # same size, same second
        after = os.stat(path)
        assert (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns)

    for _attempt in range(5):                          # a loaded machine may cross a second
        if _in_one_second(write_run_rewrite):
            break
        import shutil
        shutil.rmtree(backup.dest)
    else:
        pytest.skip("could not run a backup within one second here")
    code, out = backup.run("all")
    assert code == 0, out
    assert (backup.mirror / "notes.txt").read_text() == "bbbb\n"
    assert rebuilt(backup, "notes.txt")[-1] == b"bbbb\n"
    code, out = backup.run("verify", "--deep")
    assert code == 0, out
