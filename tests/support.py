"""Shared test helpers: trees from nested dicts, real doit runs in a subprocess, the
history of a path rebuilt from the catalog.  Test modules import helpers from here
only (never from conftest.py or from another test module); conftest.py holds the
fixtures and imports what it needs from here."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DODO = ROOT / "dodo.py"
SNAPBACK = [sys.executable, "-m", "pipeline"]   # the snapback command (pipeline/__main__.py)

# The subprocesses run this checkout's code (`python -m pipeline`), whatever snapback
# is installed from another checkout.
if str(ROOT) not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])

# The exit statuses (README, Exit status; pipeline/reporter.py)
OK, PARTIAL, INVALID, LOCKED = 0, 1, 2, 75


@dataclass(frozen=True)
class Link:
    target: str


def make_tree(root: Path, spec: dict) -> None:
    """Build files from a nested dict: str/bytes = file, dict = folder, Link = symlink."""
    root.mkdir(parents=True, exist_ok=True)
    for name, value in spec.items():
        path = root / name
        if isinstance(value, dict):
            make_tree(path, value)
        elif isinstance(value, Link):
            os.symlink(value.target, path)
        elif isinstance(value, bytes):
            path.write_bytes(value)
        else:
            path.write_text(value)


def tree(root: Path, with_mtime: bool = False) -> dict[str, tuple]:
    """Everything below root: rel path -> (kind, content or target, mode[, mtime_ns])."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                item: tuple = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                item = ("dir", None, stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                item = ("file", Path(path).read_bytes(), stat.S_IMODE(st.st_mode))
            else:                                   # never open a fifo, socket or device
                item = ("special", stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode))
            if with_mtime and item[0] != "dir":
                item += (st.st_mtime_ns,)
            out[rel] = item
    return out


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


@dataclass
class Backup:
    """A source folder, a destination and a plan in a temporary folder."""

    base: Path
    src: Path
    dest: Path
    plan: Path

    @property
    def mirror(self) -> Path:
        return self.dest / "system_snapshot" / "src"

    @property
    def meta(self) -> Path:
        return self.dest / ".snapback"

    def write_plan(self, **keys: object) -> None:
        data = {"destination": str(self.dest), "sources": [{"path": str(self.src)}]}
        data.update(keys)
        self.plan.write_text(yaml.safe_dump(data))

    def doit(self, *args: str, check: bool | None = None, env: dict | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [*SNAPBACK, *args, f"config={self.plan}"]
        env = {**os.environ, **(env or {})}
        if ("SNAPBACK_FAULT" in env or "SNAPBACK_FAULT_LOG" in env) and \
                "SNAPBACK_COMMIT_EVERY" not in env:
            # A fault point named by number ("commit:2") is one of a folder's: each
            # folder commits on its own, as before the default became a commit a
            # second (a small tree's run is one commit then).  The grouped default is
            # killed and filled at each of its points where a test passes
            # SNAPBACK_COMMIT_EVERY itself (test_crash_points, test_fulldisk,
            # test_trust).
            env["SNAPBACK_COMMIT_EVERY"] = "0"
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                env=env, cwd=self.base)
        if check is True:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    def snapshot(self, *args: str) -> subprocess.CompletedProcess:
        return self.doit("snapshot", *args, check=True)

    def run(self, *args: str) -> tuple[int, str]:
        """A real doit run in this process (fast enough for property tests)."""
        code, out, _namespace = self.run_here(*args)
        return code, out

    def run_here(self, *args: str) -> tuple[int, str, dict]:
        """The same, with the run's SESSION (as dodo.py's namespace names it)."""
        from doit import cmd_run

        from pipeline.app import Snapback
        old = os.environ.get("SNAPBACK_CONFIG")
        os.environ["SNAPBACK_CONFIG"] = str(self.plan)
        out, err = io.StringIO(), io.StringIO()
        # doit's run command writes to the sys.stdout it found when it was imported
        # (its --output-file default), not to the one redirect_stdout puts in place
        stdout = cmd_run.opt_outfile["default"]
        cmd_run.opt_outfile["default"] = out
        try:
            app = Snapback()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = app.run(list(args))
                except SystemExit as exc:     # snapback's own status (pipeline/reporter.py)
                    code = exc.code
            namespace = {"SESSION": app.task_loader.session}
        finally:
            cmd_run.opt_outfile["default"] = stdout
            if old is None:
                del os.environ["SNAPBACK_CONFIG"]
            else:
                os.environ["SNAPBACK_CONFIG"] = old
        return code, out.getvalue() + err.getvalue(), namespace

    def catalog(self) -> list:
        from pipeline.catalog import Catalog
        cat = Catalog(self.meta / "catalog.sqlite3", writable=False)
        try:
            return cat.all_rows()
        finally:
            cat.close()

    @property
    def versions(self) -> Path:
        return self.dest / "versioned_backup" / "src"

    def runs(self) -> list[str]:
        log = self.meta / "runs.jsonl"
        return log.read_text().splitlines() if log.exists() else []


def lines(output: str, kind: str) -> list[str]:
    """The paths of the per-file lines of one kind (new, updated, deleted, FAILED),
    without the mode label of ``doit all`` (``new  [mirror+history] src/a.txt``)."""
    out = []
    for line in output.splitlines():
        if line.split(None, 1)[:1] != [kind]:
            continue
        rest = line.split(None, 1)[1]
        if rest.startswith("[") and "] " in rest:
            rest = rest.split("] ", 1)[1].lstrip()
        out.append(rest)
    return sorted(out)


def digests(root: Path) -> dict[str, str]:
    """sha256 of every regular file below ``root`` (the catalog, the run log and the
    lock included), by path relative to it: "no byte of the destination changed"."""
    out = {}
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if stat.S_ISREG(os.lstat(path).st_mode):
                with open(path, "rb") as fh:
                    out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def at(b: Backup, when: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """A doit run with the clock set to ``when`` (SNAPBACK_NOW)."""
    return b.doit(*args, env={"SNAPBACK_NOW": when}, check=check)


def history_of(b: Backup, rel: str) -> list:
    """The catalog rows of one path of the source ``src``, oldest first."""
    folder, _, name = rel.rpartition("/")
    return [r for r in b.catalog()
            if r.dir == os.fsencode(folder) and r.name == os.fsencode(name)]


def whole(b: Backup, rel: str) -> Path:
    """The stored file that holds a path's newest version whole (its copy, or its
    baseline or full object), as the catalog names it."""
    from pipeline.catalog import CONTENT_KINDS
    rows = [r for r in history_of(b, rel) if r.kind in CONTENT_KINDS]
    row = rows[-1]
    name = row.copy if row.copy is not None else row.object
    return b.versions / os.fsdecode(row.store) / os.fsdecode(name)


def on_disk(root: Path) -> int:
    """Bytes allocated below ``root``, each inode once (as du counts hard links)."""
    seen, total = set(), 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def aged(root: Path, seconds: int = 60) -> None:
    """Every entry below ``root`` modified ``seconds`` ago: files a backup reads just
    after they were written are racily clean (README) and are read again next run."""
    then = time.time_ns() - seconds * 10**9
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), ns=(then, then), follow_symlinks=False)
    os.utime(root, ns=(then, then))


def change_behind_stat(path: Path, before: os.stat_result, how: str) -> None:
    """Change the file ``path`` (its stat was ``before``) the way the stat shows least:
    "removed"; "replaced" by a file of the same size and mtime (a new inode); else
    rewritten in place, same size, its mtime set back (only the ctime moves)."""
    if how == "removed":
        path.unlink()
    elif how == "replaced":
        fresh = path.with_name(path.name + ".tmp")
        fresh.write_text("again\n")
        os.utime(fresh, ns=(before.st_atime_ns, before.st_mtime_ns))
        os.replace(fresh, path)
    else:
        path.write_text("again\n")                      # the same size
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def next_second() -> None:
    """Wait for the second of the kernel's coarse clock (the one file times are stamped
    with) to turn: what follows within a few milliseconds shares one whole second (a
    filesystem with 1 s timestamps, ``coarse_disk``, stamps it all alike)."""
    start = time.clock_gettime_ns(5) // 10**9
    while time.clock_gettime_ns(5) // 10**9 == start:
        time.sleep(0.001)


def rebuilt(b: Backup, rel: str) -> list[bytes | None]:
    """Every content version of a path, rebuilt from baseline and diffs (None = deleted;
    a ``meta`` row, a new mode or mtime alone, is not a content version)."""
    from pipeline.catalog import CONTENT_KINDS
    from pipeline.rebuild import rebuild
    rows = history_of(b, rel)
    return [rebuild(b.versions, rows, r) if r.kind in CONTENT_KINDS else None
            for r in rows if r.entry == "file" and r.kind != "meta"]


def gnu_patch_chain(b: Backup, rel: str, tmp: Path) -> list[bytes]:
    """Apply the diffs with GNU patch, baseline first, as a user would by hand."""
    out = []
    work = tmp / "patched"
    for row in history_of(b, rel):
        obj = b.versions / os.fsdecode(row.store) / os.fsdecode(row.object or b"")
        if row.kind in ("baseline", "full"):
            work.write_bytes(obj.read_bytes())
        elif row.kind == "diff":
            subprocess.run(["patch", "-s", "--binary", str(work), str(obj)], check=True)
        else:
            continue
        out.append(work.read_bytes())
    return out


# ---- runs as the user nobody (root reads and writes everything) ----

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def as_nobody(b: Backup, python: str, *args: str) -> subprocess.CompletedProcess:
    """Run doit as nobody on ``b`` (its sources, plan and dodo.py made nobody's first;
    the destination is left alone: a chown would change what the tests compare)."""
    for dirpath, dirnames, filenames in os.walk(b.base):
        if Path(dirpath) == b.dest or b.dest in Path(dirpath).parents:
            dirnames[:] = []                  # (not entered: left alone, however deep)
            continue
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            if name != str(b.dest):
                os.lchown(name, 65534, 65534)
    return subprocess.run([*NOBODY, python, "-m", "pipeline", *args,
                           f"config={b.plan}"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PWD": str(b.base)})


def hold_with_stopped_run(b: Backup, command: str) -> subprocess.Popen:
    """Start a run, wait until it holds the backup's lock, and freeze it there
    (SIGSTOP): concurrency tests made deterministic.  SIGCONT it when done."""
    import signal
    import time
    proc = subprocess.Popen([*SNAPBACK, command, f"config={b.plan}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = b.meta / "lock"
    deadline = time.time() + 60
    while not (lock.exists() and lock.read_text().strip()):
        assert time.time() < deadline and proc.poll() is None, "the run never took the lock"
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGSTOP)
    return proc


def rclone_or_skip() -> str:
    """The rclone binary, or skip (not installed: the [remote] extra brings it; CI fails)."""
    from pipeline.rclone import rclone
    try:
        return rclone()
    except Exception as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))


def strace(b: Backup, calls: str, *args: str) -> list[str]:
    """The system calls ``calls`` (strace's ``trace=`` list) of a doit run in a child,
    one line each, file descriptors shown with their paths (``-y``)."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    log = b.base / "strace.log"
    cmd = ["strace", "-f", "-y", "-qq", "-o", str(log), "-e", f"trace={calls}",
           *SNAPBACK, *args, f"config={b.plan}"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=b.base)
    if result.returncode != 0 and "ptrace" in result.stderr:     # (strace's own failure)
        pytest.skip(f"strace cannot trace here: {result.stderr.strip()[:200]}")
    assert result.returncode == 0, result.stdout + result.stderr
    return log.read_text().splitlines()


def fill_disk(disk: Path, free: int) -> Path:
    """A ballast file that leaves ``free`` bytes of ``disk`` free (at most)."""
    st = os.statvfs(disk)
    ballast = disk / "ballast"
    with open(ballast, "wb") as fh:
        fh.write(b"\xff" * max(st.f_bavail * st.f_frsize - free, 0))
    st = os.statvfs(disk)
    assert st.f_bavail * st.f_frsize <= max(free, st.f_frsize), "the ballast did not fill it"
    return ballast
