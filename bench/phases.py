#!/usr/bin/env python3
"""Run doit as ``python -m doit`` does, and say where its wall time went.

    python bench/phases.py OUT.json -f dodo.py snapshot --quiet config=plan.yaml

A sampling thread looks at the main thread's stack every millisecond and
charges the time since its last look to a phase, decided by which modules are
on the stack (see ``PHASES``): nothing in ``pipeline/`` has to know it is
measured, and the cost is a few per cent (cProfile doubles the cost of every
Python call, which is exactly what a no-change run is made of, and so skews the
shares).  At exit (doit ends with ``sys.exit``) it writes OUT.json: seconds per
phase, the sampled span, and VmHWM, the peak RSS of this process's own memory
(``ru_maxrss`` of a child also counts the benchmark's memory at fork time).

The phases follow the modules of snapback as of issue 25 (a folder task's catalog
writes count as its mode's tasks); a module that is
renamed or split falls into "snapback, other" until ``PHASES`` names it.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import time

START = time.time()

# (phase, substrings of a code file name): the first phase with a frame anywhere on the
# stack wins, so the walk's calls into the selection rules count as the walk.
PHASES: list[tuple[str, tuple[str, ...]]] = [
    ("imports", ("<frozen importlib._bootstrap>",)),
    ("walk", ("/pipeline/scan.py",)),
    ("snapshot tasks", ("/pipeline/snapshot.py",)),
    ("versioned tasks", ("/pipeline/versioned.py",)),
    ("catalog, other", ("/pipeline/catalog.py",)),
    ("task creation", ("/pipeline/backup.py",)),      # before uptodate: the creators
    ("uptodate", ("/pipeline/doit_glue.py", "/pipeline/change.py", "/doit/dependency.py")),
    ("snapback, other", ("/pipeline/",)),
    ("doit", ("/doit/",)),
]
OTHER = "interpreter, other"


def phase_of(frame) -> str:
    files = []
    while frame is not None:
        files.append(frame.f_code.co_filename)
        frame = frame.f_back
    for phase, needles in PHASES:
        if any(n in f for f in files for n in needles):
            return phase
    return OTHER


def main() -> None:
    out = sys.argv[1]
    sys.argv = [sys.argv[0], *sys.argv[2:]]
    spent: dict[str, float] = {}
    main_id = threading.main_thread().ident
    stop = threading.Event()

    def sample() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            time.sleep(0.001)
            frame = sys._current_frames().get(main_id)
            now = time.perf_counter()
            if frame is not None:
                phase = phase_of(frame)
                spent[phase] = spent.get(phase, 0.0) + now - last
            last = now

    def write() -> None:
        stop.set()
        peak = 0
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) // 1024
        spawned = float(os.environ.get("BENCH_SPAWNED", START))
        data = {"phases": dict(spent), "startup": START - spawned,
                "sampled": time.time() - START, "peak_rss_mb": peak}
        with open(out, "w") as fh:
            json.dump(data, fh)

    atexit.register(write)
    sys.setswitchinterval(0.001)         # the sampler gets the GIL within ~1 ms
    threading.Thread(target=sample, daemon=True).start()
    import runpy
    runpy.run_module("doit", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
