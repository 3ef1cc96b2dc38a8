"""Shared helpers: trees from nested dicts, real doit runs in a subprocess."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import runpy
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from doit.cmd_base import ModuleTaskLoader
from doit.doit_cmd import DoitMain

ROOT = Path(__file__).resolve().parent.parent
DODO = ROOT / "dodo.py"
DOIT = [sys.executable, "-m", "doit"]

# doit imports its state backend (an entry point of the installed snapback) before
# dodo.py puts this checkout on sys.path: with snapback installed from another
# checkout (editable), the subprocesses would run that checkout's code.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])


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
        cmd = [*DOIT, "-f", str(DODO), *args, f"config={self.plan}"]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                env={**os.environ, "PWD": str(self.base), **(env or {})},
                                cwd=self.base)   # PWD as a shell sets it: doit moves to dodo.py's folder
        if check is True:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    def snapshot(self, *args: str) -> subprocess.CompletedProcess:
        return self.doit("snapshot", *args, check=True)

    def run(self, *args: str) -> tuple[int, str]:
        """A real doit run in this process (fast enough for property tests)."""
        old = os.environ.get("SNAPBACK_CONFIG")
        os.environ["SNAPBACK_CONFIG"] = str(self.plan)
        out, err = io.StringIO(), io.StringIO()
        try:
            namespace = runpy.run_path(str(DODO))
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = DoitMain(ModuleTaskLoader(namespace)).run(list(args))
                except SystemExit as exc:     # snapback's own status (pipeline/report.py)
                    code = exc.code
        finally:
            if old is None:
                del os.environ["SNAPBACK_CONFIG"]
            else:
                os.environ["SNAPBACK_CONFIG"] = old
        return code, out.getvalue() + err.getvalue()

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


@pytest.fixture
def backup(tmp_path: Path) -> Backup:
    b = Backup(tmp_path, tmp_path / "src", tmp_path / "dest", tmp_path / "backup.yaml")
    b.src.mkdir()
    b.write_plan()
    return b


def lines(output: str, kind: str) -> list[str]:
    """The paths of the per-file lines of one kind (new, updated, deleted, FAILED)."""
    return sorted(line.split(None, 1)[1] for line in output.splitlines()
                  if line.split(None, 1)[:1] == [kind])


# ---- an interpreter that an unprivileged user can run (root ignores permissions) ----

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture(scope="session")
def nobody_python() -> str:
    """A Python with snapback installed that the user ``nobody`` can execute.

    The interpreter running the tests may live under /root, which nobody cannot
    enter; Debian's /usr/bin/python3 gets a venv in /tmp with this checkout
    installed into it (once per checkout version).
    """
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run snapback as an unprivileged user")
    stamp = hashlib.sha1(b"".join(p.read_bytes() for p in sorted(
        (ROOT / "pipeline").glob("*.py"))) + (ROOT / "pyproject.toml").read_bytes()).hexdigest()
    venv = Path(f"/tmp/snapback-nobody-{stamp[:12]}")
    python = venv / "bin" / "python"
    if not python.exists():
        base = shutil.which("python3", path="/usr/bin:/usr/local/bin") or sys.executable
        build = Path(str(venv) + ".building")
        shutil.rmtree(build, ignore_errors=True)
        try:
            subprocess.run([base, "-m", "venv", str(build)], check=True, capture_output=True)
            # built from a copy: an in-tree build leaves snapback.egg-info in the
            # checkout, whose entry points (PYTHONPATH above) go stale with pyproject.toml
            copy = Path(str(venv) + ".src")
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(ROOT / "pipeline", copy / "pipeline",
                            ignore=shutil.ignore_patterns("__pycache__"))
            for name in ("pyproject.toml", "README.md"):
                shutil.copy(ROOT / name, copy / name)
            subprocess.run([str(build / "bin" / "pip"), "install", "-q", str(copy)],
                           check=True, capture_output=True, timeout=600)
            shutil.rmtree(copy, ignore_errors=True)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            message = f"cannot build an interpreter for nobody: {exc}"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        os.replace(build, venv)
    probe = subprocess.run([*NOBODY, str(python), "-c", "import pipeline, doit"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        message = f"nobody cannot run {python}: {probe.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return str(python)


@pytest.fixture
def nobody_backup(nobody_python: str):
    """A Backup in a folder that the user nobody can reach, with its own dodo.py."""
    import tempfile
    base = Path(tempfile.mkdtemp(prefix="snapback-nobody-"))
    os.chmod(base, 0o755)
    b = Backup(base, base / "src", base / "dest", base / "backup.yaml")
    b.src.mkdir()
    b.write_plan()
    shutil.copy(DODO, base / "dodo.py")
    yield b, nobody_python
    subprocess.run(["chmod", "-R", "u+w", str(base)], check=False)
    shutil.rmtree(base, ignore_errors=True)


def as_nobody(b: Backup, python: str, *args: str) -> subprocess.CompletedProcess:
    """Run doit as nobody on ``b`` (its sources, plan and dodo.py made nobody's first;
    the destination is left alone: a chown would change what the tests compare)."""
    for dirpath, dirnames, filenames in os.walk(b.base):
        if Path(dirpath) == b.dest or b.dest in Path(dirpath).parents:
            continue
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            if name != str(b.dest):
                os.lchown(name, 65534, 65534)
    return subprocess.run([*NOBODY, python, "-m", "doit", "-f", str(b.base / "dodo.py"), *args,
                           f"config={b.plan}"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PWD": str(b.base)})


def hold_with_stopped_run(b: Backup, command: str) -> subprocess.Popen:
    """Start a run, wait until it holds the backup's lock, and freeze it there
    (SIGSTOP): concurrency tests made deterministic.  SIGCONT it when done."""
    import signal
    import time
    proc = subprocess.Popen([*DOIT, "-f", str(DODO), command, f"config={b.plan}"],
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
    from pipeline.sync import rclone
    try:
        return rclone()
    except Exception as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
