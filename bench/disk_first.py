#!/usr/bin/env python3
"""A first backup onto a real disk: snapback beside `rsync -a` and `sync`.  By hand, as
root (it makes and mounts a filesystem), not in CI.

    python bench/disk_first.py SOURCE [--image /tmp/ext4.img] [--repeat 2]

Each run gets a new ext4 filesystem (``mkfs.ext4`` on a 6 GB file on the disk that
holds ``--image``, loop-mounted): a destination on a filesystem where nothing was
ever deleted, as a new backup disk is (on a filesystem that has just had a tree of
100,000 files deleted, ext4's allocator searches its recently freed inodes for each
new one, `recently_deleted` in a kernel profile, and every figure measures that).
Timed: `rsync -a` then `sync` (what rsync needs for the copy to be on the disk),
the Python floors of ``bench/floor.py`` (the mirror; both areas, snapback's catalog
rows) then `sync`, and `snapback snapshot` and `snapback all` with a commit per folder
(``SNAPBACK_COMMIT_EVERY=0``, before session 11) and with the default (a commit a
second).  Each commit costs a disk flush (``syncfs``, then the catalog's fsync), so
the number of commits is what the first two snapback rows differ in.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from floor import FLOOR, table, timed

MOUNT = Path("/mnt/snapback-bench")


def fresh(image: Path) -> None:
    subprocess.run(["umount", str(MOUNT)], capture_output=True)
    image.unlink(missing_ok=True)
    with open(image, "wb") as fh:
        fh.truncate(6 << 30)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    MOUNT.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(MOUNT)], check=True)
    os.sync()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--image", type=Path, default=Path("/tmp/snapback-bench-ext4.img"))
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    source = args.source.resolve()
    work = Path(tempfile.mkdtemp(prefix="disk-first-"))
    plan = work / "plan.yaml"
    plan.write_text(f"version: 1\ndestination: {MOUNT / 'dest'}\nsources:\n"
                    f"  - path: {source}\n    name: src\n")
    base = {**os.environ, "SNAPBACK_CONFIG": str(plan)}
    snapback = [sys.executable, "-m", "pipeline"]
    excludes = ["--exclude=__pycache__/", "--exclude=node_modules/", "--exclude=.venv/"]
    runs: dict[str, tuple[list[str], dict[str, str]]] = {
        "rsync -a, then sync": (["sh", "-c", 'rsync -a "$@" && sync', "rsync", *excludes,
                                 f"{source}/", str(MOUNT / "rsync")], base),
        "python floor, the mirror, then sync": (["sh", "-c", '"$0" -c "$1" "$2" "$3" "$4" '
                                                 '&& sync', sys.executable, FLOOR,
                                                 str(source), str(MOUNT / "floor"),
                                                 "mirror"], base),
        "snapshot, a commit per folder": ([*snapback, "snapshot", "--quiet"],
                                          {**base, "SNAPBACK_COMMIT_EVERY": "0"}),
        "snapshot, a commit a second": ([*snapback, "snapshot", "--quiet"], base),
        "python floor, both, catalog rows, then sync": (
            ["sh", "-c", '"$0" -c "$1" "$2" "$3" "$4" "$5" && sync', sys.executable, FLOOR,
             str(source), str(MOUNT / "floor"), "both", "schema"], base),
        "all, a commit per folder": ([*snapback, "all", "--quiet"],
                                     {**base, "SNAPBACK_COMMIT_EVERY": "0"}),
        "all, a commit a second": ([*snapback, "all", "--quiet"], base),
    }
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in runs}
    try:
        for _ in range(args.repeat):
            for name, (cmd, env) in runs.items():
                fresh(args.image)
                results[name].append(timed(cmd, env))
    finally:
        subprocess.run(["umount", str(MOUNT)], capture_output=True)
        args.image.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    table(f"first backup of {source} onto a new ext4 ({args.repeat} runs, medians)", results,
          "rsync -a, then sync")

if __name__ == "__main__":
    main()
