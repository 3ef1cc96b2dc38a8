"""Faults and hostile input: nothing already backed up is ever damaged."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from support import (
    SNAPBACK,
    Backup,
    Link,
    history_of,
    hold_with_stopped_run,
    make_tree,
    rebuilt,
    tree,
)


def _generation(b: Backup, gen: int) -> str | None:
    """Every file rewritten; in an odd generation one file, backed up by the generation
    before, is deleted (and comes back in the next).  Returns the deleted path."""
    for i in range(4):
        (b.src / f"big{i}.bin").write_bytes(bytes([gen % 7 + 1, 0, i]) * (1_000_000 + i))
    for i in range(60):
        folder = b.src / f"d{i % 10}"
        folder.mkdir(exist_ok=True)
        (folder / f"t{i}.txt").write_text(f"file {i}\n" + f"generation {gen}\n" * (i + 1))
    if gen % 2 == 0:
        return None
    gone = f"d{gen % 10}/t{gen}.txt"
    (b.src / gone).unlink()                         # exists: no missing_ok
    return gone


# Every write, rename, sync and commit point of each mode is killed in a small scenario
# in tests/test_crash_points.py; this one kills `all` on a bigger tree over several
# generations, four times each, at fault-hook points spread over the run (a kill after
# a random sleep mostly lands before or after the work).
KILLS = (("write", 2), ("rename", 9), ("commit", 3), ("write", 40))
@pytest.mark.parametrize("every", ["0", "1"], ids=["a commit per folder", "a commit a second"])
@pytest.mark.parametrize("mode", ["all"])
def test_sigkill_twenty_times_per_mode_loses_nothing(backup: Backup, mode: str, every: str
                                                     ) -> None:
    history: dict[str, list[bytes]] = {}
    kills = 0
    deleted = []
    for gen in range(5):
        gone = _generation(backup, gen)
        for path in backup.src.rglob("*"):
            if path.is_file():
                seen = history.setdefault(str(path.relative_to(backup.src)), [])
                if not seen or seen[-1] != path.read_bytes():
                    seen.append(path.read_bytes())
        for kind, nth in KILLS:
            # (a commit a second: this run is one commit, its last)
            point = 1 if kind == "commit" and every != "0" else nth + gen
            killed = backup.doit(mode, env={"SNAPBACK_FAULT": f"{kind}:{point}",
                                            "SNAPBACK_COMMIT_EVERY": every})
            assert killed.returncode in (-signal.SIGKILL, 0), killed.stdout + killed.stderr
            kills += killed.returncode == -signal.SIGKILL
        backup.doit(mode, check=True, env={"SNAPBACK_COMMIT_EVERY": every})
        if gone is not None:                              # the deletion reached the backup
            deleted.append(gone)
            assert not (backup.src / gone).exists()
            if mode in ("snapshot", "all"):
                assert not os.path.lexists(backup.mirror / gone), gone
            if mode in ("versioned", "all"):
                assert history_of(backup, gone)[-1].kind == "deleted", gone
                assert history_of(backup, gone)[-2].kind in ("baseline", "diff"), gone
    assert kills >= 20
    assert deleted == ["d1/t1.txt", "d3/t3.txt"]
    assert [p for p in backup.dest.rglob(".~snapback-*")] == []
    if mode in ("snapshot", "all"):
        assert tree(backup.mirror) == tree(backup.src)
    if mode in ("versioned", "all"):
        for rel, versions in history.items():
            got = [v for v in rebuilt(backup, rel) if v is not None]
            assert got[-len(versions):] == versions or got == versions, rel
        for diff in backup.dest.rglob("*.diff"):
            assert diff.stat().st_size > 0
        # every stored object belongs to exactly one version: no orphan of a killed run
        objects = {p for p in backup.versions.rglob("*") if p.is_file() and (
            p.parent.name.endswith(("_diffs", "_versions")) or "-baseline-" in p.name)}
        referenced = {backup.versions / os.fsdecode(r.store) / os.fsdecode(o)
                      for r in backup.catalog() if r.kind in ("baseline", "diff", "full")
                      for o in (r.object, r.copy) if o is not None}
        assert objects == referenced
    verify = backup.doit("verify", "--deep")
    assert verify.returncode == 0, verify.stdout
    assert backup.doit(mode, check=True).stdout.count("\n") == (2 if mode == "all" else 1)


def test_a_file_rewritten_during_the_run_is_never_stored_mixed(backup: Backup) -> None:
    victim = backup.src / "busy.log"
    victim.write_bytes(b"a" * 4_000_000)
    make_tree(backup.src, {f"d{i}": {f"f{j}.txt": "x" * 3000 for j in range(40)} for i in range(20)})
    # The writer is another process, rewriting the file in place, one whole state per
    # write (a writer that pauses half-way leaves a mixed file on disk, which is then
    # what the file holds: no backup can tell).
    states = {bytes([97 + i % 26]) for i in range(26)}
    writer = subprocess.Popen([sys.executable, "-c", (
        "import os, sys, itertools\n"
        "fd = os.open(sys.argv[1], os.O_WRONLY)\n"
        "import time\n"
        "for i in itertools.count():\n"
        "    os.pwrite(fd, bytes([97 + i % 26]) * 4_000_000, 0)\n"
        "    time.sleep(0.002)\n"), str(victim)])
    try:
        result = backup.doit("all")
    finally:
        writer.kill()
        writer.wait()
    for stored in [backup.mirror / "busy.log", backup.versions / "busy.log" / "busy.log"]:
        if stored.exists():
            data = stored.read_bytes()
            assert len(set(data)) == 1 and data[:1] in states | {b"a"}, "a mixed copy was stored"
    # 0: a quiet moment was caught; 1: it kept changing, and the run says so
    assert result.returncode in (0, 1), result.stdout + result.stderr
    assert (result.returncode == 1) == ("busy.log: kept changing while it was read" in result.stdout)
    final = backup.doit("all", check=True)                 # quiet now: the next run takes it
    assert (backup.mirror / "busy.log").read_bytes() == victim.read_bytes()
    assert final.returncode == 0


def test_files_vanishing_or_becoming_folders_during_a_run(backup: Backup) -> None:
    make_tree(backup.src, {f"f{i}.txt": "x" * 50_000 for i in range(300)})
    proc = subprocess.Popen([*SNAPBACK, "all",
                             f"config={backup.plan}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for i in range(0, 300, 3):                             # while it runs
        (backup.src / f"f{i}.txt").unlink()
        if i % 2:
            (backup.src / f"f{i}.txt").mkdir()
    _out, err = proc.communicate(timeout=120)
    assert "Traceback" not in err and "unexpectedly" not in err
    backup.doit("all", check=True)
    assert tree(backup.mirror) == tree(backup.src)
    assert backup.doit("verify", "--deep").returncode == 0


def test_disk_full_fails_cleanly_and_the_next_run_completes(backup: Backup, small_disk: Path) -> None:
    backup.dest = small_disk / "dest"
    backup.write_plan()
    make_tree(backup.src, {"small.txt": "v1\n", "notes.md": "n\n"})
    backup.doit("all", check=True)
    (backup.src / "small.txt").write_text("v2\n")
    (backup.src / "huge.bin").write_bytes(os.urandom(2_500_000))
    full = backup.doit("all")
    assert full.returncode == 1
    assert "No space left on device" in full.stdout + full.stderr
    assert "Traceback" not in full.stderr
    assert [p for p in backup.dest.rglob(".~snapback-*")] == []
    assert rebuilt(backup, "small.txt")[0] == b"v1\n"               # nothing earlier lost
    (backup.src / "huge.bin").unlink()                              # space freed
    backup.doit("all", check=True)
    assert tree(backup.mirror) == tree(backup.src)
    assert rebuilt(backup, "small.txt")[-1] == b"v2\n"
    assert backup.doit("verify", "--deep").returncode == 0


@pytest.mark.parametrize("first, second", [("all", ["versioned"]), ("versioned", ["verify"]),
                                           ("snapshot", ["restore", "src", "--to", "out"])])
def test_concurrent_commands_one_waits_out_with_the_holders_pid(backup, first, second) -> None:
    make_tree(backup.src, {f"d{i}": {f"f{j}.txt": f"{i}{j}\n" * 400 for j in range(30)}
                           for i in range(30)})
    backup.doit("versioned", check=True)                         # something to restore
    for path in backup.src.rglob("*.txt"):
        path.write_text(path.read_text() + "more\n")
    proc = hold_with_stopped_run(backup, first)
    try:
        other = backup.doit(*second)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert other.returncode == 75 and f"pid {proc.pid}" in other.stderr
    assert backup.doit("verify", "--deep").returncode == 0


def test_odd_names_kinds_and_links(backup: Backup) -> None:
    make_tree(backup.src, {
        "Readme.md": "upper", "readme.md": "lower",                  # differ in case only
        "caf\u00e9.txt": "nfc", "cafe\u0301.txt": "nfd",             # differ in normalisation
        "empty.txt": "",
        "rel": Link("Readme.md"), "abs": Link("/etc/passwd"), "dangling": Link("nowhere"),
        "loop": Link("loop"), "up": Link("../../outside"),
    })
    os.link(backup.src / "Readme.md", backup.src / "hardlink.md")
    with open(backup.src / "sparse.bin", "wb") as fh:
        fh.seek(5_000_000)
        fh.write(b"end")
    os.mknod(backup.src / "device", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(backup.src / "sock"))
    os.mkfifo(backup.src / "fifo")
    none = backup.src / "noperm.txt"
    none.write_text("root can read it")
    os.chmod(none, 0)
    try:
        result = backup.doit("all", "--verbose", check=True)
    finally:
        sock.close()
    for special in ("device", "sock", "fifo"):
        assert f"skipped  src/{special}: special file" in result.stdout
        assert not os.path.lexists(backup.mirror / special)
    assert os.readlink(backup.mirror / "loop") == "loop"
    assert os.readlink(backup.mirror / "up") == "../../outside"
    assert (backup.mirror / "sparse.bin").read_bytes() == (backup.src / "sparse.bin").read_bytes()
    assert (backup.mirror / "hardlink.md").read_text() == "upper"
    expect = {k: v for k, v in tree(backup.src).items()
              if k not in ("device", "sock", "fifo")}
    assert tree(backup.mirror) == expect
    into = backup.base / "back"
    assert backup.doit("restore", "src", "--to", str(into)).returncode == 0
    assert tree(into) == expect


def test_paths_too_long_for_the_system_are_reported_and_the_rest_backed_up(backup: Backup) -> None:
    make_tree(backup.src, {"ok.txt": "fine"})
    deep = os.fsencode(backup.src)
    fd = os.open(deep, os.O_RDONLY)
    try:
        for _ in range(20):                                  # 20 x 250 bytes > PATH_MAX
            name = b"d" * 250
            os.mkdir(name, dir_fd=fd)
            new = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = new
        leaf = os.open(b"leaf.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"deep")
        os.close(leaf)
    finally:
        os.close(fd)
    result = backup.doit("snapshot")
    assert result.returncode == 1
    assert "File name too long" in result.stdout
    assert "Traceback" not in result.stderr
    assert (backup.mirror / "ok.txt").read_text() == "fine"


def test_secrets_stay_private_in_every_stored_copy(backup: Backup) -> None:
    make_tree(backup.src, {"secret.txt": "v1\n", "key.bin": b"\0k1"})
    for name in ("secret.txt", "key.bin"):
        os.chmod(backup.src / name, 0o600)
    backup.doit("all", check=True)
    (backup.src / "secret.txt").write_text("v2\n")
    (backup.src / "key.bin").write_bytes(b"\0k2")
    backup.doit("all", check=True)
    assert stat.S_IMODE(os.stat(backup.dest).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(backup.meta).st_mode) == 0o700
    stored = [p for p in backup.dest.rglob("*") if p.is_file()
              and ("secret" in p.name or "key" in p.name)]
    assert len(stored) >= 6
    for path in stored:
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0, path
    for path in backup.meta.iterdir():                 # the catalog names every file
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0, path


def test_a_huge_plan_file_is_refused(backup: Backup) -> None:
    backup.plan.write_text("# padding\n" * 200_000 + f"destination: {backup.dest}\n")
    result = backup.doit("snapshot")
    assert result.returncode == 2 and "larger than 1 MiB" in result.stderr
    assert result.stdout == ""
    assert all(line.startswith("snapback: ") for line in result.stderr.splitlines())
    assert not backup.dest.exists()                        # nothing was done
