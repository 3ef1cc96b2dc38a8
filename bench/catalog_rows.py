#!/usr/bin/env python3
"""What one version row costs SQLite in the catalog's schema.  By hand, not in CI.

    python bench/catalog_rows.py base nosha noidx many

Inserts 20,000 versions rows (a first backup's, 10 to a commit, as a folder task
commits) into a new catalog with snapback's schema, in WAL mode with
synchronous=full, on /dev/shm; prints CPU microseconds per row, 5 rounds each,
sorted.  Variants: ``base`` (the schema as it is), ``nosha`` (without the checksum
index), ``noidx`` (without any index or trigger on versions), ``many``
(``executemany`` instead of one ``execute`` a row).
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pipeline.catalog import SCHEMA  # noqa: E402

ROWS, PER = int(os.environ.get("ROWS", "20000")), int(os.environ.get("PER", "10"))
FIELDS = ("source, dir, name, entry, kind, time, run_id, note, store, object, size, sha256, "
          "mode, mtime_ns, ctime_ns, ino, target, recorded, object_sha256, racy, copy")
SQL = f"insert into versions ({FIELDS}) values ({', '.join('?' * 21)})"


def rows() -> list[tuple[object, ...]]:
    out = []
    for i in range(ROWS):
        folder, name = f"dir{i // PER:05d}/sub".encode(), f"file{i}.txt".encode()
        sha = hashlib.sha256(name).hexdigest()
        out.append(("src", folder, name, "file", "baseline", "2026-12-06_01-00-00",
                    "2026-12-06_01-00-00", "", folder + b"/" + name, name + b".2026-12-06",
                    1234, sha, 0o100644, 1 << 60, 1 << 60, i, None, 1.0, sha, None, None))
    return out


def run(variant: str, values: list[tuple[object, ...]]) -> float:
    path = f"/dev/shm/catalog_rows_{os.getpid()}.db"
    schema = SCHEMA
    if variant == "nosha":
        schema = schema.replace("create index if not exists versions_by_sha on versions "
                                "(sha256);", "")
    if variant == "noidx":
        schema = re.sub(r"create index if not exists versions_\w+ on versions \(.*?\);", "",
                        schema)
        schema = re.sub(r"create trigger if not exists versions_\w+ .*?end;", "", schema,
                        flags=re.S)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("pragma journal_mode=wal")
        db.execute("pragma synchronous=full")
        if variant.startswith("cache"):       # cacheN: a page cache of N MiB
            db.execute(f"pragma cache_size=-{int(variant[5:] or 32) * 1024}")
        if variant == "nockpt":
            db.execute("pragma wal_autocheckpoint=0")
        db.executescript(schema)
        start = time.process_time()
        for first in range(0, ROWS, PER):
            db.execute("begin")
            if variant == "many":
                db.executemany(SQL, values[first:first + PER])
            else:
                for row in values[first:first + PER]:
                    db.execute(SQL, row)
            db.execute("commit")
        return (time.process_time() - start) / ROWS * 1e6
    finally:
        db.close()
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(path + suffix)
            except FileNotFoundError:
                pass


def main() -> None:
    variants = sys.argv[1:] or ["base"]
    values = rows()
    results: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(5):
        for variant in variants:
            results[variant].append(run(variant, values))
    for variant, samples in results.items():
        print(f"{variant:6} " + " ".join(f"{s:5.1f}" for s in sorted(samples)) + " us/row")


if __name__ == "__main__":
    main()
