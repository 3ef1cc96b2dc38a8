#!/usr/bin/env python3
"""The floor of a run with 1% changed, in Python, beside rsync and snapback.  By hand.

    python bench/floor_changed.py TREE [--rounds 5] [--tmp /dev/shm] [--reuse]
                                       [--contract | --contract-only]

TREE holds ``src/`` (the bench corpora: ``bench/bench.py``'s trees, /dev/shm/m240).
Each round edits about 1% of the text files, adds 5, deletes 5 and touches 5
(``bench.mutate``), then times, one after the other on the same change: ``rsync -a
--delete`` into its mirror, the Python floor into its destination, and ``snapback
all`` into its own.  Each was brought in line with the tree before the first round
(not timed).

The floor is what any Python program must do to back that change up in both of
snapback's modes and nothing more: one walk (os.scandir, one lstat per entry, a
signature of each folder's listing compared with the one it stored); for each
folder whose signature changed, its stored rows (one query), the mirror folder's
entries (one lstat each, as rsync's receiver and snapback's snapshot do) and, for
each file whose stat differs, one reading (open, read, sha256) into two temporary
files (the mirror's copy and the history's, whole: no diff), two renames and two
rows; what left is removed from the mirror; one commit per folder
(``synchronous=full``).  No doit, no output, no checks, no diffs, no rules.  Its
time against rsync's says how far a Python program can come; snapback's against
it, what snapback adds.  ``--contract`` also times ``bench/floor_contract.py``: this
floor, plus what SPEC and the mission ask of any snapback (doit tasks, a commit a
second with a ``syncfs`` before it, a unified diff per changed text file).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import floor

import bench

FLOOR = r'''
import hashlib, os, sqlite3, stat, sys
src, dest = os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2])
os.makedirs(dest, exist_ok=True)
mirror, history = os.path.join(dest, b"mirror"), os.path.join(dest, b"history")
db = sqlite3.connect(os.path.join(dest, b"catalog.sqlite3"), isolation_level=None)
db.execute("pragma journal_mode=wal")
db.execute("pragma synchronous=full")
db.executescript("""
create table if not exists folders (dir blob primary key, sig blob);
create table if not exists files (dir blob, name blob, size int, mtime int, ctime int,
                                  ino int, sha text, primary key (dir, name));
create table if not exists versions (id integer primary key, dir blob, name blob,
                                     object blob, size int, sha text);
create index if not exists versions_by_path on versions (dir, name);
""")
stored = dict(db.execute("select dir, sig from folders"))
''' + floor.COPY + r'''
sys.path.insert(0, "bench")
from floor_walk import folders, mirror_changes
for rel, here, entries, files, sig in folders(src):
    if stored.get(rel) == sig:
        continue
    there, existing, changed = mirror_changes(db, mirror, rel, files)
    db.execute("begin")
    for name, st, key in changed:
        home = os.path.join(history, rel, name)
        os.makedirs(home, exist_ok=True)
        n = db.execute("select count(*) from versions where dir=? and name=?",
                       (rel, name)).fetchone()[0]
        obj = b"%s.v%d" % (name, n)
        finals = [os.path.join(there, name), os.path.join(home, obj)]
        sha = copy(os.path.join(here, name), [f + b".tmp" for f in finals], st)
        for final in finals:
            os.rename(final + b".tmp", final)
        db.execute("insert or replace into files values (?,?,?,?,?,?,?)",
                   (rel, name, *key, sha))
        db.execute("insert into versions (dir, name, object, size, sha) values (?,?,?,?,?)",
                   (rel, name, obj, st.st_size, sha))
    names = {name for name, _st in entries}
    for name, old in existing.items():
        if name not in names and not stat.S_ISDIR(old.st_mode):
            os.unlink(os.path.join(there, name))
            db.execute("delete from files where dir=? and name=?", (rel, name))
    db.execute("insert or replace into folders values (?,?)", (rel, sig))
    db.execute("commit")
'''


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, cwd=bench.ROOT)
    _pid, status, _usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tmp", type=Path, default=Path("/dev/shm"))
    parser.add_argument("--contract", action="store_true",
                        help="also time bench/floor_contract.py (doit tasks, a commit a "
                        "second, diffs)")
    parser.add_argument("--contract-only", action="store_true",
                        help="the contract floor instead of the plain one (at 240,000 "
                        "files a tmpfs may not hold the inodes of both)")
    parser.add_argument("--reuse", action="store_true",
                        help="snapback's and rsync's destinations are the tree's own "
                        "(TREE/backup.yaml, TREE/rsync-dest), as the bench leaves them: "
                        "only the floor's is made (a tree too large to back up twice more)")
    args = parser.parse_args()
    source = (args.tree / "src").resolve()
    work = Path(tempfile.mkdtemp(prefix="floor-changed-", dir=args.tmp))
    plan = work / "plan.yaml"
    plan.write_text(f"destination: {work / 'snapback'}\nsources: [{source}]\n")
    if args.reuse:
        plan = (args.tree / "backup.yaml").resolve()
    mirror = (args.tree / "rsync-dest").resolve() if args.reuse else work / "rsync"
    env = {**bench.ENV, "SNAPBACK_CONFIG": str(plan),
           "PYTHONPYCACHEPREFIX": str(work / "pycache")}
    runs = {
        "rsync -a --delete": ["rsync", "-a", "--delete", f"{source}/", str(mirror)],
        "python floor (both modes)": [sys.executable, "-c", FLOOR, str(source),
                                      str(work / "floor")],
        "snapback all": [sys.executable, "-m", "pipeline", "all", "--quiet"],
    }
    if args.contract or args.contract_only:
        runs = {**dict(list(runs.items())[:1 if args.contract_only else 2]),
                "contract floor (doit, syncfs, diffs)": [
                    sys.executable, str(bench.ROOT / "bench" / "floor_contract.py"),
                    str(source), str(work / "contract")],
                "snapback all": runs["snapback all"]}
    results: dict[str, list[float]] = {name: [] for name in runs}
    try:
        for cmd in runs.values():                      # in line with the tree: not timed
            timed(cmd, env)
            timed(cmd, env)
        for seed in range(args.rounds):
            bench.mutate(source, 1000 + seed)
            for name, cmd in runs.items():
                results[name].append(timed(cmd, env))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(results["rsync -a --delete"])
    print(f"1% changed in {source} ({args.rounds} rounds, medians; {args.tmp})")
    print("| | wall | x rsync |")
    print("|---|---:|---:|")
    for name, samples in results.items():
        wall = statistics.median(samples)
        print(f"| {name} | {wall:.2f} s | {wall / base:.1f} |")


if __name__ == "__main__":
    main()
