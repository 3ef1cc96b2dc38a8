#!/usr/bin/env python3
"""The floor of a first backup in Python, beside rsync and snapback.  By hand, not in CI.

    python bench/floor.py SOURCE [--tmp /dev/shm] [--repeat 3]

What any Python program must do to make a first backup of SOURCE in each of
snapback's modes, and nothing more: one walk (os.scandir, one lstat per entry;
not into the folders rsync's --exclude and snapback's default rules leave out); for
each file one reading (open, read, sha256) and, for each copy the mode
makes (the mirror; the history's baseline in a folder of its own; both for
`all`), a temporary file written, fchmod, utime, close, rename and one SQLite
row; one commit per folder.  No checks, no output, no doit.  The last floor
writes snapback's own catalog rows instead (its schema: the versions row with
its indexes and triggers, the mirror row, synchronous=full, a commit per folder
and mode): what the catalog's format costs, the rest as above.  The contract floors
(``bench/floor_contract.py``, one per mode) add what SPEC asks of any snapback in its
cheapest form: the folders' work as doit tasks, a commit a second with a ``syncfs``
before it, a signature per folder recorded for the next run.  A floor's time against
rsync's says how far the per-file cost of snapback can come down without
leaving Python; snapback's against it, what snapback adds.
borg (unencrypted, lz4) and restic (its default) back up the same tree in the
same run where they are installed.  Each figure is the median of --repeat runs,
each into an empty destination (removed between runs, not timed), CPU time as
the child's user + system.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# One reading of a file, one temporary file per copy (bench/floor_changed.py's too).
COPY = r'''
CHUNK = 1 << 20

def copy(path, tmps, st):
    # one reading, one temporary file per area
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    outs = [os.open(t, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600) for t in tmps]
    h = hashlib.sha256()
    while chunk := os.read(fd, CHUNK):
        h.update(chunk)
        for out in outs:
            os.write(out, chunk)
    for out in outs:
        os.fchmod(out, stat.S_IMODE(st.st_mode))
        os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.close(out)
    os.close(fd)
    return h.hexdigest()
'''

FLOOR = r'''
import hashlib, os, sqlite3, stat, sys
src, dest, areas = os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2]), sys.argv[3]
os.makedirs(dest, exist_ok=True)
db = sqlite3.connect(os.path.join(dest, b"catalog.sqlite3"), isolation_level=None)
db.execute("pragma journal_mode=wal")
SCHEMA = len(sys.argv) > 4       # snapback's own catalog: its tables, indexes, triggers
if SCHEMA:
    from pipeline.catalog import SCHEMA as TABLES
    db.execute("pragma synchronous=full")
    db.executescript(TABLES)
else:
    db.execute("create table rows (dir blob, name blob, size int, mtime int, sha text)")
VERSION = ("insert into versions (source, dir, name, entry, kind, time, run_id, note, store, "
           "object, size, sha256, mode, mtime_ns, ctime_ns, ino, recorded, object_sha256) "
           "values ('src',?,?,'file','baseline','2026-12-06_00-00-00','2026-12-06_00-00-00',"
           "'',?,?,?,?,?,?,?,?,1.0,?)")
MIRROR = ("insert or replace into mirror (source, dir, name, size, mtime_ns, sha256, mode, "
          "run_id, kind, ctime_ns, ino) values ('src',?,?,?,?,?,?,'r','file',?,?)")


def record(area, rel, name, st, sha):
    if not SCHEMA:
        db.execute("insert into rows values (?,?,?,?,?)", (rel, name, st.st_size,
                   st.st_mtime_ns, sha))
    elif area is history:
        db.execute(VERSION, (rel, name, os.path.join(rel, name), name, st.st_size, sha,
                             st.st_mode, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, sha))
    else:
        db.execute(MIRROR, (rel, name, st.st_size, st.st_mtime_ns, sha, st.st_mode,
                            st.st_ctime_ns, st.st_ino))
''' + COPY + r'''
stack = [b""]
mirror, history = os.path.join(dest, b"mirror"), os.path.join(dest, b"history")
wanted = {"mirror": (mirror,), "history": (history,), "both": (mirror, history)}[areas]
while stack:
    rel = stack.pop()
    here = os.path.join(src, rel) if rel else src
    for area in wanted:
        os.makedirs(os.path.join(area, rel), exist_ok=True)
    files = []
    with os.scandir(here) as it:
        for e in it:
            st = e.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                if e.name not in (b"__pycache__", b"node_modules", b".venv"):   # (rsync's
                    stack.append(os.path.join(rel, e.name) if rel else e.name)  # excludes)
            elif stat.S_ISREG(st.st_mode):
                files.append((e.name, st))
    db.execute("begin")
    for name, st in files:
        if SCHEMA and not db.in_transaction:
            db.execute("begin")
        finals = []
        for area in wanted:
            if area is history:
                home = os.path.join(area, rel, name)
                os.mkdir(home)
                finals.append(os.path.join(home, name))
            else:
                finals.append(os.path.join(area, rel, name))
        sha = copy(os.path.join(here, name), [f + b".tmp" for f in finals], st)
        for area, final in zip(wanted, finals):
            os.rename(final + b".tmp", final)
            record(area, rel, name, st, sha)
    if SCHEMA:                       # one commit per folder and mode, as snapback makes
        for _area in wanted:
            if db.in_transaction:
                db.execute("commit")
            db.execute("begin")
            db.execute("insert or replace into folders (mode, source, dir) values "
                       "('m', 'src', ?)", (rel,))
            db.execute("commit")
    else:
        db.execute("commit")
'''


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, peak RSS in KB) of one child."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--tmp", type=Path, default=Path("/dev/shm"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    source = args.source.resolve()
    work = Path(tempfile.mkdtemp(prefix="floor-", dir=args.tmp))
    dest = work / "dest"
    plan = work / "plan.yaml"
    plan.write_text(f"version: 1\ndestination: {dest}\nsources:\n  - path: {source}\n"
                    "    name: src\n")
    env = {**os.environ, "SNAPBACK_CONFIG": str(plan)}
    snapback = [sys.executable, "-m", "pipeline"]
    excludes = ["--exclude=__pycache__/", "--exclude=node_modules/", "--exclude=.venv/"]
    contract = [sys.executable, str(Path(__file__).resolve().parent / "floor_contract.py"),
                str(source), str(dest / "contract")]
    repo = str(dest / "repo")
    env["RESTIC_PASSWORD"] = "bench"
    env["BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK"] = "yes"
    # name -> (untimed preparation or None, the timed command)
    runs: dict[str, tuple[list[str] | None, list[str]]] = {
        "rsync -a": (None, ["rsync", "-a", *excludes, f"{source}/", str(dest / "mirror")]),
        "python floor, the mirror": (None, [sys.executable, "-c", FLOOR, str(source),
                                            str(dest), "mirror"]),
        "contract floor, the mirror": (None, [*contract, "snapshot"]),
        "snapback snapshot": (None, [*snapback, "snapshot", "--quiet"]),
        "python floor, the history": (None, [sys.executable, "-c", FLOOR, str(source),
                                             str(dest), "history"]),
        "contract floor, the history": (None, [*contract, "versioned"]),
        "snapback versioned": (None, [*snapback, "versioned", "--quiet"]),
        "python floor, both (one reading)": (None, [sys.executable, "-c", FLOOR,
                                                    str(source), str(dest), "both"]),
        "contract floor, both": (None, [*contract, "all"]),
        "snapback all": (None, [*snapback, "all", "--quiet"]),
        "python floor, both, snapback's catalog rows": (None, [
            sys.executable, "-c", FLOOR, str(source), str(dest), "both", "schema"]),
    }
    if shutil.which("borg"):
        runs["borg create (lz4)"] = (["borg", "init", "-e", "none", repo],
                                     ["borg", "create", f"{repo}::first", str(source),
                                      "-e", "*/__pycache__", "-e", "*/node_modules",
                                      "-e", "*/.venv"])
    if shutil.which("restic"):
        runs["restic backup"] = (["restic", "init", "--repo", repo, "-q"],
                                 ["restic", "backup", "--repo", repo, "-q", str(source),
                                  "--exclude", "__pycache__", "--exclude", "node_modules",
                                  "--exclude", ".venv"])
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in runs}
    try:
        for _ in range(args.repeat):
            for name, (prepare, cmd) in runs.items():
                shutil.rmtree(dest, ignore_errors=True)
                dest.mkdir(mode=0o700)
                if prepare is not None:
                    subprocess.run(prepare, env=env, check=True, capture_output=True)
                results[name].append(timed(cmd, env))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table(f"first backup of {source} ({args.repeat} runs, medians; {args.tmp})", results,
          "rsync -a")


def table(title: str, results: dict[str, list[tuple[float, float, int]]], base: str) -> None:
    """The medians of each command's (wall, CPU, peak RSS), against ``base``'s wall."""
    rsync = statistics.median(r[0] for r in results[base])
    print(title)
    print("| | wall | x rsync | CPU | peak RSS |")
    print("|---|---:|---:|---:|---:|")
    for name, samples in results.items():
        wall = statistics.median(s[0] for s in samples)
        cpu = statistics.median(s[1] for s in samples)
        rss = max(s[2] for s in samples)
        print(f"| {name} | {wall:.2f} s | {wall / rsync:.1f} | {cpu:.2f} s | {rss // 1024} MB |")


if __name__ == "__main__":
    main()
