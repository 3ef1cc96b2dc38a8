"""What the history costs per change, beside borg and restic in one run (issue 24).

Scenarios (each: a first backup, then the changes, a backup after each):
- image: a 50 MB binary, 1 MB rewritten in place, twice;
- big: a 300 MB binary, 1 MB rewritten in place, four times;
- csv: a 100,000-line CSV (about 6 MB), one line edited, three times;
- rename: a folder of 20 MB renamed, then copied.

For each tool: what the repository grew by on disk after the first backup (du,
hard links counted once), the seconds of each backup, and for snapback the
version kinds it stored.  Run by hand: `python bench/history_cost.py [--tmp DIR]`
(default: a folder in /dev/shm, so the figure is the program's, not the disk's).
Needs borg and restic on PATH (Debian: apt-get install borgbackup restic).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MB = 1 << 20


def on_disk(root: Path) -> int:
    seen, total = set(), 0
    for dirpath, dirs, files in os.walk(root):
        for name in files + dirs:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def rewrite(path: Path, offset: int, length: int, seed: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(random.Random(seed).randbytes(length))


def image(src: Path, size: int, changes: int) -> list[Callable[[], None]]:
    path = src / "disk.img"
    rng = random.Random(size)
    with open(path, "wb") as fh:
        for _ in range(size // MB):
            fh.write(rng.randbytes(MB))
    return [lambda i=i: rewrite(path, (i * 7 % (size // MB - 1)) * MB, MB, i)
            for i in range(1, changes + 1)]


def csv(src: Path) -> list[Callable[[], None]]:
    path = src / "data.csv"
    rng = random.Random(5)
    lines = [f"{i},{rng.randint(0, 10**9)},item {i},{rng.random():.6f}\n" for i in range(100_000)]
    path.write_text("".join(lines))

    def edit(n: int) -> None:
        lines[n * 30_000] = f"{n * 30_000},edited,item,{n}\n"
        path.write_text("".join(lines))
    return [lambda n=n: edit(n) for n in (1, 2, 3)]


def rename(src: Path) -> list[Callable[[], None]]:
    folder = src / "photos"
    folder.mkdir()
    rng = random.Random(9)
    for i in range(20):
        (folder / f"p{i}.jpg").write_bytes(rng.randbytes(MB))
    return [lambda: folder.rename(src / "pictures"),
            lambda: shutil.copytree(src / "pictures", src / "copy")]


SCENARIOS: dict[str, Callable[[Path], list[Callable[[], None]]]] = {
    "image (50 MB, 1 MB rewritten, x2)": lambda s: image(s, 50 * MB, 2),
    "big (300 MB, 1 MB rewritten, x4)": lambda s: image(s, 300 * MB, 4),
    "csv (100,000 lines, one line edited, x3)": csv,
    "rename (20 MB folder renamed, then copied)": rename,
}


class Tool:
    name = ""

    def __init__(self, work: Path, src: Path) -> None:
        self.work, self.src = work, src

    def init(self) -> None: ...

    def backup(self, n: int) -> None: ...

    def repo(self) -> Path:
        raise NotImplementedError


class Snapback(Tool):
    name = "snapback versioned"

    def init(self) -> None:
        self.plan = self.work / "plan.yaml"
        self.plan.write_text(f"version: 1\ndestination: {self.work / 'dest'}\n"
                             f"sources:\n  - path: {self.src}\n    name: src\n")

    def backup(self, n: int) -> None:
        env = {**os.environ, "SNAPBACK_NOW": f"2026-12-01T{10 + n:02d}:00:00",
               "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-m", "pipeline", "versioned", "--quiet",
                        f"config={self.plan}"], check=True, env=env, cwd=ROOT)

    def repo(self) -> Path:
        return self.work / "dest" / "versioned_backup"

    def kinds(self) -> str:
        con = sqlite3.connect(self.work / "dest" / ".snapback" / "catalog.sqlite3")
        try:
            rows = con.execute("select kind, count(*) from versions where entry='file' "
                               "group by kind order by kind").fetchall()
        finally:
            con.close()
        return ", ".join(f"{n} {k}" for k, n in rows)


class Borg(Tool):
    name = "borg (lz4)"

    def init(self) -> None:
        self.env = {**os.environ, "BORG_REPO": str(self.work / "borg"),
                    "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
                    "BORG_BASE_DIR": str(self.work / "borgbase")}
        subprocess.run(["borg", "init", "-e", "none"], check=True, env=self.env,
                       capture_output=True)

    def backup(self, n: int) -> None:
        subprocess.run(["borg", "create", f"::a{n}", "."], check=True, env=self.env,
                       cwd=self.src, capture_output=True)

    def repo(self) -> Path:
        return self.work / "borg"


class Restic(Tool):
    name = "restic"

    def init(self) -> None:
        self.env = {**os.environ, "RESTIC_REPOSITORY": str(self.work / "restic"),
                    "RESTIC_PASSWORD": "bench", "RESTIC_CACHE_DIR": str(self.work / "rcache")}
        subprocess.run(["restic", "init"], check=True, env=self.env, capture_output=True)

    def backup(self, n: int) -> None:
        subprocess.run(["restic", "backup", "--quiet", "."], check=True, env=self.env,
                       cwd=self.src, capture_output=True)

    def repo(self) -> Path:
        return self.work / "restic"


def run(base: Path, label: str, make: Callable[[Path], list[Callable[[], None]]]
        ) -> list[tuple[str, str, int, int, float, str]]:
    rows = []
    for cls in (Snapback, Borg, Restic):
        work = base / cls.__name__
        src = work / "src"
        src.mkdir(parents=True)
        changes = make(src)
        tool = cls(work, src)
        tool.init()
        tool.backup(0)
        first = on_disk(tool.repo())
        seconds = 0.0
        for n, change in enumerate(changes, 1):
            change()
            start = time.perf_counter()
            tool.backup(n)
            seconds += time.perf_counter() - start
        grown = on_disk(tool.repo()) - first
        extra = tool.kinds() if isinstance(tool, Snapback) else ""
        rows.append((label, cls.name, first, grown, seconds, extra))
        shutil.rmtree(work)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tmp", type=Path, default=Path("/dev/shm"))
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="snapback-cost-", dir=args.tmp))
    rows = []
    try:
        for label, make in SCENARIOS.items():
            rows += run(base, label, make)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print("| scenario | tool | first backup on disk | grown by the changes | seconds "
          "(the changes' backups) | snapback's versions |")
    print("|---|---|---:|---:|---:|---|")
    for label, tool, first, grown, seconds, extra in rows:
        print(f"| {label} | {tool} | {first / MB:.1f} MB | {grown / MB:.2f} MB | "
              f"{seconds:.2f} | {extra} |")


if __name__ == "__main__":
    main()
