"""An area of the destination on a filesystem of its own (a btrfs subvolume, another
disk, a tmpfs): every stored file still gets its name there, and is on stable storage
before the commit that names it.

The history's objects are prepared in the staging folder (.snapback/tmp), which is on
the destination's filesystem: a hard link or rename from there into another filesystem
fails (EXDEV).  Before, every file of such a history was FAILED "Invalid cross-device
link", run after run; and the commit synced only the catalog's filesystem."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support import Backup, Link, aged, make_tree, strace, tree


@contextmanager
def _own_filesystem(*folders: Path) -> Iterator[None]:
    mounted: list[Path] = []
    try:
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
            result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs",
                                     str(folder)], capture_output=True)
            if result.returncode != 0:              # probing the machine, not snapback
                pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
            mounted.append(folder)
        yield
    finally:
        for folder in reversed(mounted):
            subprocess.run(["umount", str(folder)], check=False)


def _left_behind(b: Backup) -> list[str]:
    return [str(p) for p in b.dest.rglob(".~snapback-*")]


def test_a_history_on_a_filesystem_of_its_own(backup: Backup) -> None:
    make_tree(backup.src, {"notes.txt": "one\n", "pic.bin": bytes(range(256)) * 80,
                           "d": {"a.txt": "a\n"}, "link": Link("notes.txt")})
    aged(backup.src)
    with _own_filesystem(backup.dest / "versioned_backup"):
        code, out = backup.run("all")
        assert code == 0, out
        assert "versioned: 4 files, 4 new, 0 updated, 0 deleted, 0 failed" in out, out
        first = json.loads(backup.runs()[-1])["run_id"]
        before = tree(backup.src, with_mtime=True)
        (backup.src / "notes.txt").write_text("one\ntwo\n")                 # a diff
        (backup.src / "pic.bin").write_bytes(bytes(range(256)) * 80 + b"x")  # a delta
        (backup.src / "d" / "a.txt").rename(backup.src / "d" / "b.txt")     # a link
        code, out = backup.run("all")
        assert code == 0, out
        assert "versioned: 4 files, 1 new, 2 updated, 1 deleted, 0 failed" in out, out
        into = backup.base / "restored"
        code, out = backup.run("restore", str(backup.src), "--at", first, "--to", str(into))
        assert code == 0, out
        assert tree(into, with_mtime=True) == before
        assert backup.run("verify", "--deep")[0] == 0
        code, out = backup.run("prune", "--keep-last", "1")
        assert code == 0, out
        assert backup.run("verify", "--deep")[0] == 0
        assert _left_behind(backup) == []
        assert list((backup.meta / "tmp").iterdir()) == []


def _placed_unsynced(calls: list[str], mounts: list[Path]) -> dict[str, list[str]]:
    """From ``strace -f -y`` lines: the files given their final name on each of
    ``mounts`` that no syncfs of that filesystem followed before the next WAL sync."""
    pending: dict[str, list[str]] = {str(m): [] for m in mounts}
    late: dict[str, list[str]] = {}
    for line in calls:
        call = line.split("(")[0].split()[-1] if "(" in line else ""
        if ("link" in call or "rename" in call) and "= 0" in line:
            target = line.rsplit('"', 2)[-2]
            for mount, files in pending.items():
                if target.startswith(mount + "/"):
                    files.append(target)
        elif call == "syncfs":
            for mount in pending:
                if f"<{mount}" in line:
                    pending[mount].clear()
        elif call in ("fsync", "fdatasync") and "-wal>" in line:
            for mount, files in pending.items():
                if files:
                    late.setdefault(mount, []).extend(files)
                    files.clear()
    return late


def test_each_filesystem_is_synced_before_the_commit_that_names_its_files(
        backup: Backup) -> None:
    """From the recorded system calls: a file given its final name in an area on a
    filesystem of its own is followed by a syncfs of that filesystem before the next
    catalog commit (the WAL's sync); a syncfs of the destination's does not reach it."""
    make_tree(backup.src, {"a.txt": "one\n", "d": {"b.bin": b"\x00\x01" * 3000}})
    aged(backup.src)
    areas = [backup.dest / "system_snapshot", backup.dest / "versioned_backup"]
    with _own_filesystem(*areas):
        for change in range(2):
            calls = strace(backup, "link,linkat,rename,renameat,renameat2,fsync,fdatasync,"
                           "syncfs", "all")
            assert sum(1 for line in calls if str(backup.dest) in line and "= 0" in line
                       and ("link(" in line or "rename(" in line)) >= 4, calls
            assert _placed_unsynced(calls, areas) == {}
            (backup.src / "a.txt").write_text(f"change {change}\n")
            (backup.src / "d" / "b.bin").write_bytes(b"\x00\x02" * 3000 + bytes(change))


def _points(b: Backup, *args: str) -> dict[str, int]:
    log = b.base / "points.log"
    log.unlink(missing_ok=True)
    result = b.doit(*args, env={"SNAPBACK_FAULT_LOG": str(log)})
    assert result.returncode == 0, result.stdout + result.stderr
    counts: dict[str, int] = {}
    for kind in log.read_text().split():
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def test_a_run_killed_at_each_point_of_a_history_on_its_own_filesystem(backup: Backup
                                                                      ) -> None:
    """The history on a filesystem of its own: a run killed, or finding the disk full,
    at each write, rename, sync and commit (the copy beside its final name included)
    leaves a backup the next run completes: verify passes, nothing of the killed run is left in a history
    folder or the staging folder, and the history's newest versions are the source."""
    base = backup.src
    make_tree(base, {"notes.txt": "one\n", "pic.bin": bytes(range(256)) * 40,
                     "d": {"a.txt": "a\n"}})
    aged(base)

    def fresh(n: int) -> None:
        backup.src, backup.dest = backup.base / f"src{n}", backup.base / f"dest{n}"
        subprocess.run(["cp", "-a", str(base), str(backup.src)], check=True)
        backup.write_plan()

    def change() -> None:
        (backup.src / "notes.txt").write_text("one\ntwo\n")
        (backup.src / "pic.bin").write_bytes(bytes(range(256)) * 40 + b"x")
        (backup.src / "d" / "new.txt").write_text("new\n")

    fresh(0)
    with _own_filesystem(backup.dest / "versioned_backup"):
        assert backup.run("all")[0] == 0
        change()
        counts = _points(backup, "all")
    assert counts.get("rename", 0) >= 3, counts
    n = 0
    for kind, count in sorted(counts.items()):
        for at, how in [(at, how) for at in range(1, count + 1) for how in ("", ":enospc")]:
            n += 1
            fresh(n)
            with _own_filesystem(backup.dest / "versioned_backup"):
                assert backup.run("all")[0] == 0
                change()
                cut = backup.doit("all", env={"SNAPBACK_FAULT": f"{kind}:{at}{how}"})
                # killed there, or the disk full there: a FAILED line, exit status 1
                assert cut.returncode == (1 if how else -signal.SIGKILL), (kind, at, how)
                assert "Traceback" not in cut.stdout + cut.stderr, cut.stderr
                code, out = backup.run("all")
                assert code == 0, (kind, at, out)
                assert backup.run("verify", "--deep")[0] == 0, (kind, at)
                assert _left_behind(backup) == [], (kind, at)
                assert list((backup.meta / "tmp").iterdir()) == [], (kind, at)
                into = backup.base / f"restored{n}"
                code, out = backup.run("restore", str(backup.src), "--to", str(into))
                assert code == 0, out
                assert tree(into, with_mtime=True) == tree(backup.src, with_mtime=True), (
                    kind, at)


def test_a_folder_deeper_in_an_area_on_a_filesystem_of_its_own_is_synced_too(
        backup: Backup) -> None:
    """One folder of a source's history and of its mirror moved to a disk of its own
    (``versioned_backup/src/photos``, ``system_snapshot/src/photos``): the files
    placed there are on stable storage before the commit that names them, as those
    of an area or a source's folder that is a mount."""
    make_tree(backup.src, {"a.txt": "one\n", "photos": {"t.txt": "t\n",
                                                          "p.bin": b"\x00\x01" * 9000}})
    aged(backup.src)
    assert backup.run("all")[0] == 0
    deep = [backup.dest / "system_snapshot" / "src" / "photos",
            backup.versions / "photos"]
    saved = backup.base / "saved"
    saved.mkdir()
    for n, folder in enumerate(deep):                   # the same files, on a disk of its own
        subprocess.run(["cp", "-a", str(folder), str(saved / str(n))], check=True)
    with _own_filesystem(*deep):
        for n, folder in enumerate(deep):
            subprocess.run(["cp", "-a", f"{saved / str(n)}/.", str(folder)], check=True)
        (backup.src / "photos" / "t.txt").write_text("t\nu\n")
        (backup.src / "photos" / "p.bin").write_bytes(b"\x00\x01" * 9000 + b"x")
        (backup.src / "photos" / "new.txt").write_text("new\n")
        calls = strace(backup, "link,linkat,rename,renameat,renameat2,fsync,fdatasync,"
                       "syncfs", "all")
        assert sum(1 for line in calls if "/photos/" in line and "= 0" in line
                   and ("link(" in line or "rename(" in line)) >= 6, calls
        assert _placed_unsynced(calls, deep) == {}
        assert backup.run("verify", "--deep")[0] == 0


@pytest.mark.parametrize("how", ["unmounted", "folder gone"])
def test_a_history_gone_from_the_destination_is_not_written_again(backup: Backup,
                                                                 how: str) -> None:
    """The history's disk unmounted (its mount point an empty folder), or its folder
    gone, while the catalog names what it stored there: the run writes nothing of it
    (what it wrote into the mount point would be hidden when the disk comes back, and
    the versions it recorded lost), says so in one FAILED line, exit status 1; the
    mirror is kept as usual.  With the history back, the next run stores the change.
    (Was: exit 0, every changed file stored whole into the empty mount point.)"""
    make_tree(backup.src, {"t.txt": "one\n", "d": {"p.bin": bytes(range(256)) * 80}})
    aged(backup.src)
    history = backup.dest / "versioned_backup"
    elsewhere = backup.base / "history-disk"
    elsewhere.mkdir()
    history.mkdir(parents=True)
    if how == "unmounted":
        mounted = subprocess.run(["mount", "--bind", str(elsewhere), str(history)],
                                 capture_output=True)
        if mounted.returncode != 0:                 # probing the machine, not snapback
            pytest.skip(f"cannot bind-mount here: {mounted.stderr.decode().strip()}")
    try:
        assert backup.run("all")[0] == 0
        if how == "unmounted":
            subprocess.run(["umount", str(history)], check=True)
        else:
            (history / "src").rename(elsewhere / "src")
        (backup.src / "t.txt").write_text("one\ntwo\n")
        code, out = backup.run("all")
        assert code == 1, out
        assert "FAILED   [history]        src/: the history is missing" in out, out
        assert (backup.mirror / "t.txt").read_text() == "one\ntwo\n"
        assert [p for p in history.rglob("*")] == []           # nothing written there
        if how == "unmounted":
            subprocess.run(["mount", "--bind", str(elsewhere), str(history)], check=True)
        else:
            (elsewhere / "src").rename(history / "src")
        code, out = backup.run("all")
        assert code == 0, out
        assert "versioned: 2 files, 0 new, 1 updated, 0 deleted, 0 failed" in out, out
        assert backup.run("verify", "--deep")[0] == 0
    finally:
        if how == "unmounted":
            subprocess.run(["umount", str(history)], check=False)


def test_a_history_root_holding_only_a_folder_no_row_names_is_gone_too(backup: Backup) -> None:
    """A blank disk mounted where the history was (mkfs left its empty lost+found
    there), or an empty folder left in the mount point: nothing the catalog names is
    there, so the history is gone just as with an empty mount point.  (Was: exit 0,
    the change stored whole beside lost+found.)"""
    make_tree(backup.src, {"t.txt": "one\n"})
    aged(backup.src)
    assert backup.run("all")[0] == 0
    shutil.rmtree(backup.versions)
    (backup.versions / "lost+found").mkdir(parents=True)
    (backup.src / "t.txt").write_text("one\ntwo\n")
    code, out = backup.run("all")
    assert code == 1, out
    assert "FAILED   [history]        src/: the history is missing" in out, out
    assert [p.name for p in backup.versions.rglob("*")] == ["lost+found"]


def test_a_killed_run_s_objects_go_when_the_file_is_deleted(backup: Backup) -> None:
    """A run killed before its commit leaves objects no row names in a file's history
    folder; the next version of the file sweeps them, and so does its deletion (was:
    left there for good when the file was deleted, for a user rebuilding by hand to
    meet: a diff of a version that was never recorded)."""
    make_tree(backup.src, {"t.txt": "one\n", "u.txt": "u\n"})
    aged(backup.src)
    assert backup.run("versioned")[0] == 0
    (backup.src / "t.txt").write_text("one\ntwo\n")
    killed = backup.doit("versioned", env={"SNAPBACK_FAULT": "commit:1"})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    diffs = backup.versions / "t.txt" / "t.txt_diffs"
    assert [p.name for p in diffs.iterdir()] != []                # the killed run's diff
    (backup.src / "t.txt").unlink()
    code, out = backup.run("versioned")
    assert code == 0, out
    assert "versioned: 1 file, 0 new, 0 updated, 1 deleted, 0 failed" in out, out
    assert not diffs.exists() or list(diffs.iterdir()) == []
    assert backup.run("verify", "--deep")[0] == 0
