"""A backup run has loaded all the code it uses before its first write.

An upgrade of the installed snapback (``pip install --upgrade`` in the cron venv)
while a run goes on replaces or removes the package's files for a while: a run that
imports a module of its own, or of pathspec, yaml or doit, after it has started
writing then fails with a traceback (status 70) in the middle of its work
(helper-28).  Here a run in a process of its own has every import of those packages
refused from its first write point on (``pipeline.faults.point``, which every write,
rename, fsync and commit passes), as if their files were gone, and must end as it
would have: status 0, with what it did said.
"""

from __future__ import annotations

import os
import subprocess
import sys

from support import Backup, make_tree

PROBE = """
import importlib.abc, sys
from pipeline import faults
from pipeline.__main__ import main

GONE = ("pipeline", "pathspec", "yaml", "doit", "re2")


class Gone(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in GONE:
            raise ImportError(f"{name} imported after the run's first write")
        return None


real = faults.point


def point(kind):
    if not any(isinstance(f, Gone) for f in sys.meta_path):
        sys.meta_path.insert(0, Gone())
    real(kind)


faults.point = point
sys.exit(main(sys.argv[1:]))
"""


def run(b: Backup, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-c", PROBE, *args, f"--config={b.plan}"],
                          capture_output=True, text=True, cwd=b.base, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_a_run_imports_nothing_after_its_first_write(backup: Backup) -> None:
    # a first run (with what the built-in ignores leave out: said at its end), then
    # runs with text diffs, binary deltas, deletions and retention.auto's prune
    backup.write_plan(retention={"keep_last": 2, "auto": True},
                      versioned={"ignore": ["*.tmp", "build/"]})
    make_tree(backup.src, {"notes.txt": "one\n", "node_modules": {"m.js": "x\n" * 100},
                           "docs": {"a.md": "a\n", "b.md": "b\n", "x.tmp": "t\n"}})
    big = backup.src / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    first = run(backup, "all")
    assert "node_modules" in first.stdout + first.stderr
    for n in range(4):
        (backup.src / "notes.txt").write_text("one\n" + "more\n" * (n + 1))
        with big.open("r+b") as fh:                      # a small edit in place: a delta
            fh.seek(1000 + n)
            fh.write(b"\xff")
        if n == 1:
            (backup.src / "docs" / "b.md").unlink()
        os.utime(backup.src / "notes.txt", ns=(n * 10**9, n * 10**9))   # not racy
        os.utime(big, ns=(n * 10**9 + 1, n * 10**9 + 1))
        run(backup, "all")
    assert "prune" in run(backup, "history").stdout          # retention.auto pruned
    run(backup, "verify", "--deep")
