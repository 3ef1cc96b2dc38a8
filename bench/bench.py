#!/usr/bin/env python3
"""snapback against rsync on a generated home folder.  Run by hand, not in CI.

    python bench/bench.py                 # N = 5,815 and 50,000
    python bench/bench.py --sizes 5815    # one size
    python bench/bench.py --huge          # also N = 200,000

For each N it generates (deterministically, from --seed) a tree shaped like a
developer's home folder, then measures side by side, alternating, the median
of --repeat runs of: `doit snapshot`, `doit versioned` and `rsync -a --delete`
for (a) the first full backup, (b) a no-change run, (c) a run after a mutation
(~1% of text files edited, a few added, deleted, touched); `doit list`; and the
floor, a Python os.scandir walk that lstats every file.  Prints a table and
appends it to bench/RESULTS.md with the date, the machine and the command.

rsync is given excludes for the noise folders snapback's built-in ignores
drop, so both copy the same files.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DODO = ROOT / "dodo.py"
RESULTS = ROOT / "bench" / "RESULTS.md"
TEXT_KINDS = (".py", ".md", ".json", ".yaml", ".txt")
WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron "
         "pi rho sigma tau upsilon phi chi psi omega def class return import self value").split()
NOISE = {"__pycache__": 6, "node_modules": 20, ".venv": 15}
RSYNC_EXCLUDES = ["--exclude=__pycache__/", "--exclude=node_modules/", "--exclude=.venv/"]
FLOOR = ("import os,sys\nstack=[sys.argv[1]]\nn=0\nwhile stack:\n"
         " with os.scandir(stack.pop()) as it:\n  for e in it:\n"
         "   st=e.stat(follow_symlinks=False)\n   n+=1\n"
         "   if e.is_dir(follow_symlinks=False): stack.append(e.path)\nprint(n)\n")


def text_file(rng: random.Random) -> bytes:
    size = int(rng.lognormvariate(7.6, 1.0))           # median ~2 KB, 200 B .. 40 KB
    size = max(200, min(size, 40_000))
    lines = []
    total = 0
    while total < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12)))
        lines.append(line)
        total += len(line) + 1
    return ("\n".join(lines) + "\n").encode()


def generate(root: Path, n: int, seed: int) -> None:
    """About ``n`` kept files in nested folders, plus noise the ignores drop."""
    rng = random.Random(seed)
    root.mkdir(parents=True)
    folders = [root]
    made = 0
    index = 0
    while made < n:
        parent = rng.choice(folders[-50:] if rng.random() < 0.7 else folders)
        depth = len(parent.relative_to(root).parts)
        if depth >= 7:
            parent = root
        name = rng.choice(["src", "docs", "notes", "lib", "proj", "data", "misc", "app",
                           "tests", "café", "résumé", "日本"]) + f"{index}"
        folder = parent / name
        index += 1
        folder.mkdir()
        folders.append(folder)
        for _ in range(rng.randint(6, 14)):
            if made >= n:
                break
            if rng.random() < 0.015:
                data = rng.randbytes(int(min(3_000_000, rng.lognormvariate(10.5, 1.5))))
                (folder / f"blob{made}.bin").write_bytes(data)
            else:
                (folder / f"file{made}{rng.choice(TEXT_KINDS)}").write_bytes(text_file(rng))
            made += 1
        if rng.random() < 0.04:
            noise = rng.choice(list(NOISE))
            (folder / noise).mkdir()
            if noise == ".venv":
                (folder / noise / "pyvenv.cfg").write_text("home = /usr/bin\n")
            for i in range(NOISE[noise]):
                (folder / noise / f"n{i}.pyc").write_bytes(rng.randbytes(500))
        if rng.random() < 0.01:
            git = folder / ".git"
            (git / "objects").mkdir(parents=True)
            (git / "HEAD").write_text("ref: refs/heads/main\n")
    templates = root / "site" / "templates"
    for sub in ("emails", "partials", "empty"):
        (templates / sub).mkdir(parents=True)


def mutate(root: Path, seed: int) -> None:
    """Edit ~1% of text files, add 5, delete 5, touch 5 without changing them."""
    rng = random.Random(seed)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in TEXT_KINDS
                   and not any(part in NOISE or part == ".git" for part in p.parts))
    for path in rng.sample(files, max(1, len(files) // 100)):
        lines = path.read_bytes().split(b"\n")
        lines[rng.randrange(len(lines))] = b"edited " + str(seed).encode()
        path.write_bytes(b"\n".join(lines))
    for path in rng.sample(files, 5):
        if path.exists():
            path.unlink()
    for i in range(5):
        (rng.choice(files).parent / f"added{seed}_{i}.md").write_bytes(text_file(rng))
    for path in rng.sample(files, 5):
        if path.exists():
            stamp = time.time() + 10
            os.utime(path, (stamp, stamp))


def timed(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (MB) of one command."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"failed ({status}): {' '.join(cmd)}\n{proc.stderr.read().decode()}")
    return wall, usage.ru_maxrss // 1024


def commands(work: Path) -> dict[str, list[str]]:
    plan = work / "backup.yaml"
    doit = [sys.executable, "-m", "doit", "-f", str(DODO)]
    return {
        "snapshot": [*doit, "snapshot", "--quiet", f"config={plan}"],
        "versioned": [*doit, "versioned", "--quiet", f"config={plan}"],
        "rsync": ["rsync", "-a", "--delete", *RSYNC_EXCLUDES, f"{work / 'src'}/",
                  f"{work / 'rsync-dest'}/"],
    }


def median(samples: list[tuple[float, int]]) -> tuple[float, int]:
    return statistics.median(s[0] for s in samples), max(s[1] for s in samples)


def measure(n: int, seed: int, repeat: int, base: Path) -> list[tuple[str, str, float, int]]:
    work = base / f"n{n}"
    src = work / "src"
    generate(src, n, seed)
    kept = sum(1 for p in src.rglob("*") if p.is_file()
               and not any(part in NOISE for part in p.relative_to(src).parts))
    (work / "backup.yaml").write_text(f"destination: {work / 'dest'}\nsources: [{src}]\n")
    cmds = commands(work)
    rows: list[tuple[str, str, float, int]] = []
    print(f"N = {n:,} ({kept:,} files kept, noise excluded)", flush=True)

    first: dict[str, list] = {k: [] for k in cmds}
    for _ in range(repeat):
        for name, cmd in cmds.items():
            shutil.rmtree(work / ("rsync-dest" if name == "rsync" else "dest"), ignore_errors=True)
            first[name].append(timed(cmd))
    timed(cmds["snapshot"])      # the last first run was versioned's: complete the mirror too
    rows += [("first backup", k, *median(v)) for k, v in first.items()]

    nochange: dict[str, list] = {k: [] for k in cmds}
    for _ in range(repeat):
        for name, cmd in cmds.items():
            nochange[name].append(timed(cmd))
    rows += [("no change", k, *median(v)) for k, v in nochange.items()]

    after: dict[str, list] = {k: [] for k in cmds}
    for rep in range(repeat):
        mutate(src, seed + 1000 + rep)
        for name, cmd in cmds.items():
            after[name].append(timed(cmd))
    rows += [("after 1% mutation", k, *median(v)) for k, v in after.items()]

    listing = [timed([sys.executable, "-m", "doit", "-f", str(DODO), "list",
                      f"config={work / 'backup.yaml'}"]) for _ in range(repeat)]
    rows.append(("doit list", "snapback", *median(listing)))
    floor = [timed([sys.executable, "-c", FLOOR, str(src)]) for _ in range(repeat)]
    rows.append(("floor: scandir+lstat walk", "python", *median(floor)))
    shutil.rmtree(work)
    return [(f"{n:,}", *row) for row in rows]


def table(rows: list[tuple[str, str, str, float, int]]) -> str:
    rsync = {(r[0], r[1]): r[3] for r in rows if r[2] == "rsync"}
    out = ["| N | scenario | tool | wall s | peak RSS MB | x rsync |",
           "|---|---|---|---|---|---|"]
    for n, scenario, tool, wall, rss in rows:
        ratio = rsync.get((n, scenario))
        shown = f"{wall / ratio:.2f}" if ratio and tool != "rsync" else ""
        out.append(f"| {n} | {scenario} | {tool} | {wall:.3f} | {rss} | {shown} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[5815, 50_000])
    parser.add_argument("--huge", action="store_true", help="also N = 200,000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    if not shutil.which("rsync"):
        raise SystemExit("bench needs rsync (apt-get install rsync)")
    sizes = args.sizes + ([200_000] if args.huge else [])
    base = Path(tempfile.mkdtemp(prefix="snapback-bench-"))
    rows = []
    try:
        for n in sizes:
            rows += measure(n, args.seed, args.repeat, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    text = table(rows)
    print(text)
    if not args.no_record:
        rsync_version = subprocess.run(["rsync", "--version"], capture_output=True,
                                       text=True).stdout.splitlines()[0]
        header = (f"\n## {date.today().isoformat()}\n\n"
                  f"Machine: {os.cpu_count()} cores (nproc), {platform.machine()}, "
                  f"Python {platform.python_version()}, {rsync_version}\n"
                  f"Command: `python bench/bench.py {' '.join(sys.argv[1:])}`\n"
                  f"Medians of {args.repeat} alternating runs.\n\n")
        with RESULTS.open("a") as fh:
            fh.write(header + text + "\n")


if __name__ == "__main__":
    main()
