"""A sync cut short at every point leaves a remote that restores (issue 22).

``doit sync`` sends the history's new objects, then the run log, then the catalog,
then the mirror (changes, then deletions), then removes the history's pruned
objects.  The fault hook (``SNAPBACK_FAULT=sync:<n>``) kills the sync before each of
those five steps and one file into each (rclone stops after one transfer or one
deletion): 10 points.  The scenario: three runs (edits, a mode change, a link retargeted, a
touch, a file that became a folder and a folder that became a file, a deletion),
the remote synced after the second, then (in the prune case) ``doit prune
--keep-last 1``, which rebases the history under new names.  After each kill, on
a new machine: ``doit fetch``, ``doit verify --deep`` exit 0, the remote's catalog
is its old one or its new one, and every run that catalog names restores exactly
by its run id (bytes, modes, mtimes, links), the latest state too.  Then the next
sync completes and ``doit check`` is clean.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from support import Backup, Link, aged, digest, make_tree, rclone_or_skip, tree

POINTS = 10                 # 5 steps, each cut before it and one file into it


def _rclone_env(tmp_path: Path) -> dict:
    return {"RCLONE_CONFIG": str(tmp_path / "no-rclone.conf"),
            "RCLONE_CONFIG_SNAPLOCAL_TYPE": "local"}


def _state(root: Path) -> dict:
    return tree(root, with_mtime=True)


def _restored(b: Backup, env: dict, into: Path, *args: str) -> dict:
    shutil.rmtree(into, ignore_errors=True)
    result = b.doit("restore", str(b.src), *args, "--to", str(into), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return _state(into)


def _on_a_new_machine(b: Backup, env: dict, dest: Path) -> Backup:
    """``doit fetch`` into a new destination, then ``doit verify --deep`` (exit 0)."""
    shutil.rmtree(dest, ignore_errors=True)
    new = Backup(b.base, b.src, dest, b.base / "new-machine.yaml")
    new.plan.write_text(b.plan.read_text().replace(str(b.dest), str(dest)))
    fetched = new.doit("fetch", env=env)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    deep = new.doit("verify", "--deep", env=env)
    assert deep.returncode == 0, deep.stdout + deep.stderr
    return new


def _run(b: Backup, day: int) -> tuple[str, dict]:
    aged(b.src)
    os.utime(b.src / "new.txt", ns=(time.time_ns() - 10**11 * day,) * 2) \
        if (b.src / "new.txt").exists() else None
    b.doit("all", env={"SNAPBACK_NOW": f"2026-10-0{day}T10:00:00"}, check=True)
    return json.loads(b.runs()[-1])["run_id"], _state(b.src)


@pytest.mark.parametrize("prune", [False, True], ids=["runs", "runs then prune"])
def test_a_sync_killed_at_every_point_leaves_a_remote_that_restores(
        backup: Backup, tmp_path: Path, prune: bool) -> None:
    rclone_or_skip()
    env = _rclone_env(tmp_path)
    remote = tmp_path / "remote"
    backup.write_plan(remote={"target": f"snaplocal:{remote}"})
    src = backup.src
    make_tree(src, {"notes.txt": "one\n", "img.bin": b"\x00" * 64, "x": "a file\n",
                    "secret.txt": "s\n", "d": {"f.txt": "f\n", "g": {"h.txt": "h\n"}},
                    "l": Link("notes.txt")})
    os.chmod(src / "secret.txt", 0o600)
    runs = [_run(backup, 1)]
    (src / "notes.txt").write_text("one\ntwo\n")
    (src / "img.bin").write_bytes(b"\x01" * 64)
    os.chmod(src / "secret.txt", 0o640)                       # a mode change alone
    os.unlink(src / "l")
    os.symlink("img.bin", src / "l")
    (src / "new.txt").write_text("new\n")
    runs.append(_run(backup, 2))
    assert backup.doit("sync", env=env).returncode == 0
    pristine = tmp_path / "pristine-remote"                   # names runs 1 and 2
    shutil.copytree(remote, pristine, symlinks=True)
    (src / "notes.txt").write_text("one\ntwo\nthree\n")
    (src / "img.bin").unlink()
    (src / "x").unlink()
    make_tree(src / "x", {"inner.txt": "in\n"})              # a file became a folder
    shutil.rmtree(src / "d")
    (src / "d").write_text("a folder became a file\n")       # and back
    (src / "later.txt").write_text("later\n")
    runs.append(_run(backup, 3))                              # new.txt: touched only
    kept = {"old": runs[:2], "new": runs}
    if prune:
        result = backup.doit("prune", "--keep-last", "1")      # rebased under new names
        assert result.returncode == 0, result.stdout + result.stderr
        kept["new"] = runs[-1:]

    log = tmp_path / "points.log"
    counted = backup.doit("sync", env={**env, "SNAPBACK_FAULT_LOG": str(log)})
    assert counted.returncode == 0, counted.stdout + counted.stderr
    assert Counter(log.read_text().split())["sync"] == POINTS
    assert backup.doit("check", env=env).returncode == 0
    catalogs = {"old": digest(pristine / ".snapback" / "catalog.sqlite3"),
                "new": digest(remote / ".snapback" / "catalog.sqlite3")}
    for n in range(1, POINTS + 1):
        shutil.rmtree(remote)
        shutil.copytree(pristine, remote, symlinks=True)
        killed = backup.doit("sync", env={**env, "SNAPBACK_FAULT": f"sync:{n}"})
        assert killed.returncode == -signal.SIGKILL, (n, killed.stdout, killed.stderr)
        found = digest(remote / ".snapback" / "catalog.sqlite3")
        which = "old" if found == catalogs["old"] else "new"
        assert found == catalogs[which], n                   # one or the other, whole
        assert which == ("old" if n <= 5 else "new"), n      # (6: one file into the
        there = _on_a_new_machine(backup, env, tmp_path / "machine")    # catalog's step)
        # every run the fetched catalog names has its record in the fetched run log (the
        # log goes first: a catalog sent before it named runs whose records never came)
        logged = {json.loads(line)["run_id"] for line in there.runs()}
        assert {run_id for run_id, _state in kept[which]} <= logged, (n, which)
        # a run the fetched catalog does not hold is never restored as another's state,
        # though its log may name it (cut between the log and the catalog: helper-42)
        if which == "old":
            missing = there.doit("restore", str(backup.src), "--at", runs[-1][0], "--to",
                                 str(tmp_path / "not-there"), env=env)
            assert missing.returncode == 2, (n, missing.stdout + missing.stderr)
            assert not (tmp_path / "not-there").exists(), n
        for run_id, state in kept[which]:
            assert _restored(there, env, tmp_path / "got", "--at", run_id) == state, \
                (n, which, run_id)
        latest = kept[which][-1][1]                           # the latest state, no mix
        assert _restored(there, env, tmp_path / "got") == latest, (n, which)
        done = backup.doit("sync", env=env)                  # the next sync completes
        assert done.returncode == 0, (n, done.stdout + done.stderr)
        check = backup.doit("check", env=env)
        assert check.returncode == 0, (n, check.stdout + check.stderr)
    there = _on_a_new_machine(backup, env, tmp_path / "machine")
    for run_id, state in kept["new"]:
        assert _restored(there, env, tmp_path / "got", "--at", run_id) == state, run_id


KINDS = {"file": "a file\n", "folder": {"f.txt": "f\n", "g": {"h.txt": "h\n"}},
         "link": Link("elsewhere")}


@pytest.mark.parametrize("change", ["file to folder", "folder to file", "link to folder",
                                    "folder to link", "link to file", "file to link"])
def test_a_kind_change_syncs_and_checks_clean(backup: Backup, tmp_path: Path,
                                              change: str) -> None:
    rclone_or_skip()
    env = _rclone_env(tmp_path)
    backup.write_plan(remote={"target": f"snaplocal:{tmp_path / 'remote'}"})
    before, _, after = change.split()
    make_tree(backup.src, {"p": KINDS[before]})
    backup.doit("all", check=True)
    assert backup.doit("sync", env=env).returncode == 0
    path = backup.src / "p"
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    make_tree(backup.src, {"p": KINDS[after]})
    backup.doit("all", check=True)
    for _ in range(2):                                  # and on every sync after
        result = backup.doit("sync", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        check = backup.doit("check", env=env)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "0 problems" in check.stdout


def test_a_sync_after_a_killed_run_sends_the_catalog_its_history_needs(
        backup: Backup, tmp_path: Path) -> None:
    """A run killed after some of its commits leaves them in the catalog's journal
    (never sent); the sync folds it in first (else the remote's catalog names the
    whole copies the run superseded, which the sync removes), and sends only the
    objects the catalog names (not the killed folder's, which no row names)."""
    rclone_or_skip()
    env = _rclone_env(tmp_path)
    backup.write_plan(remote={"target": f"snaplocal:{tmp_path / 'remote'}"})
    files = {"a": "t.txt", "b": "u.txt", "c": "v.txt"}       # one commit per folder
    make_tree(backup.src, {d: {f: "one\n"} for d, f in files.items()})
    backup.doit("versioned", check=True)
    assert backup.doit("sync", env=env).returncode == 0
    for text in ("one\ntwo\n", "one\ntwo\nthree\n"):     # diffs: each supersedes the
        for d, f in files.items():                         # whole copy before it
            (backup.src / d / f).write_text(text)
        aged(backup.src)
        run = backup.doit("versioned", env={"SNAPBACK_FAULT": "commit:3",
                                            "SNAPBACK_COMMIT_EVERY": "0"} if "three" in text
                          else {})
    assert run.returncode == -signal.SIGKILL             # the last run: a committed
    assert (backup.meta / "catalog.sqlite3-wal").stat().st_size > 0
    done = backup.doit("sync", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    check = backup.doit("check", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "0 problems" in check.stdout
    there = _on_a_new_machine(backup, env, tmp_path / "machine")
    got = _restored(there, env, tmp_path / "got", "--from", "versioned")
    assert got == _restored(backup, env, tmp_path / "here", "--from", "versioned")
    assert got["a/t.txt"][1] == b"one\ntwo\nthree\n"       # committed before the kill
    assert got["c/v.txt"][1] == b"one\ntwo\n"              # never committed


def test_a_failed_run_after_runs_a_cut_sync_left_behind_is_refused(backup: Backup,
                                                                    tmp_path: Path) -> None:
    """The log sent, not the catalog: the remote's log names run 2, which its catalog
    lacks, then run 3, whose only commit failed (a full disk: in no catalog).  ``--at``
    run 3 would be run 2's state, which this catalog cannot give: refused, status 2,
    never run 1's state under run 3's name (helper-44)."""
    rclone_or_skip()
    env = _rclone_env(tmp_path)
    backup.write_plan(remote={"target": f"snaplocal:{tmp_path / 'remote'}"})
    make_tree(backup.src, {"a.txt": "one\n", "b.txt": "b\n"})
    first, _state = _run(backup, 1)
    assert backup.doit("sync", env=env).returncode == 0
    (backup.src / "a.txt").write_text("one\ntwo\n")
    second, _state = _run(backup, 2)
    (backup.src / "b.txt").write_text("b, three\n")
    failed = backup.doit("all", env={"SNAPBACK_FAULT": "commit:1:enospc"})
    assert failed.returncode == 1, failed.stdout + failed.stderr
    third = json.loads(backup.runs()[-1])
    assert third["in_catalog"] is False
    cut = backup.doit("sync", env={**env, "SNAPBACK_FAULT": "sync:5"})   # before the catalog
    assert cut.returncode == -signal.SIGKILL, cut.stdout + cut.stderr
    there = _on_a_new_machine(backup, env, tmp_path / "machine")
    assert {json.loads(line)["run_id"] for line in there.runs()} >= {first, second,
                                                                      third["run_id"]}
    for run_id in (second, third["run_id"]):
        refused = there.doit("restore", str(backup.src), "--at", run_id, "--to",
                             str(tmp_path / "got"), env=env)
        assert refused.returncode == 2, (run_id, refused.stdout + refused.stderr)
        assert not (tmp_path / "got").exists()
    assert _restored(there, env, tmp_path / "got", "--at", first)["a.txt"][1] == b"one\n"
