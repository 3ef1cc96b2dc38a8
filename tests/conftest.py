"""Fixtures and pytest hooks.  The helpers live in support.py (importing it sets
PYTHONPATH, so that subprocess doit runs import this checkout's pipeline)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from support import DODO, NOBODY, ROOT, Backup


@pytest.fixture
def backup(tmp_path: Path) -> Backup:
    b = Backup(tmp_path, tmp_path / "src", tmp_path / "dest", tmp_path / "backup.yaml")
    b.src.mkdir()
    b.write_plan()
    return b


@pytest.fixture(scope="session")
def nobody_python() -> str:
    """A Python with snapback installed that the user ``nobody`` can execute.

    The interpreter running the tests may live under /root, which nobody cannot
    enter; Debian's /usr/bin/python3 gets a venv in /tmp with this checkout
    installed into it (once per checkout version).
    """
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run snapback as an unprivileged user")
    # every file of the package, its path too (pipeline/commands/ included)
    stamp = hashlib.sha1(b"".join(bytes(p.relative_to(ROOT)) + p.read_bytes() for p in sorted(
        (ROOT / "pipeline").rglob("*.py"))) + (ROOT / "pyproject.toml").read_bytes()).hexdigest()
    venv = Path(f"/tmp/snapback-nobody-{stamp[:12]}")
    python = venv / "bin" / "python"
    with open(f"{venv}.lock", "w") as lock:    # pytest-xdist: one worker builds it
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not python.exists():
            _build_nobody_venv(venv)
    probe = subprocess.run([*NOBODY, str(python), "-c", "import pipeline, doit"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        message = f"nobody cannot run {python}: {probe.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return str(python)


def _build_nobody_venv(venv: Path) -> None:
    """A venv in /tmp with a copy of this checkout installed (built aside, then renamed)."""
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


@pytest.fixture
def nobody_backup(nobody_python: str):
    """A Backup in a folder that the user nobody can reach, with its own dodo.py."""
    base = Path(tempfile.mkdtemp(prefix="snapback-nobody-"))
    os.chmod(base, 0o755)
    b = Backup(base, base / "src", base / "dest", base / "backup.yaml")
    b.src.mkdir()
    b.write_plan()
    shutil.copy(DODO, base / "dodo.py")
    yield b, nobody_python
    subprocess.run(["chmod", "-R", "u+w", str(base)], check=False)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 3 MB tmpfs (skips where mounting is not allowed), unmounted lazily when a
    failed test still holds a file of it open (its traceback keeps a catalog open)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                            capture_output=True)
    if result.returncode != 0:                     # probing mount, not snapback
        pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.decode().strip()}")
    yield mount
    if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def coarse_disk(tmp_path):
    """A filesystem that keeps whole seconds (ext4 with 128-byte inodes, as FAT, exFAT
    and SMB keep coarse times); skips where a loop mount is not allowed."""
    import shutil
    import subprocess
    if not shutil.which("mkfs.ext4") or os.geteuid() != 0:
        pytest.skip("needs mkfs.ext4 and root to mount a loop filesystem")
    image, mount = tmp_path / "disk.img", tmp_path / "coarse"
    mount.mkdir()
    with open(image, "wb") as fh:
        fh.truncate(16 << 20)
    made = subprocess.run(["mkfs.ext4", "-q", "-I", "128", str(image)], capture_output=True)
    mounted = made.returncode == 0 and subprocess.run(
        ["mount", "-o", "loop", str(image), str(mount)], capture_output=True).returncode == 0
    if not mounted:                                      # probing the machine, not snapback
        pytest.skip("cannot mount a loop filesystem here")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)
