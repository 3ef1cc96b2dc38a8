"""A full disk anywhere: FAILED lines, exit status 1, every file counted, never a traceback;
once there is room, the next run completes and every earlier run restores exactly.

Two ways to fill the destination at a chosen place:

* a real full filesystem: a small tmpfs filled with a ballast file that leaves exactly
  N bytes free, for a range of N, so that the disk fills while the catalog is opened
  (its WAL), while files are copied into the mirror or the history, at a catalog
  commit, at the run log, at the checkpoint when the catalog is closed;
* the fault hook (``SNAPBACK_FAULT=<kind>:<n>:enospc``): ENOSPC at exactly the n-th
  write, rename, sync or commit of a small scenario, each in turn.

After each: exit 1, one line per failure, no traceback, done + failed = scanned in
every mode's summary, the catalog names nothing that is not on disk, runs.jsonl holds
no line cut short; then, with room made, the next run exits 0, the mirror is the
source, ``verify --deep`` is clean and every earlier run restores exactly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from support import OK, PARTIAL, Backup, Link, aged, fill_disk, history_of, make_tree, tree

SUMMARY = re.compile(r"^(snapshot|versioned): (\d+) files?, (\d+) new, (\d+) updated, "
                     r"(\d+) deleted, (\d+) failed(?:, \d+ folders? failed)?;", re.M)
FULL = "No space left on device"




def _state(root: Path) -> dict:
    return tree(root, with_mtime=True)




def _failed_cleanly(b: Backup, result: subprocess.CompletedProcess, scanned: int) -> str:
    """The checks of a run that met a full disk; returns its whole output."""
    out = result.stdout + result.stderr
    assert result.returncode == PARTIAL, out
    assert "Traceback" not in out and "bug" not in out, out
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    assert failed or "cannot add this run" in out, out
    for line in failed:
        assert FULL in line, line
    summaries = SUMMARY.findall(result.stdout)
    assert [m for m, *_ in summaries] == ["snapshot", "versioned"], out
    for mode, files, new, updated, _deleted, fails in summaries:
        assert int(files) == scanned, out
        assert int(new) + int(updated) + int(fails) == scanned, (mode, out)   # every file
    for line in b.runs():                               # no record cut short
        json.loads(line)
    return out


def _names_only_what_is_on_disk(b: Backup) -> None:
    from pipeline.catalog import Catalog
    cat = Catalog(b.meta / "catalog.sqlite3", writable=False)
    try:
        rows, mirror = cat.all_rows(), cat.mirror_rows()
    finally:
        cat.close()
    for row in rows:
        for name in (row.object, row.copy):
            if name is not None:
                path = b.versions / os.fsdecode(row.store or b"") / os.fsdecode(name)
                assert path.is_file(), f"the catalog names {path}, not on disk"
    for _source, folder, name, *_rest in mirror:
        path = b.mirror / os.fsdecode(folder) / os.fsdecode(name)
        assert os.path.lexists(path), f"the catalog names {path}, not on disk"


def _completes(b: Backup, earlier: list[tuple[str, dict]], why: str) -> None:
    """With room made: the next run exits 0, then everything holds."""
    code, out = b.run("all")
    assert code == OK, (why, out)
    assert "bug" not in out, (why, out)
    assert _state(b.mirror) == _state(b.src), why
    code, out = b.run("verify", "--deep")
    assert code == OK, (why, out)
    assert [p for p in b.dest.rglob(".~snapback-*")] == [], why
    into = b.base / "restored"
    for run_id, state in [*earlier, ("", _state(b.src))]:
        shutil.rmtree(into, ignore_errors=True)
        at = ["--at", run_id] if run_id else []
        code, out = b.run("restore", str(b.src), *at, "--to", str(into))
        assert code == OK, (why, run_id, out)
        assert _state(into) == state, (why, run_id)


def _forty_files(b: Backup) -> None:
    make_tree(b.src, {f"d{d}": {f"f{i}.txt": f"line {d} {i}\n" * (200 + 50 * i)
                                for i in range(10)} for d in range(4)})
    aged(b.src)


def _place(out: str) -> set[str]:
    """Where the disk was found full, as the run's lines say."""
    found = set()
    if "cannot be opened" in out:
        found.add("catalog opened")
    if re.search(rf"^FAILED .*\.txt: {FULL}$", out, re.M):
        found.add("file copied")
    if "database or disk is full)" in out.replace("cannot be opened: database or disk is full",
                                                  ""):
        found.add("catalog commit")
    if "cannot add this run" in out:
        found.add("run log")
    if "journal was not folded back" in out:
        found.add("checkpoint")
    return found


# Bytes left free: the disk fills at the catalog's opening (its WAL and shared memory
# file), then in the mirror's copies, the history's objects, the commits, the run log.
FREE = [0, 16 << 10, 48 << 10, 96 << 10, 160 << 10, 256 << 10, 264 << 10, 296 << 10,
        304 << 10, 384 << 10, 392 << 10]


@pytest.mark.parametrize("every", ["0", "1"], ids=["a commit per folder", "a commit a second"])
@pytest.mark.parametrize("first_run, auto_prune", [(True, False), (False, False), (False, True)],
                         ids=["first run", "later run", "later run, retention.auto"])
def test_a_full_disk_at_every_size_fails_cleanly_and_the_next_run_completes(
        backup: Backup, small_disk: Path, first_run: bool, auto_prune: bool, every: str
        ) -> None:
    """FREE is where each place fills with a commit per folder; with a commit a second
    (the default) the catalog's journal grows less, and a run that finds room is
    complete (``_completes``), every place still found full at some size."""
    backup.dest = small_disk / "dest"
    if auto_prune:        # `doit all` prunes after the run (keeping every version here)
        backup.write_plan(retention={"keep_last": 5, "auto": True})
    else:
        backup.write_plan()
    _forty_files(backup)
    earlier: list[tuple[str, dict]] = []
    if not first_run:
        backup.doit("all", check=True)
        earlier.append((json.loads(backup.runs()[-1])["run_id"], _state(backup.src)))
        for path in sorted(backup.src.rglob("*.txt")):
            path.write_text(path.read_text() + "more\n" * 30)     # every file changes
        aged(backup.src)
    pristine = backup.base / "pristine"
    if backup.dest.exists():
        shutil.copytree(backup.dest, pristine, symlinks=True)
    places: Counter = Counter()
    for free in FREE:
        shutil.rmtree(backup.dest, ignore_errors=True)
        if pristine.exists():
            shutil.copytree(pristine, backup.dest, symlinks=True)
        ballast = fill_disk(small_disk, free)
        result = backup.doit("all", env={"SNAPBACK_COMMIT_EVERY": every})
        # (with a commit a second the run may find room: exactly 0 then, else exactly
        # 1, as with a commit per folder at every size)
        assert result.returncode in ((PARTIAL,) if every == "0" else (OK, PARTIAL)), \
            result.stdout + result.stderr
        if result.returncode == PARTIAL:
            places.update(_place(_failed_cleanly(backup, result, scanned=40)))
        ballast.unlink()                                       # room is made
        _names_only_what_is_on_disk(backup)     # (a reader may need room for the WAL's index)
        _completes(backup, earlier, f"{free} bytes free")
    # (FREE finds the run log and the checkpoint full with a commit per folder; with a
    # commit a second the run needs less room there, and the same code is filled at
    # those places by the first variant and test_the_run_log_and_the_report_on_a_full_disk)
    wanted = ["catalog opened", "file copied", "catalog commit"]
    for place in wanted + (["run log", "checkpoint"] if every == "0" else []):
        assert places[place], (place, places)


def test_the_run_log_and_the_report_on_a_full_disk(backup: Backup, small_disk: Path) -> None:
    """The run record does not fit in what is left of the run log's last block: the
    log is kept as it was, never with a record cut short (a short write is not an
    error until the next one), and the run says so.  --report FILE on the full disk:
    one warning (SPEC: a report that cannot be written never costs the backup)."""
    backup.dest = small_disk / "dest"
    backup.write_plan()
    make_tree(backup.src, {"a.txt": "a\n"})
    backup.doit("all", check=True)
    log = backup.meta / "runs.jsonl"
    size = log.stat().st_size
    room = 40                                    # bytes left in the log's last block
    pad = -(size + room) % 4096 or 4096
    note = "x" * (pad - len('{"run_id": "pad", "mode": "prune", "note": ""}\n'))
    with open(log, "a") as fh:                   # a record a prune could have written
        fh.write(json.dumps({"run_id": "pad", "mode": "prune", "note": note}) + "\n")
    before = log.read_bytes()
    assert (len(before) + room) % 4096 == 0
    (backup.src / "a.txt").write_text("a\nb\n")
    aged(backup.src)
    ballast = fill_disk(small_disk, 0)
    report = small_disk / "reports" / "run.json"
    result = backup.doit("all", "--report", str(report))
    out = _failed_cleanly(backup, result, scanned=1)
    assert f"cannot add this run to {log}: {FULL}" in out
    assert log.read_bytes() == before                      # not a byte cut short
    assert f"the report {report} was not written ({FULL})" in out
    ballast.unlink()
    _names_only_what_is_on_disk(backup)
    _completes(backup, [], "run log")
    assert [json.loads(line)["mode"] for line in backup.runs()] == ["all", "prune", "all"]


# ---- the fault hook: ENOSPC at every write, rename, sync and commit point ----

KINDS = ("write", "rename", "fsync", "commit")


def _points(b: Backup, *args: str, env: dict[str, str] | None = None) -> Counter:
    log = b.base / "points.log"
    log.unlink(missing_ok=True)
    result = b.doit(*args, env={"SNAPBACK_FAULT_LOG": str(log), **(env or {})})
    assert result.returncode == OK, result.stdout + result.stderr
    return Counter(log.read_text().split())


@pytest.mark.parametrize("mode, every", [("versioned", "0"), ("all", "0"), ("all", "60")],
                         ids=["versioned, a commit a folder", "all, a commit a folder",
                              "all, folders committed together"])
def test_enospc_at_every_point_fails_cleanly_and_the_next_run_completes(
        backup: Backup, mode: str, every: str) -> None:
    make_tree(backup.src, {"notes.txt": "one\ntwo\n", "img.bin": b"\x00\x01" * 50,
                           "gone.txt": "bye\n",
                           "d": {"keep.txt": "k\n", "to": Link("../notes.txt")}})
    aged(backup.src)
    backup.doit("all", check=True)
    earlier = [(json.loads(backup.runs()[-1])["run_id"], _state(backup.src))]
    (backup.src / "notes.txt").write_text("one\nTWO\nthree\n")
    (backup.src / "img.bin").write_bytes(b"\x00\x02" * 60)
    (backup.src / "gone.txt").unlink()
    (backup.src / "new.txt").write_text("new\n")
    os.chmod(backup.src / "d" / "keep.txt", 0o640)
    os.unlink(backup.src / "d" / "to")
    os.symlink("../new.txt", backup.src / "d" / "to")
    aged(backup.src)
    pristine = backup.base / "pristine"
    shutil.copytree(backup.dest, pristine, symlinks=True)
    counts = _points(backup, mode, env={"SNAPBACK_COMMIT_EVERY": every})
    assert counts["commit"] >= (2 if every == "0" else 1) and counts["fsync"] >= 1, counts
    for kind in KINDS:
        for n in range(1, counts[kind] + 1):
            why = f"{kind}:{n}:enospc"
            shutil.rmtree(backup.dest)
            shutil.copytree(pristine, backup.dest, symlinks=True)
            result = backup.doit(mode, env={"SNAPBACK_FAULT": why,
                                            "SNAPBACK_COMMIT_EVERY": every})
            out = result.stdout + result.stderr
            assert result.returncode == PARTIAL, (why, out)
            assert "Traceback" not in out and "bug" not in out, (why, out)
            failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
            assert failed and all(FULL in line for line in failed), (why, out)
            for m, files, new, updated, _deleted, fails in SUMMARY.findall(result.stdout):
                assert int(new) + int(updated) + int(fails) == int(files) == 5, (why, m, out)
            _names_only_what_is_on_disk(backup)
            _completes(backup, earlier, why)


def test_a_commit_that_fails_first_leaves_the_run_in_the_order(backup: Backup) -> None:
    """The run enters the catalog's run order with its first write; when that
    transaction is rolled back (a full disk), its later commits enter it again: the
    run's versions belong to a run that restores by its id."""
    make_tree(backup.src, {"r.txt": "r1\n", "a": {"x.txt": "x1\n"}})
    aged(backup.src)
    backup.doit("versioned", check=True)
    (backup.src / "r.txt").write_text("r2\n")             # the root folder's commit: first
    (backup.src / "a" / "x.txt").write_text("x2\n")
    aged(backup.src)
    result = backup.doit("versioned", env={"SNAPBACK_FAULT": "commit:1:enospc",
                                           "SNAPBACK_COMMIT_EVERY": "0"})
    assert result.returncode == PARTIAL, result.stdout + result.stderr
    assert f"FAILED   src/r.txt: {FULL}" in result.stdout
    run_id = json.loads(backup.runs()[-1])["run_id"]
    recorded = [r.name for r in backup.catalog() if r.run_id == run_id and r.entry == "file"]
    assert recorded == [b"x.txt"], (recorded, result.stdout)
    into = backup.base / "restored"
    code, out = backup.run("restore", str(backup.src), "--at", run_id, "--to", str(into))
    assert code == OK, out
    assert {p.name: p.read_text() for p in into.rglob("*.txt")} == {"r.txt": "r1\n",
                                                                   "x.txt": "x2\n"}
    assert "updated  src/r.txt" in backup.run("versioned")[1]    # recorded next run


@pytest.mark.parametrize("mode", ["snapshot", "all"])
def test_a_mirror_removal_whose_commit_failed_is_not_said(backup: Backup, mode: str) -> None:
    """A file deleted from the source leaves the mirror once the group's commit drops
    its record; when that commit fails (a full disk), the copy stays (still named), so
    the run does not say it went, nor count it (adversary of issue 25)."""
    make_tree(backup.src, {"keep.txt": "k\n", "gone.txt": "bye\n", "d": {"x.txt": "x\n"}})
    aged(backup.src)
    backup.doit("all", check=True)
    (backup.src / "gone.txt").unlink()
    result = backup.doit(mode, env={"SNAPBACK_FAULT": "commit:1:enospc"})
    assert result.returncode == PARTIAL, result.stdout + result.stderr
    said = [line for line in result.stdout.splitlines() if line.startswith("deleted")]
    assert all("[history]" in line for line in said), result.stdout   # its own commit
    assert "snapshot: 2 files, 0 new, 0 updated, 0 deleted" in result.stdout, result.stdout
    assert (backup.mirror / "gone.txt").exists()
    code, out = backup.run("verify")
    assert code == OK, out
    code, out = backup.run(mode)                  # once there is room
    assert code == OK and "src/gone.txt" in out and "deleted" in out, out
    assert not (backup.mirror / "gone.txt").exists()


def test_a_run_whose_only_commit_failed_restores_as_the_runs_before_it(backup: Backup,
                                                                       tmp_path) -> None:
    """A run that put a copy in the mirror but whose catalog commit failed (a full disk)
    is in the run log, not in the catalog, and its record says so: ``--at`` it is the
    state the runs before it left, as for any run that changed only the mirror, never
    refused as a run of a newer catalog (helper-43)."""
    import json
    make_tree(backup.src, {"f1.txt": "one\n", "f2.txt": "two\n"})
    aged(backup.src)
    backup.doit("all", check=True)
    (backup.src / "g.txt").write_text("g\n")
    result = backup.doit("snapshot", env={"SNAPBACK_FAULT": "commit:1:enospc"})
    assert result.returncode == PARTIAL, result.stdout + result.stderr
    record = json.loads(backup.runs()[-1])
    assert record["counts"]["new"] == 1 and record["in_catalog"] is False, record
    code, out = backup.run("restore", str(backup.src), "--at", record["run_id"], "--to",
                           str(tmp_path / "back"))
    assert code == OK, out
    assert sorted(p.name for p in (tmp_path / "back").iterdir()) == ["f1.txt", "f2.txt"]


def test_a_folder_that_failed_its_commit_is_counted_in_the_summary(backup: Backup) -> None:
    """helper-51, helper-54: the summary said "0 failed" beside the line ``FAILED
    [mirror] src/: ... not recorded in the catalog`` (a folder's failure counts no file:
    its copies are in the mirror, its records not).  The summary names the folders, and
    so does the run record (helper-56: the JSON report had no word of them)."""
    make_tree(backup.src, {"a.txt": "a\n", "b.txt": "b\n"})
    backup.doit("all", check=True)
    (backup.src / "a.txt").write_text("a2\n")
    report = backup.base / "report.json"
    failed = backup.doit("all", "--report", str(report),
                         env={"SNAPBACK_FAULT": "commit:1:enospc"})
    out = failed.stdout + failed.stderr
    assert failed.returncode == PARTIAL, out
    record = json.loads(report.read_text())
    lines = out.splitlines()
    folder_lines = Counter(line.split()[1] for line in lines
                           if line.startswith("FAILED") and line.split()[2].endswith("/:"))
    assert folder_lines, out
    for mode, label in (("snapshot", "[mirror]"), ("versioned", "[history]")):
        summary = next(line for line in lines if line.startswith(f"{mode}:"))
        if folder_lines[label]:
            assert f"{folder_lines[label]} folder failed" in summary, out
        else:
            assert "folder" not in summary, out
        assert record["modes"][mode]["failed_folders"] == folder_lines[label], record
        failed_here = [f for f in record["failed"] if f["mode"] == mode]
        assert len(failed_here) == record["modes"][mode]["failed"] + \
            record["modes"][mode]["failed_folders"], record
    backup.doit("all", check=True)                   # room again: the next run completes


@pytest.mark.parametrize("every", ["0", "1"])
def test_a_run_that_committed_nothing_is_not_pruned_after(backup: Backup, every: str) -> None:
    """retention.auto prunes after a run that changed the backup; a run whose commit
    failed (a full disk) changed nothing, and its prune was made all the same (on a disk
    still full, the failure said a second time: helper-60)."""
    make_tree(backup.src, {"a.txt": "a\n"})
    backup.doit("all", check=True)
    (backup.src / "a.txt").write_text("a2\n")
    backup.doit("all", check=True)                       # two versions: one to prune
    backup.write_plan(retention={"keep_last": 1, "auto": True})
    (backup.src / "a.txt").write_text("a3\n")
    failed = backup.doit("all", env={"SNAPBACK_FAULT": "commit:1:enospc",
                                     "SNAPBACK_COMMIT_EVERY": every})
    out = failed.stdout + failed.stderr
    assert failed.returncode == PARTIAL, out
    assert "retention.auto" not in out, out
    assert len(history_of(backup, "a.txt")) == 2, out
    done = backup.doit("all", env={"SNAPBACK_COMMIT_EVERY": every})
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(history_of(backup, "a.txt")) == 1                       # keep_last 1


def test_a_prune_that_stops_part_way_says_so_and_the_next_finishes(backup: Backup) -> None:
    """helper-60, helper-61: retention.auto stopped by a full disk after the first file's
    pruning was committed said "the prune was not done" beside versions it had dropped.
    It says it stopped, and the next run's prune does the rest."""
    make_tree(backup.src, {"a.txt": "a\n", "b.txt": "b\n"})
    backup.doit("all", check=True)
    for name in ("a.txt", "b.txt"):
        (backup.src / name).write_text(f"{name} 2\n")
    backup.doit("all", check=True)
    backup.write_plan(retention={"keep_last": 1, "auto": True})
    for name in ("a.txt", "b.txt"):
        (backup.src / name).write_text(f"{name} 3\n")
    failed = backup.doit("all", env={"SNAPBACK_FAULT": "remove:1:enospc"})
    out = failed.stdout + failed.stderr
    assert failed.returncode == PARTIAL, out
    assert "retention.auto: the prune stopped (" in out and "not done" not in out, out
    (backup.src / "a.txt").write_text("a.txt 4\n")
    backup.doit("all", check=True)
    assert [len(history_of(backup, n)) for n in ("a.txt", "b.txt")] == [1, 1]
    assert backup.doit("verify", "--deep").returncode == 0
