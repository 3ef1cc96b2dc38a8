"""A sync cut short at every step leaves a remote that restores (issue 22).

``doit sync`` sends the history's new objects, then the mirror's new files, then
the catalog, then removes what the new catalog no longer names.  The scenario
(a backup, a sync, edits with a path that changes kind, a second backup, a prune
that rebases the history) is synced once per point where the fault hook
(``SNAPBACK_FAULT=sync:<n>``) kills the sync; after each, on a new machine:
``doit fetch``, ``doit verify --deep`` clean, and the latest state restores as of
the remote's old catalog or its new one, never a mix.  Then a complete sync, and
``doit check`` is clean.
"""

from __future__ import annotations

import shutil
import signal
from collections import Counter
from pathlib import Path

import pytest
from support import Backup, Link, make_tree, rclone_or_skip, tree


def _latest(b: Backup, env: dict, into: Path) -> dict:
    shutil.rmtree(into, ignore_errors=True)
    result = b.doit("restore", "src", "--from", "versioned", "--to", str(into), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return tree(into, with_mtime=True)


def _on_a_new_machine(b: Backup, env: dict, dest: Path) -> Backup:
    shutil.rmtree(dest, ignore_errors=True)
    new = Backup(b.base, b.src, dest, b.base / "new-machine.yaml")
    new.plan.write_text(b.plan.read_text().replace(str(b.dest), str(dest)))
    fetched = new.doit("fetch", env=env)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    deep = new.doit("verify", "--deep", env=env)
    assert deep.returncode == 0, deep.stdout + deep.stderr
    return new


def test_a_sync_killed_at_every_step_leaves_a_remote_that_restores(backup: Backup,
                                                                   tmp_path: Path) -> None:
    rclone_or_skip()
    env = {"RCLONE_CONFIG": str(tmp_path / "no-rclone.conf"),
           "RCLONE_CONFIG_SNAPLOCAL_TYPE": "local"}
    remote = tmp_path / "remote"
    backup.write_plan(remote={"target": f"snaplocal:{remote}"})
    make_tree(backup.src, {"notes.txt": "one\n", "img.bin": b"\x00" * 64, "x": "a file\n",
                           "d": {"f.txt": "f\n"}, "l": Link("notes.txt")})
    backup.doit("all", env={"SNAPBACK_NOW": "2026-10-01T10:00:00"}, check=True)
    assert backup.doit("sync", env=env).returncode == 0
    old = _latest(backup, env, tmp_path / "old")
    (backup.src / "notes.txt").write_text("one\ntwo\n")
    (backup.src / "img.bin").write_bytes(b"\x01" * 64)
    (backup.src / "x").unlink()
    (backup.src / "x").mkdir()                              # a file became a folder
    (backup.src / "x" / "inner.txt").write_text("in\n")
    shutil.rmtree(backup.src / "d")
    (backup.src / "d").write_text("a folder became a file\n")
    backup.doit("all", env={"SNAPBACK_NOW": "2026-10-02T10:00:00"}, check=True)
    result = backup.doit("prune", "--keep-last", "1")      # rebased: objects go away
    assert result.returncode == 0, result.stdout + result.stderr
    new = _latest(backup, env, tmp_path / "new")
    assert new != old
    pristine = tmp_path / "pristine-remote"
    shutil.copytree(remote, pristine, symlinks=True)

    log = tmp_path / "points.log"
    counted = backup.doit("sync", env={**env, "SNAPBACK_FAULT_LOG": str(log)})
    assert counted.returncode == 0, counted.stdout + counted.stderr
    points = Counter(log.read_text().split())["sync"]
    assert points == 5, points
    assert backup.doit("check", env=env).returncode == 0
    for n in range(1, points + 1):
        shutil.rmtree(remote)
        shutil.copytree(pristine, remote, symlinks=True)
        killed = backup.doit("sync", env={**env, "SNAPBACK_FAULT": f"sync:{n}"})
        assert killed.returncode == -signal.SIGKILL, (n, killed.stdout, killed.stderr)
        there = _on_a_new_machine(backup, env, tmp_path / "machine")
        got = _latest(there, env, tmp_path / "got")
        assert got in (old, new), n
        assert got == (new if n > 3 else old), n        # the catalog goes at step 3
        done = backup.doit("sync", env=env)             # the next sync completes
        assert done.returncode == 0, (n, done.stdout + done.stderr)
        check = backup.doit("check", env=env)
        assert check.returncode == 0, (n, check.stdout + check.stderr)
        there = _on_a_new_machine(backup, env, tmp_path / "machine")
        assert _latest(there, env, tmp_path / "got") == new, n


@pytest.mark.parametrize("change", ["file to folder", "folder to file"])
def test_a_kind_change_syncs_and_checks_clean(backup: Backup, tmp_path: Path,
                                              change: str) -> None:
    rclone_or_skip()
    env = {"RCLONE_CONFIG": str(tmp_path / "no-rclone.conf"),
           "RCLONE_CONFIG_SNAPLOCAL_TYPE": "local"}
    backup.write_plan(remote={"target": f"snaplocal:{tmp_path / 'remote'}"})
    make_tree(backup.src, {"p": "a file\n"} if change == "file to folder"
              else {"p": {"f.txt": "f\n", "g": {"h.txt": "h\n"}}})
    backup.doit("all", check=True)
    assert backup.doit("sync", env=env).returncode == 0
    path = backup.src / "p"
    if change == "file to folder":
        path.unlink()
        make_tree(path, {"inner.txt": "in\n"})
    else:
        shutil.rmtree(path)
        path.write_text("now a file\n")
    backup.doit("all", check=True)
    for _ in range(2):                                  # and on every sync after
        result = backup.doit("sync", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        check = backup.doit("check", env=env)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "0 problems" in check.stdout
