"""Adversary tests for `doit all` reading each file once (issue 25)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support import Backup, aged, next_second, rebuilt


def test_a_rewrite_in_the_tick_of_a_write_with_its_mtime_set_back_is_not_missed(
        backup: Backup, coarse_disk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`cp -p` twice in a row: the file is rewritten (same size) and its mtime set back
    to an old time, then again just after the snapshot task read it, in the same tick
    of the filesystem's clock (1 s here; the coarse kernel tick of older kernels
    elsewhere): mtime, size, inode and ctime are all as they were when read.
    The mtime is old, but the ctime says it was written just now: the snapshot task's
    reading is not handed to the history, and neither record is trusted next run."""
    monkeypatch.setenv("SNAPBACK_READ_AHEAD", "0")   # the run's own readings (in-process)
    from pipeline import store
    backup.src = coarse_disk / "src"
    backup.src.mkdir()
    backup.write_plan()
    (backup.src / "f.txt").write_text("zero\n")
    (backup.src / "g.txt").write_text("g\n")
    aged(backup.src)
    path = os.fsencode(backup.src / "f.txt")
    old = os.stat(path).st_mtime_ns
    real = store.copy_file
    seen: list[bool] = []

    def cp_p(content: bytes) -> int:
        with open(path, "r+b") as fh:                # in place, as cp -p does
            fh.write(content)
        os.utime(path, ns=(old, old))
        return os.stat(path).st_ctime_ns

    def racing(src: bytes, dst: bytes, progress=None, also=None):  # type: ignore[no-untyped-def]
        if src != path:
            return real(src, dst, progress, also=also)
        next_second()
        first = cp_p(b"one!\n")
        result = real(src, dst, progress, also=also)
        seen.append(cp_p(b"two!\n") == first)        # the stat did not move
        return result

    monkeypatch.setattr(store, "copy_file", racing)
    code, out = backup.run("all")
    monkeypatch.undo()
    assert code == 0, out
    assert seen == [True], "the race was not set up (the clock ticked)"
    assert rebuilt(backup, "f.txt") == [b"two!\n"]      # read again: as recorded
    code, out = backup.run("all")
    assert code == 0, out
    assert (backup.mirror / "f.txt").read_bytes() == b"two!\n"
    assert rebuilt(backup, "f.txt")[-1] == b"two!\n"
    assert backup.run("verify", "--deep")[0] == 0
    assert rebuilt(backup, "g.txt") == [b"g\n"]


def test_a_file_with_room_for_its_mirror_copy_alone_is_still_mirrored(
        backup: Backup, small_disk: Path) -> None:
    """The history's copy made from the snapshot task's reading must not cost the mirror
    its copy: on a disk with room for one copy of a file, the mirror gets it (as when
    each task read the file itself) and the history's copy fails, said and counted."""
    backup.dest = small_disk / "dest"
    backup.write_plan()
    big = os.urandom(1_600_000)                          # 3 MB disk: room for one copy
    (backup.src / "big.bin").write_bytes(big)
    (backup.src / "small.txt").write_text("s\n")
    aged(backup.src)
    code, out = backup.run("all")
    assert code == 1, out
    assert (backup.mirror / "big.bin").read_bytes() == big
    failed = [line.split() for line in out.splitlines() if line.startswith("FAILED")]
    assert [f[:3] for f in failed] == [["FAILED", "[history]", "src/big.bin:"]], out
    assert os.listdir(backup.meta / "tmp") == []
    assert rebuilt(backup, "small.txt") == [b"s\n"]
