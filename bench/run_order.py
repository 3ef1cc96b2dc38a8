#!/usr/bin/env python3
"""What entering the run order costs on a long history.  By hand, not in CI.

    python bench/run_order.py [--runs 2000] [--versions 200000] [--db /dev/shm/ro.db]

Builds a catalog of snapback's schema with RUNS runs and VERSIONS version rows, then
times the statement a run used to enter the run order with (every run's newest row by
a subquery per run: the history read once per run), the one it uses now (the runs'
unique index: is this id taken?) and `--at RUN-ID`'s (every run's newest row in one
grouped pass).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pipeline.catalog import SCHEMA

OLD = ("select r.run_id, r.started, (select max(id) from versions v where v.run_id=r.run_id) "
       "from runs r order by r.seq")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--versions", type=int, default=200_000)
    parser.add_argument("--db", default="/dev/shm/run_order.db")
    args = parser.parse_args()
    if os.path.exists(args.db):
        os.unlink(args.db)
    db = sqlite3.connect(args.db)
    db.executescript(SCHEMA)
    runs, versions = args.runs, args.versions
    db.executemany("insert into runs (run_id, started) values (?,?)",
                   [(f"r{i:06d}", i) for i in range(runs)])
    db.executemany(
        "insert into versions (source, dir, name, entry, kind, time, run_id, store, object, "
        "recorded) values (?,?,?,?,?,?,?,?,?,0)",
        [("src", b"d%d" % (i % 500), b"f%d" % i, "file", "baseline", "t",
          f"r{i * runs // versions:06d}", b"s%d" % i, b"o") for i in range(versions)])
    db.commit()
    start = time.perf_counter()
    db.execute(OLD).fetchall()
    took = time.perf_counter() - start
    print(f"before: every run's newest row, a subquery per run: {took:.3f} s")
    start = time.perf_counter()
    db.execute("select 1 from runs where run_id=?", ("r-new",)).fetchall()
    print(f"now, entering a run: is its id taken: {(time.perf_counter() - start) * 1e3:.3f} ms")
    start = time.perf_counter()
    dict(db.execute("select run_id, max(id) from versions group by run_id").fetchall())
    db.execute("select run_id, started from runs order by seq").fetchall()
    print(f"now, --at RUN-ID: one grouped pass: {time.perf_counter() - start:.3f} s")
    db.close()
    os.unlink(args.db)


if __name__ == "__main__":
    main()
