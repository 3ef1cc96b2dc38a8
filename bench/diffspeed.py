#!/usr/bin/env python3
"""How long snapback takes to diff an 8 MiB text file, and its peak memory.

    python bench/diffspeed.py [--size 8MiB] [--repeat 3] [--case NAME ...]

Each case diffs two generated texts of about ``--size`` bytes with
``pipeline.textdiff.make_diff``, as a versioned run does, in a fresh process
(so that its peak RSS, VmHWM, is its own), and checks that the diff applies
back to the new bytes (``textdiff.apply``).  The lines are CSV-like rows of
about 80 bytes, each unique, as in a data export or a log:

    one edit       one line changed in the middle
    append         a log grown by 1%
    1% scattered   1% of the lines changed, inserted or deleted, spread evenly
    unrelated      two texts with no line in common (worst case: kept whole)
    shuffled       the same lines in another order (the budget's case)
    short lines    8 MiB of 2-byte lines from a 10-value alphabet, 0.1% edited

Prints a Markdown table: the median wall time of ``--repeat`` runs, the memory
the diff took (the process's peak RSS while diffing, less its RSS with the two
texts in memory before: Linux's clear_refs resets the peak), the diff's size,
or "whole" when make_diff said to keep the version whole.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = ["one edit", "append", "1% scattered", "unrelated", "shuffled",
         "short lines"]


def row(rng: random.Random, n: int, tag: str = "") -> bytes:
    return (f"{n},{tag}{rng.randrange(10**9)},{rng.choice(['alpha', 'beta', 'gamma'])},"
            f"{rng.random():.6f},{'x' * rng.randrange(20, 40)}\n").encode()


def texts(case: str, size: int) -> tuple[bytes, bytes]:
    rng = random.Random(24)
    if case == "short lines":
        lines = [b"%d\n" % rng.randrange(10) for _ in range(size // 2)]
        old = b"".join(lines)
        for _ in range(len(lines) // 1000):
            lines[rng.randrange(len(lines))] = b"x\n"
        return old, b"".join(lines)
    lines = []
    total = 0
    while total < size:
        lines.append(row(rng, len(lines)))
        total += len(lines[-1])
    old = b"".join(lines)
    if case == "one edit":
        lines[len(lines) // 2] = b"edited\n"
    elif case == "append":
        lines += [row(rng, len(lines) + k, "new") for k in range(len(lines) // 100)]
    elif case == "1% scattered":
        step = 100
        for k in range(len(lines) - step // 2, 0, -step):
            choice = (k // step) % 3
            if choice == 0:
                lines[k] = row(rng, k, "changed")
            elif choice == 1:
                lines.insert(k, row(rng, k, "inserted"))
            else:
                del lines[k]
    elif case == "unrelated":
        lines = [row(rng, k, "other") for k in range(len(lines))]
    elif case == "shuffled":
        rng.shuffle(lines)
    return old, b"".join(lines)


def child(case: str, size: int) -> None:
    sys.path.insert(0, str(ROOT))
    from pipeline import textdiff
    old, new = texts(case, size)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as fh:   # VmHWM from here on: the diff's
        fh.write("5")
    before = status("VmRSS")
    started = time.perf_counter()
    diff = textdiff.make_diff(old, new, b"f", b"f")
    seconds = time.perf_counter() - started
    peak = status("VmHWM") - before
    if diff is not None:
        assert textdiff.apply(old, diff) == new, "the diff does not give the new bytes"
    print(json.dumps({"seconds": seconds, "peak_mb": peak, "lines": old.count(b"\n"),
                      "old": len(old), "new": len(new),
                      "diff": None if diff is None else len(diff)}))


def status(key: str) -> int:
    """A figure of /proc/self/status, in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024
    return 0


def size_arg(text: str) -> int:
    units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[:-len(unit)]) * factor)
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=size_arg, default=8 << 20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--case", action="append", choices=CASES)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.size)
        return
    print(f"Machine: {os.cpu_count()} cores, {platform.machine()}, "
          f"Python {platform.python_version()}")
    print(f"Command: `python bench/diffspeed.py --size {args.size} --repeat {args.repeat}`\n")
    print("| case | lines | old bytes | new bytes | diff bytes | wall s (median) "
          "| diff's peak MB |")
    print("|---|---|---|---|---|---|---|")
    for case in args.case or CASES:
        runs = []
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, __file__, "--child", case, "--size",
                                  str(args.size)], capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout))
        last = runs[-1]
        diff = "whole" if last["diff"] is None else f"{last['diff']:,}"
        print(f"| {case} | {last['lines']:,} | {last['old']:,} | {last['new']:,} | {diff} | "
              f"{statistics.median(r['seconds'] for r in runs):.3f} | "
              f"{max(r['peak_mb'] for r in runs)} |", flush=True)


if __name__ == "__main__":
    main()
