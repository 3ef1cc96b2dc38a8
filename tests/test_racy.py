"""Racily clean files (git's term): a rewrite of the same size in the same tick of
the filesystem's clock as the run that read the file leaves size, mtime and ctime
as they were.  On a filesystem with 1 s timestamps (ext4 with 128-byte inodes, as
FAT, exFAT, SMB and NFS keep coarse times) such a file is compared by content on
the next run, in both modes."""

from __future__ import annotations

import os
import time

import pytest
from support import Backup, make_tree, next_second, rebuilt


def _in_one_second(step) -> bool:
    """Run ``step`` at the start of a second (of the clock file times are stamped
    with); did it end within that second?"""
    next_second()
    second = time.clock_gettime_ns(5) // 10**9
    step()
    return time.clock_gettime_ns(5) // 10**9 == second


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


def test_a_file_truncated_and_refilled_during_its_copy_is_not_taken(tmp_path) -> None:
    """Truncated and written again to the same size while it is copied, its mtime set
    back (as `tar x`, `cp -p`, `rsync -t` leave it): size, mtime and inode are as at
    the start of the copy, but what was read is neither the old bytes nor the new
    ones; only the ctime (which no one can set back) tells.  The copy is refused (the
    caller tries again), never kept as the file."""
    from pipeline import store
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 * store.CHUNK))
    os.utime(src, ns=(1_600_000_000 * 10**9, 1_600_000_000 * 10**9))   # not racily clean
    st = os.stat(src)

    done: list[int] = []

    def rewrite(nbytes: int) -> None:            # after the first chunk is copied
        if done:
            return
        done.append(nbytes)
        with open(src, "r+b") as fh:
            fh.truncate(0)
            fh.write(b"new!" * (3 * store.CHUNK // 4))
        while os.stat(src).st_ctime_ns == st.st_ctime_ns:   # (the clock's next tick)
            os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
        now = os.stat(src)
        assert (now.st_size, now.st_mtime_ns, now.st_ino) == \
            (st.st_size, st.st_mtime_ns, st.st_ino)

    with pytest.raises(store.SourceChanged):
        store.copy_to_tmp(os.fsencode(src), os.fsencode(tmp_path), hashed=True,
                          progress=rewrite)
    assert [p.name for p in tmp_path.iterdir()] == ["big.bin"]     # no temporary file


@pytest.mark.parametrize(("written", "tick"), [
    (1_796_000_000 * 10**9, 2 * 10**9),                     # FAT: even seconds
    (1_796_000_001 * 10**9, 10**9),                         # a filesystem of seconds
    (1_796_000_001 * 10**9 + 420_000_000, 10_000_000),      # exFAT: 10 ms
    (1_796_000_001 * 10**9 + 423_865_102, 1)])              # nanoseconds (ext4, tmpfs)
def test_a_file_read_within_its_times_tick_is_racy(written: int, tick: int) -> None:
    """Read within the tick its time shows, a file may still be rewritten with its stat
    as it is (racy); read in a later tick, a rewrite moves its time (not racy).  exFAT
    keeps 10 ms: a reading 5 ms after a write stamped .420 s is racy (before: taken
    for a nanosecond time, and trusted)."""
    from pipeline import store
    assert store.tick(written) == tick
    old = 1_700_000_000 * 10**9 + 123_456_789            # long ago, nanoseconds
    mtime = os.stat_result((0o100644, 1, 1, 1, 0, 0, 5, 0, 0, 0, 0.0, 0.0, 0.0,
                            old, written, old))         # (atime, mtime, ctime in ns)
    ctime = os.stat_result((0o100644, 1, 1, 1, 0, 0, 5, 0, 0, 0, 0.0, 0.0, 0.0,
                            old, old, written))         # an mtime set back
    assert (mtime.st_mtime_ns, ctime.st_ctime_ns) == (written, written)
    for st in (mtime, ctime):
        assert store.racy(st, now=written)
        assert store.racy(st, now=written + tick - 1)     # the same tick
        assert not store.racy(st, now=written + tick)     # the next one


def test_a_time_older_than_the_coarsest_tick_is_never_racy() -> None:
    """``racy`` answers at once for times more than 2 s (FAT's tick) before now: the
    same answer as the tick by tick rule, for every kind of time."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from pipeline import store

    def by_ticks(mtime: int, ctime: int, now: int) -> bool:
        return any(now - now % store.tick(when) <= when for when in (mtime, ctime))

    units = st.sampled_from([1, 1_000, 1_000_000, 10_000_000, 10**9, 2 * 10**9])
    base = 1_796_000_000 * 10**9

    @settings(max_examples=2000, deadline=None)
    @given(units, units, st.integers(-5 * 10**9, 10**9), st.integers(-5 * 10**9, 10**9),
           st.integers(0, 6 * 10**9))
    def check(mu: int, cu: int, m: int, c: int, later: int) -> None:
        mtime, ctime = base + m - m % mu, base + c - c % cu
        now = base + later
        stat = os.stat_result((0o100644, 1, 1, 1, 0, 0, 5, 0, 0, 0, 0.0, 0.0, 0.0,
                               mtime, mtime, ctime))
        assert store.racy(stat, now=now) == by_ticks(mtime, ctime, now)
    check()


def test_a_new_ctime_during_the_compare_is_no_new_content(backup: Backup, monkeypatch) -> None:
    """helper-55: a ``chown -R`` (or an indexer) during a run gave each file the mirror
    compared a new ctime after its walk: the mirror copied it again and said "updated"
    for thousands of unchanged files.  A new ctime alone is no new content: the
    comparison stands, the record keeps the walk's stat, the next run compares again."""
    from pipeline import store
    make_tree(backup.src, {"d": {f"f{i}.txt": f"{i}\n" * (i + 1) for i in range(6)}})
    backup.doit("all", check=True)
    for i in range(6):                         # a new ctime, the bytes and mtime as they were
        os.chown(backup.src / "d" / f"f{i}.txt", os.getuid(), os.getgid())
    (backup.src / "d" / "f0.txt").write_text("really changed\n")
    compare = store.same_content

    def compare_then_chown(a: bytes, b: bytes) -> str | None:
        found = compare(a, b)
        os.chown(a, os.getuid(), os.getgid())   # (its ctime moves, nothing else)
        return found

    monkeypatch.setattr(store, "same_content", compare_then_chown)
    code, out = backup.run("all")
    assert code == 0, out
    updated = [line for line in out.splitlines() if line.startswith(("updated", "new"))]
    assert updated == ["updated  [mirror+history] src/d/f0.txt"], out
    monkeypatch.undo()
    code, out = backup.run("all")
    assert code == 0 and not [line for line in out.splitlines()
                              if line.startswith(("updated", "new"))], out
    assert (backup.mirror / "d" / "f3.txt").read_text() == "3\n" * 4


def test_a_rewrite_during_the_compare_of_a_racy_record_is_found_next_run(
        backup: Backup, monkeypatch) -> None:
    """helper-56: with ``checker: mtime`` the mirror compares a file's bytes only when
    its record is racily clean.  A write that set the mtime back while it compared
    (only the ctime moved) let the comparison stand, and the record lost its racy
    mark: the next runs trusted size and mtime, and the mirror kept the old bytes for
    good.  A comparison that stands on a moved ctime keeps the record racily clean."""
    from pipeline import store
    backup.write_plan(checker="mtime")
    path = backup.src / "f.txt"
    make_tree(backup.src, {"f.txt": "A" * 100})
    backup.doit("snapshot", check=True)
    os.chmod(path, 0o600)                # bytes not read (mtime trusted): kept racy
    backup.doit("snapshot", check=True)
    compare = store.same_content

    def compare_then_rewrite(a: bytes, b: bytes) -> str | None:
        found = compare(a, b)
        if a == os.fsencode(path):
            was = os.lstat(a)
            path.write_text("B" * 100)   # same size, the mtime set back: the ctime moves
            os.utime(a, ns=(was.st_atime_ns, was.st_mtime_ns))
        return found

    monkeypatch.setattr(store, "same_content", compare_then_rewrite)
    code, out = backup.run("snapshot")
    assert code == 0, out
    monkeypatch.undo()
    code, out = backup.run("snapshot")
    assert code == 0 and "updated  src/f.txt" in out, out
    assert (backup.mirror / "f.txt").read_text() == "B" * 100


def test_a_write_during_a_comparison_that_ends_a_second_later_is_found_next_run(
        backup: Backup, coarse_disk, monkeypatch) -> None:
    """helper-57: on a filesystem with 1 s timestamps, a write in the second of the
    walk's lstat, while the mirror compared the file (a long reading that ended in a
    later second), left its whole stat as the walk saw it; judged racily clean at the
    reading's end, the record was clean, and no run looked at the file again (the mirror
    kept the old bytes, verify passed).  A reading is judged from the moment it began."""
    from pipeline import store
    backup.src = coarse_disk / "src"
    backup.src.mkdir()
    backup.write_plan()
    path = backup.src / "notes.txt"
    make_tree(backup.src, {"notes.txt": "aaaa\n"})
    backup.doit("snapshot", check=True)
    compare = store.same_content
    seconds: list[int] = []

    def compare_write_and_wait(a: bytes, b: bytes) -> str | None:
        found = compare(a, b)
        if a == os.fsencode(path):
            path.write_text("bbbb\n")              # same size, same second: no stat moves
            seconds.append(os.stat(path).st_mtime_ns // 10**9)
            next_second()                           # (a reading that ends a second later)
        return found

    monkeypatch.setattr(store, "same_content", compare_write_and_wait)
    for _attempt in range(5):                       # a loaded machine may cross a second
        seconds.clear()
        next_second()
        second = time.clock_gettime_ns(5) // 10**9
        path.write_text("aaaa\n")                   # the same bytes, this second's times
        code, out = backup.run("snapshot")
        assert code == 0, out
        if seconds == [second]:
            break
        path.write_text("aaaa\n")
    else:
        pytest.skip("could not compare within one second here")
    monkeypatch.undo()
    code, out = backup.run("snapshot")
    assert code == 0, out
    assert (backup.mirror / "notes.txt").read_text() == "bbbb\n", out


def _slowly(waited: list[int]):
    """A progress callback that makes a reading last three seconds and more."""
    def progress(_n: int) -> None:
        while len(waited) < 3:
            next_second()
            waited.append(1)
    return progress


def test_a_copy_is_judged_racily_clean_from_the_moment_its_reading_began(coarse_disk) -> None:
    """The same rule for every reading that copies (the mirror's, the history's, the
    reader's): a file written in the second its reading began is racily clean, however
    late the reading ends."""
    from pipeline import store
    path = coarse_disk / "big.bin"
    for _attempt in range(5):
        next_second()
        second = time.clock_gettime_ns(5) // 10**9
        path.write_bytes(b"x" * (1 << 20))
        copied = store.copy_to_tmps(os.fsencode(path), (os.fsencode(coarse_disk),),
                                    hashed=True, progress=_slowly([]))
        for tmp in copied.tmps:
            os.unlink(tmp)
        if copied.stat.st_mtime_ns // 10**9 == second:
            break
    else:
        pytest.skip("could not write and read within one second here")
    assert not store.racy(copied.stat)          # judged at the reading's end: too late
    assert copied.racy
