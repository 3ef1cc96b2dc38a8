#!/usr/bin/env python3
"""snapback against rsync on a generated home folder.  Run by hand, not in CI.

    python bench/bench.py                 # N = 5,815 and 50,000
    python bench/bench.py --sizes 5815    # one size
    python bench/bench.py --huge          # also N = 200,000
    python bench/bench.py --sizes 200000 --trees /tmp/trees --first-repeat 1
                                          # keep generated trees in /tmp/trees, reuse them

For each N it generates (deterministically, from --seed) a tree shaped like a
developer's home folder, then measures side by side, alternating, the median
of --repeat runs of: `doit snapshot`, `doit versioned`, `doit all` and
`rsync -a --delete` for (a) the first full backup (--first-repeat runs),
(b) a no-change run, (c) a run after a mutation (~1% of text files edited, a
few added, deleted, touched; each tool sees a fresh one, everything brought in
line before it); `doit list`; and two floors, a Python os.scandir
walk that lstats every file, alone and with doit, yaml and sqlite3 imported
(the least a doit application built on them costs: a no-change run imports no
pathspec).  Prints a table and appends it to
bench/RESULTS.md with the date, the machine and the command.

Then the breakdown of the no-change runs: each backup command once more under
``bench/phases.py`` (a sampling profiler: the wall time charged to a phase by
the modules on the stack), as time per 1,000 kept files and seconds of
imports, the walk, the catalog read, task creation, uptodate checks (doit's
and snapback's checker), doit's own per-task work and the rest, scaled to the
median no-change wall time; with the command's own peak RSS (VmHWM).

Peak RSS in the main table is ``ru_maxrss`` of each child (``os.wait4``).  A
forked child also counts the benchmark's memory at fork time, so trees are
generated, counted and mutated in child processes and the benchmark stays
small (~20 MB).  With --trees a tree is generated once and reused across
runs; mutations accumulate in it, the kept count is taken anew each run.

rsync is given excludes for the noise folders snapback's built-in ignores
drop, so both copy the same files.
"""

from __future__ import annotations

import argparse
import json
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
PHASES = ROOT / "bench" / "phases.py"
BREAKDOWN = ("imports", "walk", "catalog read", "task creation", "uptodate", "doit",
             "snapback, other", "interpreter, other")
RESULTS = ROOT / "bench" / "RESULTS.md"
# The interpreter snapback, doit and the floors run with: BENCH_PYTHON names another one,
# such as a venv's that holds only snapback and its dependencies (the README's install
# for cron); a shared environment adds what its other packages cost every start (doit
# reads every installed package's entry points three times a run).
PYTHON = os.environ.get("BENCH_PYTHON") or sys.executable
TEXT_KINDS = (".py", ".md", ".json", ".yaml", ".txt")
WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron "
         "pi rho sigma tau upsilon phi chi psi omega def class return import self value").split()
NOISE = {"__pycache__": 6, "node_modules": 20, ".venv": 15}
RSYNC_EXCLUDES = ["--exclude=__pycache__/", "--exclude=node_modules/", "--exclude=.venv/"]
FLOOR = ("import os,sys\nstack=[sys.argv[1]]\nn=0\nwhile stack:\n"
         " with os.scandir(stack.pop()) as it:\n  for e in it:\n"
         "   st=e.stat(follow_symlinks=False)\n   n+=1\n"
         "   if e.is_dir(follow_symlinks=False): stack.append(e.path)\nprint(n)\n")

FLOOR_APP = "import doit.doit_cmd, yaml, sqlite3\n" + FLOOR


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


# Children run with a bytecode cache, as an installed snapback does: with
# PYTHONDONTWRITEBYTECODE set (some shells and CI images set it) every run compiles
# pipeline/*.py and dodo.py from source, ~0.1 s that no user pays.  The cache goes to
# a folder of the benchmark's (PYTHONPYCACHEPREFIX), not into the repository.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (MB) of one command, started in the checkout (so that
    ``-m pipeline`` runs the checkout's code, as ``-f dodo.py`` does, whatever
    BENCH_PYTHON has installed)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env or ENV, cwd=ROOT)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"failed ({status}): {' '.join(cmd)}\n{proc.stderr.read().decode()}")
    return wall, usage.ru_maxrss // 1024


def commands(work: Path) -> dict[str, list[str]]:
    plan = work / "backup.yaml"
    doit = [PYTHON, "-m", "doit", "-f", str(DODO)]
    return {
        "snapshot": [*doit, "snapshot", "--quiet", f"config={plan}"],
        "versioned": [*doit, "versioned", "--quiet", f"config={plan}"],
        "all": [*doit, "all", "--quiet", f"config={plan}"],
        "rsync": ["rsync", "-a", "--delete", *RSYNC_EXCLUDES, f"{work / 'src'}/",
                  f"{work / 'rsync-dest'}/"],
    }


def median(samples: list[tuple[float, int]]) -> tuple[float, int]:
    return statistics.median(s[0] for s in samples), max(s[1] for s in samples)


def child(*args: str) -> str:
    """Run this file's helper in a child process (the benchmark stays small, so a forked
    child's ru_maxrss is the child's own)."""
    return subprocess.run([sys.executable, __file__, "--child", *args], check=True,
                          capture_output=True, text=True).stdout.strip()


def count_kept(src: Path) -> int:
    return sum(1 for p in src.rglob("*") if p.is_file()
               and not any(part in NOISE for part in p.relative_to(src).parts))


def run_child(argv: list[str]) -> None:
    what, *rest = argv
    if what == "generate":
        generate(Path(rest[0]), int(rest[1]), int(rest[2]))
    elif what == "mutate":
        mutate(Path(rest[0]), int(rest[1]))
    elif what == "count":
        print(count_kept(Path(rest[0])))


def phases(cmd: list[str], work: Path) -> dict:
    """One run of a doit command (``python -m doit ...``) under bench/phases.py."""
    out = work / "phases.json"
    env = dict(ENV, BENCH_SPAWNED=repr(time.time()))
    timed([cmd[0], str(PHASES), str(out), *cmd[3:]], env=env)
    data = json.loads(out.read_text())
    out.unlink()
    return data


def measure(n: int, seed: int, repeat: int, base: Path, first_repeat: int, keep: bool
            ) -> tuple[list[tuple[str, str, float, int]], list[tuple]]:
    work = base / f"n{n}"
    src = work / "src"
    made = work / f".generated-{seed}"
    if not made.exists():
        shutil.rmtree(work, ignore_errors=True)
        child("generate", str(src), str(n), str(seed))
        made.touch()
    kept = int(child("count", str(src)))
    (work / "backup.yaml").write_text(f"destination: {work / 'dest'}\nsources: [{src}]\n")
    cmds = commands(work)
    rows: list[tuple[str, str, float, int]] = []
    print(f"N = {n:,} ({kept:,} files kept, noise excluded)", flush=True)

    first: dict[str, list] = {k: [] for k in cmds}
    for _ in range(first_repeat):
        for name, cmd in cmds.items():
            shutil.rmtree(work / ("rsync-dest" if name == "rsync" else "dest"), ignore_errors=True)
            first[name].append(timed(cmd))
    if first_repeat:
        rows += [("first backup", k, *median(v)) for k, v in first.items()]
    timed(cmds["all"])           # both modes in line with the tree (a reused one too)
    timed(cmds["rsync"])

    nochange: dict[str, list] = {k: [] for k in cmds}
    for _ in range(repeat):
        for name, cmd in cmds.items():
            nochange[name].append(timed(cmd))
    rows += [("no change", k, *median(v)) for k, v in nochange.items()]
    # the same `all` through the snapback command (pipeline/__main__.py `command`: it ends
    # without the interpreter's teardown, which doit's own process pays)
    command = [PYTHON, "-m", "pipeline", "all", "--quiet",
               f"config={work / 'backup.yaml'}"]
    rows.append(("no change", "snapback all (the command)",
                 *median([timed(command) for _ in range(repeat)])))

    breakdown = []
    for name, cmd in cmds.items():
        if name == "rsync":
            continue
        data = phases(cmd, work)
        wall = median(nochange[name])[0]
        total = sum(data["phases"].values()) + data["startup"]
        share = {k: v / total * wall for k, v in data["phases"].items()}
        share["interpreter, other"] = share.get("interpreter, other", 0.0) \
            + data["startup"] / total * wall
        breakdown.append((f"{n:,}", name, wall, wall / kept * 1e6, share, data["peak_rss_mb"]))

    # Each tool sees one fresh 1% change: everything is brought in line (untimed) before
    # each mutation.  (Mutating once per round let `doit all`, run after snapshot and
    # versioned, find nothing left to do.)
    after: dict[str, list] = {k: [] for k in cmds}
    for rep in range(repeat):
        for index, (name, cmd) in enumerate(cmds.items()):
            timed(cmds["all"])
            timed(cmds["rsync"])
            child("mutate", str(src), str(seed + 1000 + rep * 10 + index))
            after[name].append(timed(cmd))
    rows += [("after 1% mutation", k, *median(v)) for k, v in after.items()]

    listing = [timed([PYTHON, "-m", "doit", "-f", str(DODO), "list",
                      f"config={work / 'backup.yaml'}"]) for _ in range(repeat)]
    rows.append(("doit list", "snapback", *median(listing)))
    floor = [timed([PYTHON, "-c", FLOOR, str(src)]) for _ in range(repeat)]
    rows.append(("floor: scandir+lstat walk", "python", *median(floor)))
    # the same walk in a program that imports what snapback's core is built on: the
    # least a no-change run of a doit application with these dependencies costs
    floor = [timed([PYTHON, "-c", FLOOR_APP, str(src)]) for _ in range(repeat)]
    rows.append(("floor: walk + doit, yaml, sqlite3 imported", "python",
                 *median(floor)))
    if not keep:
        shutil.rmtree(work)
    return [(f"{n:,}", *row) for row in rows], breakdown


def table(rows: list[tuple[str, str, str, float, int]]) -> str:
    rsync = {(r[0], r[1]): r[3] for r in rows if r[2] == "rsync"}
    out = ["| N | scenario | tool | wall s | peak RSS MB | x rsync |",
           "|---|---|---|---|---|---|"]
    for n, scenario, tool, wall, rss in rows:
        ratio = rsync.get((n, scenario))
        shown = f"{wall / ratio:.2f}" if ratio and tool != "rsync" else ""
        out.append(f"| {n} | {scenario} | {tool} | {wall:.3f} | {rss} | {shown} |")
    return "\n".join(out)


def breakdown_table(rows: list[tuple]) -> str:
    out = ["| N | no-change run | wall s | ms / 1k files | " + " | ".join(BREAKDOWN)
           + " | own peak RSS MB |",
           "|---|---|---|---|" + "---|" * len(BREAKDOWN) + "---|"]
    for n, name, wall, per_k, share, peak in rows:
        cells = " | ".join(f"{share.get(k, 0.0):.3f}" for k in BREAKDOWN)
        out.append(f"| {n} | {name} | {wall:.3f} | {per_k:.1f} | {cells} | {peak} |")
    return "\n".join(out)


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        run_child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[5815, 50_000])
    parser.add_argument("--huge", action="store_true", help="also N = 200,000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--first-repeat", type=int, default=None,
                        help="first backups per tool (default: --repeat; 0: none)")
    parser.add_argument("--pyc-off", action="store_true",
                        help="no bytecode cache: compile snapback's modules on every run")
    parser.add_argument("--trees", type=Path, default=None,
                        help="keep generated trees (and their backups) here and reuse them")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    if not shutil.which("rsync"):
        raise SystemExit("bench needs rsync (apt-get install rsync)")
    sizes = args.sizes + ([200_000] if args.huge else [])
    base = (args.trees or Path(tempfile.mkdtemp(prefix="snapback-bench-"))).resolve()
    base.mkdir(parents=True, exist_ok=True)
    ENV.setdefault("PYTHONPYCACHEPREFIX", str(base / "pycache"))
    if args.pyc_off:
        ENV["PYTHONDONTWRITEBYTECODE"] = "1"
    first_repeat = args.repeat if args.first_repeat is None else args.first_repeat
    rows, breakdown = [], []
    try:
        for n in sizes:
            more, parts = measure(n, args.seed, args.repeat, base, first_repeat,
                                  keep=args.trees is not None)
            rows += more
            breakdown += parts
    finally:
        if args.trees is None:
            shutil.rmtree(base, ignore_errors=True)
    text = (table(rows) + "\n\nNo-change breakdown (bench/phases.py; seconds, scaled to "
            "the median wall):\n\n" + breakdown_table(breakdown))
    print(f"Interpreter: {PYTHON}\n")
    print(text)
    if not args.no_record:
        rsync_version = subprocess.run(["rsync", "--version"], capture_output=True,
                                       text=True).stdout.splitlines()[0]
        header = (f"\n## {date.today().isoformat()}\n\n"
                  f"Machine: {os.cpu_count()} cores (nproc), {platform.machine()}, "
                  f"Python {platform.python_version()}, {rsync_version}\n"
                  f"Command: `python bench/bench.py {' '.join(sys.argv[1:])}`"
                  + (f" with BENCH_PYTHON={PYTHON}" if sys.executable != PYTHON else "") + "\n"
                  f"Medians of {args.repeat} alternating runs "
                  f"({first_repeat} for first backups); bytecode cache "
                  f"{'off' if args.pyc_off else 'on'}.\n\n")
        with RESULTS.open("a") as fh:
            fh.write(header + text + "\n")


if __name__ == "__main__":
    main()
