"""A real project's history, replayed: the cost of snapback's history beside borg and
restic, in one run (issue 24, item 4).

Checks out N commits of a git repository one after another into a work tree (git
checkout: only the files a commit changed get new bytes and mtimes, as on a
working machine), and after each one backs it up with `snapback versioned` (the
history), `borg create` (lz4, its default) and `restic backup`.  Prints, for each,
the repository on disk at the end (hard links counted once, folders included:
what `du` says), the seconds, and snapback's breakdown by object kind.

Run by hand: `python bench/replay.py REPO [--commits N] [--tmp DIR]`; get a real
history with `git clone --bare https://github.com/pallets/click` or the search
tool's fetch.  Needs borg and restic (Debian: apt-get install borgbackup restic).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KB = 1024


def on_disk(*roots: Path) -> int:
    seen, total = set(), 0
    for root in roots:
        for dirpath, dirs, files in os.walk(root):
            st = os.lstat(dirpath)
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
            for name in files:
                st = os.lstat(os.path.join(dirpath, name))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_blocks * 512
    return total


def breakdown(dest: Path) -> dict[str, tuple[int, int, int]]:
    """kind -> (files, bytes on disk, apparent bytes) of snapback's history."""
    root = dest / "versioned_backup" / "src"
    con = sqlite3.connect(dest / ".snapback" / "catalog.sqlite3")
    kinds: dict[str, str] = {}
    try:
        for store, obj, copy, kind in con.execute(
                "select store, object, copy, kind from versions where source='src'"):
            if obj:
                kinds[os.path.join(root, os.fsdecode(store), os.fsdecode(obj))] = kind
            if copy:
                kinds[os.path.join(root, os.fsdecode(store), os.fsdecode(copy))] = "whole copy"
    finally:
        con.close()
    out: Counter[str] = Counter()
    alloc: Counter[str] = Counter()
    size: Counter[str] = Counter()
    seen = set()
    for dirpath, _dirs, files in os.walk(root):
        st = os.lstat(dirpath)
        out["folder"] += 1
        alloc["folder"] += st.st_blocks * 512
        size["folder"] += st.st_size
        for name in files:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if st.st_ino in seen:
                continue
            seen.add(st.st_ino)
            kind = kinds.get(path, "other")
            out[kind] += 1
            alloc[kind] += st.st_blocks * 512
            size[kind] += st.st_size
    meta = dest / ".snapback"
    for name in os.listdir(meta):
        if name.startswith("catalog"):
            st = os.lstat(meta / name)
            out["catalog"] += 1
            alloc["catalog"] += st.st_blocks * 512
            size["catalog"] += st.st_size
    return {k: (out[k], alloc[k], size[k]) for k in sorted(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path, help="a git repository (bare or not)")
    parser.add_argument("--commits", type=int, default=200)
    parser.add_argument("--tmp", type=Path, default=None,
                        help="where to work (default: the system's temporary folder)")
    args = parser.parse_args()
    git_dir = args.repo / ".git" if (args.repo / ".git").is_dir() else args.repo
    commits = subprocess.run(["git", "--git-dir", str(git_dir), "rev-list", "--first-parent",
                              "--reverse", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.split()[-args.commits:]
    work = Path(tempfile.mkdtemp(prefix="snapback-replay-", dir=args.tmp))
    src = work / "src"
    src.mkdir()
    plan = work / "plan.yaml"
    plan.write_text(f"version: 1\ndestination: {work / 'dest'}\n"
                    f"sources:\n  - path: {src}\n    name: src\n")
    git_env = {**os.environ, "GIT_INDEX_FILE": str(work / "index")}
    borg_env = {**os.environ, "BORG_REPO": str(work / "borg"),
                "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
                "BORG_BASE_DIR": str(work / "borgbase")}
    restic_env = {**os.environ, "RESTIC_REPOSITORY": str(work / "restic"),
                  "RESTIC_PASSWORD": "bench", "RESTIC_CACHE_DIR": str(work / "rcache")}
    snap_env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(["borg", "init", "-e", "none"], env=borg_env, check=True,
                   capture_output=True)
    subprocess.run(["restic", "init"], env=restic_env, check=True, capture_output=True)
    seconds: Counter[str] = Counter()
    try:
        for n, commit in enumerate(commits):
            subprocess.run(["git", "--git-dir", str(git_dir), "--work-tree", str(src),
                            "checkout", "-q", "-f", commit], env=git_env, check=True)
            runs = {
                "snapback": ([sys.executable, "-m", "pipeline", "versioned", "--quiet",
                              "--allow-mass-delete", f"config={plan}"],
                             {**snap_env, "SNAPBACK_NOW":
                              time.strftime("%Y-%m-%dT%H:%M:%S",
                                            time.gmtime(1.7e9 + 3600 * n))}, ROOT),
                "borg": (["borg", "create", f"::c{n}", "."], borg_env, src),
                "restic": (["restic", "backup", "--quiet", "."], restic_env, src),
            }
            for tool, (cmd, env, cwd) in runs.items():
                start = time.perf_counter()
                subprocess.run(cmd, env=env, cwd=cwd, check=True, capture_output=True)
                seconds[tool] += time.perf_counter() - start
        sizes = {
            "snapback": on_disk(work / "dest" / "versioned_backup",
                                work / "dest" / ".snapback"),
            "borg": on_disk(work / "borg"),
            "restic": on_disk(work / "restic"),
        }
        tree = on_disk(src)
        name = args.repo.resolve().name if args.repo.name not in ("repo", ".git") \
            else args.repo.resolve().parent.name
        print(f"{name}: {len(commits)} commits, the last tree {tree / KB:,.0f} KiB "
              "on disk\n")
        print("| tool | repository on disk | x borg | seconds, all backups |")
        print("|---|---:|---:|---:|")
        for tool, size in sizes.items():
            print(f"| {tool} | {size / KB:,.0f} KiB | {size / sizes['borg']:.2f} | "
                  f"{seconds[tool]:.1f} |")
        print("\nsnapback's history by kind:\n")
        print("| kind | files | on disk | apparent |")
        print("|---|---:|---:|---:|")
        for kind, (count, alloc, size) in breakdown(work / "dest").items():
            print(f"| {kind} | {count:,} | {alloc / KB:,.0f} KiB | {size / KB:,.0f} KiB |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
