"""Locking, unreadable files, read-only mirrors: nothing lost, clear messages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from support import Backup, as_nobody, digest, hold_with_stopped_run, lines, make_tree, tree


def test_a_held_lock_stops_the_second_run_and_names_the_holder(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "a"})
    backup.snapshot()
    (backup.src / "b.txt").write_text("b")
    def unlocked() -> dict:
        return {k: v for k, v in tree(backup.dest, with_mtime=True).items()
                if k != ".snapback/lock"}

    before = unlocked()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from pipeline.lock import Lock\n"
        f"Lock(Path({str(backup.meta / 'lock')!r})).acquire('doit versioned')\n"
        "print('held', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = backup.doit("snapshot")
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 75
    assert f"pid {holder.pid}" in result.stderr and "doit versioned" in result.stderr
    assert result.stderr.count("holds") == 1          # said once, not once per folder
    assert unlocked() == before
    # the holder is gone (as after a crash): the next run takes the lock over, and says so
    taken = backup.snapshot()
    assert lines(taken.stdout, "new") == ["src/b.txt"]
    assert f"taking over the lock left by a run that is gone (pid {holder.pid}" in taken.stderr


def test_two_runs_at_once_never_corrupt_each_other(backup: Backup) -> None:
    make_tree(backup.src, {f"d{i}": {f"f{j}.txt": f"{i}-{j}\n" * 50 for j in range(20)}
                           for i in range(20)})
    first = hold_with_stopped_run(backup, "snapshot")   # mid-run, holding the lock
    try:
        second = backup.doit("snapshot")
    finally:
        os.kill(first.pid, signal.SIGCONT)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, out + err
    assert second.returncode == 75 and f"pid {first.pid}" in second.stderr
    assert tree(backup.mirror) == tree(backup.src)
    assert len(backup.runs()) == 1
    assert backup.snapshot().stdout.count("\n") == 1   # and the state is complete


# ---- as an unprivileged user: root would read and write anything ----

def test_unreadable_file_is_reported_and_the_rest_is_backed_up(nobody_backup) -> None:
    b, python = nobody_backup
    make_tree(b.src, {"ok.txt": "fine", "secret.txt": "no", "sub": {"also.txt": "fine"}})
    os.chmod(b.src / "secret.txt", 0o000)
    result = as_nobody(b, python, "snapshot")
    assert result.returncode == 1
    assert "FAILED   src/secret.txt: Permission denied" in result.stdout
    assert (b.mirror / "ok.txt").read_text() == "fine"
    assert (b.mirror / "sub" / "also.txt").read_text() == "fine"
    assert not (b.mirror / "secret.txt").exists()
    assert "1 failed" in result.stdout
    os.chmod(b.src / "secret.txt", 0o600)              # fixed: the next run takes it
    again = as_nobody(b, python, "snapshot")
    assert again.returncode == 0, again.stdout + again.stderr
    assert lines(again.stdout, "new") == ["src/secret.txt"]


def test_unreadable_folder_keeps_its_mirror(nobody_backup) -> None:
    b, python = nobody_backup
    make_tree(b.src, {"private": {"diary.txt": "dear diary"}, "ok.txt": "fine"})
    assert as_nobody(b, python, "snapshot").returncode == 0
    os.chmod(b.src / "private", 0o000)
    (b.src / "ok.txt").write_text("changed")
    result = as_nobody(b, python, "snapshot")
    assert result.returncode == 1
    assert "FAILED   src/private/: cannot list: Permission denied" in result.stdout
    assert (b.mirror / "private" / "diary.txt").read_text() == "dear diary"   # nothing lost
    assert (b.mirror / "ok.txt").read_text() == "changed"


def test_read_only_folders_are_mirrored_and_still_updated(nobody_backup) -> None:
    b, python = nobody_backup
    make_tree(b.src, {"ro": {"a.txt": "a"}})
    os.chmod(b.src / "ro", 0o555)
    assert as_nobody(b, python, "snapshot").returncode == 0
    assert os.stat(b.mirror / "ro").st_mode & 0o777 == 0o555
    os.chmod(b.src / "ro", 0o755)
    (b.src / "ro" / "b.txt").write_text("b")
    (b.src / "ro" / "a.txt").unlink()
    os.chmod(b.src / "ro", 0o555)
    result = as_nobody(b, python, "snapshot")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(os.listdir(b.mirror / "ro")) == ["b.txt"]
    assert os.stat(b.mirror / "ro").st_mode & 0o777 == 0o555
    assert digest(b.mirror / "ro" / "b.txt") == digest(b.src / "ro" / "b.txt")
