"""The snapback command ends with ``os._exit`` and runs without the cyclic garbage
collector (pipeline/__main__.py, ``command``): what a run leaves behind must not depend on
the interpreter's teardown or on a collection that no longer comes.

A catalog that cannot be opened (the disk is full while its WAL is made) raises out of
``Catalog.__init__`` with its connection made; the traceback's frames hold that connection
in a reference cycle.  With the collector and the teardown, it was closed and its side
files (``-wal``, ``-shm``) removed; without them it stayed open until the process was
gone, and the side files stayed beside the catalog.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import PARTIAL, Backup, fill_disk, make_tree


def test_a_catalog_that_cannot_be_opened_leaves_no_side_files(
        backup: Backup, small_disk: Path) -> None:
    backup.dest = small_disk / "dest"
    backup.write_plan()
    make_tree(backup.src, {"a": {f"f{i}.txt": f"{i}\n" for i in range(20)},
                           "c": {"s.txt": "s\n"}})
    backup.doit("all", check=True)
    for i in range(20):
        (backup.src / "a" / f"f{i}.txt").write_bytes(os.urandom(4000))
    (backup.src / "c" / "s.txt").write_text("changed\n")
    meta = backup.dest / ".snapback"
    met = []
    for free in range(16 << 10, 72 << 10, 4 << 10):
        ballast = fill_disk(small_disk, free)
        result = backup.doit("all")
        out = result.stdout + result.stderr
        ballast.unlink()
        assert result.returncode == PARTIAL, out
        assert "Traceback" not in out, out
        if "cannot be opened: database or disk is full" in out:
            met.append(free)
            left = sorted(p.name for p in meta.iterdir() if p.name.startswith("catalog"))
            assert left == ["catalog.sqlite3"], (free, left, out)
        backup.doit("all", check=True)          # room again: the next run completes
        backup.doit("verify", "--deep", check=True)
        for i in range(20):
            (backup.src / "a" / f"f{i}.txt").write_bytes(os.urandom(4000))
    assert met, "no size left the catalog unopenable: the test checked nothing"


# doit's own process in the checkout (``python -m doit`` with dodo.py), with an exit
# handler that says whether the interpreter's teardown ran
DOIT_WITH_TEARDOWN_PROBE = (
    "import atexit, runpy, sys; atexit.register(print, 'teardown ran', file=sys.stderr); "
    "sys.argv[0] = 'doit'; runpy.run_module('doit', run_name='__main__', alter_sys=True)")


def test_doits_own_process_ends_with_the_runs_status_without_teardown(backup: Backup) -> None:
    """``doit all`` in the checkout ends as the snapback command does once its run is
    done (no teardown: 20 ms of a no-change run at 5,815 files, bench/RESULTS.md), with
    the status the reporter decided: 0, 1 for a file that failed, 75 for a held lock."""
    from support import ROOT, hold_with_stopped_run
    make_tree(backup.src, {"a": {"f.txt": "f\n"}})

    def doit(*words: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", DOIT_WITH_TEARDOWN_PROBE, *words,
                               f"config={backup.plan}"], capture_output=True, text=True,
                              cwd=ROOT, env={**os.environ, **(env or {})}, timeout=120)

    done = doit("all")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "teardown ran" not in done.stderr
    (backup.src / "a" / "f.txt").write_text("f2\n")
    failed = doit("all", env={"SNAPBACK_FAULT": "write:1:enospc"})
    assert failed.returncode == PARTIAL, failed.stdout + failed.stderr
    assert "FAILED" in failed.stdout and "teardown ran" not in failed.stderr
    held = hold_with_stopped_run(backup, "all")
    try:
        locked = doit("all")
    finally:
        held.send_signal(__import__("signal").SIGCONT)
        held.communicate(timeout=120)
    assert locked.returncode == 75, locked.stdout + locked.stderr
    listed = doit("list")                        # (no run: doit's own ending, as before)
    assert listed.returncode == 0 and "teardown ran" in listed.stderr


def test_doits_own_process_with_an_output_that_cannot_be_written(backup: Backup) -> None:
    """helper-56: ``doit all > /dev/full`` or ``doit all | head -1`` in the checkout ended
    in a traceback and doit's status 3 (the snapback command said one line and went
    on): the reporter's streams end quietly, the run's status stands."""
    from support import ROOT
    make_tree(backup.src, {"a": {f"f{i}.txt": f"{i}\n" for i in range(50)}})
    command = [sys.executable, "-m", "doit", "all", f"config={backup.plan}"]
    with open("/dev/full", "w") as full:
        result = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True,
                                cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "cannot be written" in result.stderr
    for i in range(50):
        (backup.src / "a" / f"f{i}.txt").write_text(f"{i} changed\n")
    read, write = os.pipe()
    os.close(read)                                  # the reader is gone before a line
    try:
        result = subprocess.run(command, stdout=write, stderr=subprocess.PIPE, text=True,
                                cwd=ROOT, timeout=120)
    finally:
        os.close(write)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and result.stderr == "", result.stderr
    assert backup.doit("verify", check=True)


@pytest.mark.parametrize("command", [["verify"], ["history"]])
def test_doits_own_recovery_commands_with_an_output_that_cannot_be_written(
        backup: Backup, command: list[str]) -> None:
    """helper-57: ``doit verify > /dev/full`` in the checkout said status 1, which for
    verify means damage; the snapback command says one line and its own status."""
    from support import ROOT
    make_tree(backup.src, {"a.txt": "a\n"})
    backup.doit("all", check=True)
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "doit", *command,
                                 f"config={backup.plan}"], stdout=full,
                                stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "cannot be written" in result.stderr and "Traceback" not in result.stderr
