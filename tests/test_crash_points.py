"""A writer killed at every point where it writes, renames, syncs or commits.

The fault hook (``pipeline/faults.py``, ``SNAPBACK_FAULT=<kind>:<n>``) makes the
process SIGKILL itself at exactly the n-th point of a kind.  Each scenario is
run once to count its points (``SNAPBACK_FAULT_LOG``), then once per point,
from the same starting backup.  After each kill: the next run completes (exit
0), ``doit verify --deep`` is clean, every earlier run restores exactly by its
run id (bytes, modes, mtimes, links) and the newest state is the source's.
A random sleep before a kill mostly lands before or after the work; this
lands on every step of it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections import Counter
from pathlib import Path

import pytest
from support import Backup, Link, aged, make_tree, strace, tree

KINDS = ("write", "rename", "fsync", "commit", "remove")


def _state(root: Path) -> dict:
    return tree(root, with_mtime=True)


def _restores(b: Backup, run_id: str, into: Path) -> dict:
    shutil.rmtree(into, ignore_errors=True)
    code, out = b.run("restore", str(b.src), "--at", run_id, "--to", str(into))
    assert code == 0, out
    return _state(into)


def _points(b: Backup, *args: str, env: dict[str, str] | None = None) -> Counter:
    log = b.base / "points.log"
    log.unlink(missing_ok=True)
    result = b.doit(*args, env={**(env or {}), "SNAPBACK_FAULT_LOG": str(log)})
    assert result.returncode == 0, result.stdout + result.stderr
    return Counter(log.read_text().split())


def _each_point(b: Backup, prepare, command: tuple[str, ...], check) -> dict[str, int]:
    """Count ``command``'s points on a fresh copy of the prepared backup, then kill it
    at each one (a fresh copy each time) and ``check`` what is left."""
    pristine = b.base / "pristine"
    prepare()
    shutil.copytree(b.dest, pristine, symlinks=True)
    counts = _points(b, *command)
    check(killed=None)                           # the scenario itself is right
    assert counts, "the scenario reached no point"
    for kind in KINDS:
        for n in range(1, counts[kind] + 1):
            shutil.rmtree(b.dest)
            shutil.copytree(pristine, b.dest, symlinks=True)
            result = b.doit(*command, env={"SNAPBACK_FAULT": f"{kind}:{n}"})
            assert result.returncode == -signal.SIGKILL, (kind, n, result.stdout, result.stderr)
            check(killed=f"{kind}:{n}")
    return dict(counts)


@pytest.mark.parametrize("mode", ["snapshot", "versioned", "all"])
def test_a_backup_killed_at_every_point_loses_nothing(backup: Backup, mode: str) -> None:
    make_tree(backup.src, {"notes.txt": "one\ntwo\n", "img.bin": bytes(range(256)) * 80,
                           "gone.txt": "bye\n", "d": {"keep.txt": "k\n", "to": Link("../notes.txt")},
                           "same.txt": "aaa 1\n"})
    os.chmod(backup.src / "d" / "keep.txt", 0o600)
    aged(backup.src)
    first: dict[str, dict] = {}

    def prepare() -> None:
        backup.doit("all", check=True)
        first["run"] = json.loads(backup.runs()[-1])["run_id"]
        first["state"] = _state(backup.src)
        (backup.src / "notes.txt").write_text("one\nTWO\nthree\n")
        (backup.src / "img.bin").write_bytes(bytes(range(256)) * 40 + b"new" + bytes(range(256)) * 41)
        (backup.src / "gone.txt").unlink()
        (backup.src / "new.txt").write_text("new\n")
        os.chmod(backup.src / "d" / "keep.txt", 0o640)
        os.unlink(backup.src / "d" / "to")
        os.symlink("../new.txt", backup.src / "d" / "to")
        same = backup.src / "same.txt"
        before = os.lstat(same)
        aged(backup.src)
        same.write_text("bbb 2\n")          # other bytes, the same size and mtime as before
        os.utime(same, ns=(before.st_atime_ns, before.st_mtime_ns))

    def check(killed: str | None) -> None:
        if killed is not None:
            code, out = backup.run(mode)                     # the next run completes
            assert code == 0, (killed, out)
        code, out = backup.run("verify", "--deep")
        assert code == 0, (killed, out)
        leftovers = [p for p in backup.dest.rglob(".~snapback-*")]
        assert leftovers == [], (killed, leftovers)
        if mode in ("snapshot", "all"):
            assert _state(backup.mirror) == _state(backup.src), killed
        into = backup.base / "restored"
        assert _restores(backup, first["run"], into) == first["state"], killed
        if mode in ("versioned", "all"):
            objects = {p for p in backup.versions.rglob("*") if p.is_file()}
            named = {backup.versions / os.fsdecode(r.store) / os.fsdecode(o)
                     for r in backup.catalog() for o in (r.object, r.copy) if o}
            assert objects == named, (killed, objects ^ named)  # nothing no row names
            kinds = {os.fsdecode(r.name): r.kind for r in backup.catalog()}
            assert kinds["img.bin"] == "delta" and kinds["notes.txt"] == "diff", kinds
            shutil.rmtree(into, ignore_errors=True)
            code, out = backup.run("restore", str(backup.src), "--to", str(into))
            assert code == 0, out
            assert _state(into) == _state(backup.src), killed

    counts = _each_point(backup, prepare, (mode,), check)
    assert counts["commit"] >= 1 and counts["fsync"] >= 1, counts


@pytest.mark.parametrize("mode", ["snapshot", "versioned", "all"])
def test_a_run_killed_between_its_commit_and_its_removals_is_finished_by_the_next(
        backup: Backup, mode: str) -> None:
    """The whole copies a commit superseded (the catalog's garbage) are removed by the
    next run of any mode, even one that finds nothing changed (adversary of issue 22:
    after a killed `all`, no later backup removed them)."""
    from pipeline.versioned import COPY_AFTER
    # enough changes that each newest version is kept whole, each superseding the last
    def text(version: int, i: int) -> str:
        return "".join(f"line {n}\n" for n in range(100)) + f"v{version} {i}\n"

    make_tree(backup.src, {f"t{i}.txt": text(0, i) for i in range(3)})
    for version in range(1, COPY_AFTER + 2):          # a baseline, then COPY_AFTER diffs
        for i in range(3):
            (backup.src / f"t{i}.txt").write_text(text(version, i))
        code, out = backup.run("all")
        assert code == 0, out
    newest = {r.name: r for r in backup.catalog()}
    assert all(r.kind == "diff" and r.copy for r in newest.values()), newest
    for i in range(3):
        (backup.src / f"t{i}.txt").write_text(text(COPY_AFTER + 2, i))
    killed = backup.doit("all", env={"SNAPBACK_FAULT": "remove:1"})
    assert killed.returncode == -signal.SIGKILL
    backup.doit(mode, check=True)                       # nothing left to back up
    objects = {p for p in backup.versions.rglob("*") if p.is_file()}
    named = {backup.versions / os.fsdecode(r.store) / os.fsdecode(o)
             for r in backup.catalog() for o in (r.object, r.copy) if o}
    assert objects == named, objects ^ named


def test_a_prune_killed_at_every_point_keeps_every_kept_version(backup: Backup) -> None:
    make_tree(backup.src, {"notes.txt": "v0\n", "img.bin": bytes(range(256)) * 80})
    runs: list[tuple[str, dict]] = []

    def prepare() -> None:
        for day in range(1, 5):
            (backup.src / "notes.txt").write_text("".join(f"v{i}\n" for i in range(day + 1)))
            (backup.src / "img.bin").write_bytes(bytes(range(256)) * 20 * day + bytes([day]) * 10
                                                 + bytes(range(256)) * 80)
            aged(backup.src)
            result = backup.doit("versioned", env={"SNAPBACK_NOW": f"2026-10-0{day}T10:00:00"})
            assert result.returncode == 0, result.stderr
            runs.append((json.loads(backup.runs()[-1])["run_id"], _state(backup.src)))

    def check(killed: str | None) -> None:
        if killed is not None:
            result = backup.doit("prune", "--keep-last", "2")
            assert result.returncode == 0, (killed, result.stdout, result.stderr)
        code, out = backup.run("verify", "--deep")
        assert code == 0, (killed, out)
        for run_id, state in runs[-2:]:                      # the kept versions
            assert _restores(backup, run_id, backup.base / "r") == state, (killed, run_id)
        objects = {p for p in backup.versions.rglob("*") if p.is_file()}
        named = {backup.versions / os.fsdecode(r.store) / os.fsdecode(o)
                 for r in backup.catalog() for o in (r.object, r.copy) if o}
        assert objects == named, (killed, objects ^ named)  # nothing left that no row names

    counts = _each_point(backup, prepare, ("prune", "--keep-last", "2"), check)
    assert counts["commit"] >= 1 and counts["write"] >= 1, counts


# ---- durability, from the recorded system calls ----

def _strace(b: Backup, *args: str) -> list[str]:
    return strace(b, "link,linkat,rename,renameat,renameat2,fsync,fdatasync,syncfs", *args)


def _synced_before_commit(b: Backup, calls: list[str]) -> int:
    """Every file given its final name in the destination (outside .snapback) is
    followed by a syncfs (or its own fsync) before the next catalog commit (the WAL's
    sync); returns how many were checked."""
    dest, meta = str(b.dest), str(b.meta)
    pending: list[str] = []
    placed = 0
    for line in calls:
        if "link" in line.split("(")[0] or "rename" in line.split("(")[0]:
            target = line.rsplit('"', 2)[-2] if line.count('"') >= 4 else ""
            if target.startswith(dest) and not target.startswith(meta) and "= 0" in line:
                pending.append(target)
                placed += 1
        elif "syncfs(" in line and dest in line:
            pending.clear()
        elif ("fsync(" in line or "fdatasync(" in line) and "-wal>" in line:
            assert pending == [], f"named by a commit before it was synced: {pending[:3]}"
    return placed


def test_every_stored_file_is_on_disk_before_the_commit_that_names_it(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "one\n", "b.bin": b"\x00\x01", "d": {"c.txt": "c\n"}})
    assert _synced_before_commit(backup, _strace(backup, "all")) >= 6
    (backup.src / "a.txt").write_text("one\ntwo\n")
    (backup.src / "b.bin").write_bytes(b"\x00\x02")
    assert _synced_before_commit(backup, _strace(backup, "all")) >= 4
    for day in range(3):
        (backup.src / "a.txt").write_text(f"v{day}\n" * 3)
        backup.doit("versioned", check=True)
    assert _synced_before_commit(backup, _strace(backup, "prune", "--keep-last", "1")) >= 1


@pytest.mark.parametrize("every", ["0", "60"])
def test_a_folder_that_became_a_file_killed_before_its_commit(backup: Backup, every: str
                                                              ) -> None:
    """The mirror folder goes before the file takes its place, its records with the
    group's commit: a run killed in between leaves records of the folder's entries
    that the next run drops (before, verify said "changed kind" for ever; adversary of
    issue 25)."""
    make_tree(backup.src, {"a.txt": "a\n", "d": {"sub": {"deep.txt": "deep\n",
                                                         "ln": Link("../x")}, "x": "x\n"}})
    aged(backup.src)
    backup.doit("snapshot", check=True)
    shutil.rmtree(backup.src / "d" / "sub")
    (backup.src / "d" / "sub").write_text("now a file\n")
    aged(backup.src)
    pristine = backup.base / "pristine"
    shutil.copytree(backup.dest, pristine, symlinks=True)
    env = {"SNAPBACK_COMMIT_EVERY": every}
    counts = _points(backup, "snapshot", env=env)
    assert counts["write"] >= 1, counts
    for kind in ("write", "rename", "fsync", "commit"):
        for n in range(1, counts[kind] + 1):
            shutil.rmtree(backup.dest)
            shutil.copytree(pristine, backup.dest, symlinks=True)
            result = backup.doit("snapshot", env={**env, "SNAPBACK_FAULT": f"{kind}:{n}"})
            assert result.returncode == -signal.SIGKILL, (kind, n, result.stdout)
            backup.doit("snapshot", check=True, env=env)
            code, out = backup.run("verify")
            assert code == 0, (kind, n, out)
            assert _state(backup.mirror) == _state(backup.src), (kind, n)
