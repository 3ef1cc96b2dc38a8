"""The snapback command ends with ``os._exit`` and runs without the cyclic garbage
collector (pipeline/__main__.py, ``command``): what a run leaves behind must not depend on
the interpreter's teardown or on a collection that no longer comes.

A catalog that cannot be opened (the disk is full while its WAL is made) raises out of
``Catalog.__init__`` with its connection made; the traceback's frames hold that connection
in a reference cycle.  With the collector and the teardown, it was closed and its side
files (``-wal``, ``-shm``) removed; without them it stayed open until the process was
gone, and the side files stayed beside the catalog.
"""

from __future__ import annotations

import os
from pathlib import Path

from support import PARTIAL, Backup, fill_disk, make_tree


def test_a_catalog_that_cannot_be_opened_leaves_no_side_files(
        backup: Backup, small_disk: Path) -> None:
    backup.dest = small_disk / "dest"
    backup.write_plan()
    make_tree(backup.src, {"a": {f"f{i}.txt": f"{i}\n" for i in range(20)},
                           "c": {"s.txt": "s\n"}})
    backup.doit("all", check=True)
    for i in range(20):
        (backup.src / "a" / f"f{i}.txt").write_bytes(os.urandom(4000))
    (backup.src / "c" / "s.txt").write_text("changed\n")
    meta = backup.dest / ".snapback"
    met = []
    for free in range(16 << 10, 72 << 10, 4 << 10):
        ballast = fill_disk(small_disk, free)
        result = backup.doit("all")
        out = result.stdout + result.stderr
        ballast.unlink()
        assert result.returncode == PARTIAL, out
        assert "Traceback" not in out, out
        if "cannot be opened: database or disk is full" in out:
            met.append(free)
            left = sorted(p.name for p in meta.iterdir() if p.name.startswith("catalog"))
            assert left == ["catalog.sqlite3"], (free, left, out)
        backup.doit("all", check=True)          # room again: the next run completes
        backup.doit("verify", "--deep", check=True)
        for i in range(20):
            (backup.src / "a" / f"f{i}.txt").write_bytes(os.urandom(4000))
    assert met, "no size left the catalog unopenable: the test checked nothing"
