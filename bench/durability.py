#!/usr/bin/env python3
"""What durability costs: `snapback all` with its syncs (syncfs before each commit that
names new files, SQLite synchronous=full) against the same run under eatmydata, which
turns every sync into a no-op.  Run by hand, not in CI.

    python bench/durability.py --n 5815 --repeat 3 [--base /tmp]

For each repeat: a first backup of a generated tree (bench.generate) into a fresh
destination, then a run after ~1% of the files changed (bench.mutate); both variants
alternate.  The destination's filesystem decides the cost (tmpfs: none; a disk: its
flush latency), so run it where backups go.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import generate, mutate  # noqa: E402

SNAPBACK = [sys.executable, "-m", "pipeline"]


def run(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5815)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--base", type=Path, default=None)
    args = parser.parse_args()
    if shutil.which("eatmydata") is None:
        sys.exit("needs eatmydata (Debian: apt install eatmydata)")
    work = Path(tempfile.mkdtemp(prefix="snapback-durability-", dir=args.base))
    src = work / "src"
    generate(src, args.n, 42)
    times: dict[str, dict[str, list[float]]] = {}
    for i in range(args.repeat):
        for variant, prefix in (("synced", []), ("eatmydata", ["eatmydata"])):
            dest = work / f"dest-{variant}"
            shutil.rmtree(dest, ignore_errors=True)
            plan = work / f"{variant}.yaml"
            plan.write_text(f"version: 1\ndestination: {dest}\nsources:\n  - path: {src}\n")
            cmd = [*prefix, *SNAPBACK, "all", "--quiet", f"config={plan}"]
            first = run(cmd, work)
            mutate(src, 100 + 2 * i + len(prefix))    # a fresh 1% for this variant's run
            change = run(cmd, work)
            times.setdefault(variant, {}).setdefault("first", []).append(first)
            times[variant].setdefault("1% change", []).append(change)
    fs = subprocess.run(["df", "-T", str(work)], capture_output=True, text=True).stdout
    print(f"N={args.n}, {args.repeat} repeats, medians (s); destination: {fs.splitlines()[-1]}")
    for phase in ("first", "1% change"):
        synced = statistics.median(times["synced"][phase])
        loose = statistics.median(times["eatmydata"][phase])
        print(f"  {phase:>10}: synced {synced:.2f}  eatmydata {loose:.2f}  "
              f"cost {synced - loose:+.2f} ({(synced / loose - 1) * 100:+.0f}%)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
