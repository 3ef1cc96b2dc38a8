"""What a killed prune, restore or backup leaves behind (a temporary file) is named by
verify and removed by the next writer that works there (issue 22)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from support import Backup, Link, make_tree, rclone_or_skip


def test_a_killed_prune_leaves_a_temporary_file_that_verify_names_and_prune_removes(
        backup: Backup) -> None:
    for day in range(1, 4):
        make_tree(backup.src, {"notes.txt": "".join(f"v{i}\n" for i in range(day))})
        backup.doit("versioned", env={"SNAPBACK_NOW": f"2026-10-0{day}T10:00:00"}, check=True)
    killed = backup.doit("prune", "--keep-last", "2", env={"SNAPBACK_FAULT": "rename:1"})
    assert killed.returncode == -signal.SIGKILL
    left = [p for p in backup.dest.rglob(".~snapback-*")]
    assert len(left) == 1, left
    verify = backup.doit("verify", "--deep")
    assert verify.returncode == 0, verify.stdout + verify.stderr   # not damage: said
    assert f"leftover      {left[0]}: a temporary file of a run that was killed" in verify.stdout
    done = backup.doit("prune", "--keep-last", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert [p for p in backup.dest.rglob(".~snapback-*")] == []
    assert "leftover" not in backup.doit("verify", check=True).stdout


def test_a_killed_restore_leaves_nothing_the_next_restore_does_not_remove(
        backup: Backup) -> None:
    make_tree(backup.src, {"d": {"a.txt": "a\n", "b.txt": "b\n"}})
    backup.doit("versioned", check=True)
    into = backup.base / "back"
    killed = backup.doit("restore", str(backup.src / "d"), "--to", str(into),
                         env={"SNAPBACK_FAULT": "rename:2"})
    assert killed.returncode == -signal.SIGKILL
    assert len(list(into.rglob(".~snapback-*"))) == 1
    again = backup.doit("restore", str(backup.src / "d"), "--to", str(into), "--force")
    assert again.returncode == 0, again.stdout + again.stderr
    assert list(into.rglob(".~snapback-*")) == []
    assert (into / "d" / "b.txt").read_text() == "b\n"


def test_verify_names_a_killed_fetchs_partial_file_never_a_users_file_of_that_name(
        backup: Backup) -> None:
    """rclone writes ``<name>.<8 hex>.partial`` and renames it when done: a killed fetch
    leaves one.  A user's own ``*.partial`` (a browser's download) is a file the catalog
    names, never a leftover."""
    make_tree(backup.src, {"film.mkv.partial": "a download\n",
                           "notes.txt.0123abcd.partial": "named like rclone's\n"})
    backup.doit("all", check=True)
    clean = backup.doit("verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "leftover" not in clean.stdout, clean.stdout
    left = backup.mirror / "notes.txt.89abcdef.partial"
    left.write_text("half a fi")
    said = backup.doit("verify")
    assert said.returncode == 0, said.stdout + said.stderr       # not damage: said
    assert [line for line in said.stdout.splitlines() if "leftover" in line] == [
        f"leftover      {left}: a partial file of a doit fetch that was killed "
        "(the next doit fetch removes it)"]


def test_the_next_fetch_removes_what_a_killed_fetch_left_and_never_takes_it_as_found(
        backup: Backup, tmp_path: Path) -> None:
    rclone_or_skip()
    env = {"RCLONE_CONFIG": str(tmp_path / "no-rclone.conf"),
           "RCLONE_CONFIG_SNAPLOCAL_TYPE": "local"}
    backup.write_plan(remote={"target": f"snaplocal:{tmp_path / 'remote'}"})
    make_tree(backup.src, {"a.txt": "a\n", "sub": {"b.txt": "b\n"}, "l": Link("a.txt")})
    backup.doit("all", check=True)
    assert backup.doit("sync", env=env).returncode == 0
    # the machine is lost; on the new one a fetch was killed half-way through a file
    # that a later sync took off the remote: rclone never writes that name again
    os.rename(backup.dest, tmp_path / "old-machine")
    killed = [backup.mirror / "sub" / "gone.txt.0123abcd.partial",
              backup.versions / "gone.txt_versions" / "gone-baseline.txt.89abcdef.partial"]
    for path in killed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half a fi")
    fetched = backup.doit("fetch", env=env)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert [p for p in killed if os.path.lexists(p)] == []
    verify = backup.doit("verify", "--deep")
    assert verify.returncode == 0 and "leftover" not in verify.stdout, verify.stdout
    into = tmp_path / "back"
    restored = backup.doit("restore", str(backup.src), "--to", str(into))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert sorted(str(p.relative_to(into)) for p in into.rglob("*")) == [
        "a.txt", "l", "sub", "sub/b.txt"]


def test_a_restore_killed_before_naming_a_link_leaves_a_temporary_link_the_next_removes(
        backup: Backup) -> None:
    outside = backup.base / "elsewhere"
    make_tree(outside, {"keep.txt": "untouched\n"})
    make_tree(backup.src, {"d": {"a.txt": "a\n", "to-outside": Link(str(outside))}})
    backup.doit("versioned", check=True)
    into = backup.base / "back"
    killed = backup.doit("restore", str(backup.src / "d"), "--to", str(into),
                         env={"SNAPBACK_FAULT": "rename:2"})      # files first, links last
    assert killed.returncode == -signal.SIGKILL
    left = list((into / "d").glob(".~snapback-*"))
    assert len(left) == 1 and os.readlink(left[0]) == str(outside), left
    again = backup.doit("restore", str(backup.src / "d"), "--to", str(into), "--force")
    assert again.returncode == 0, again.stdout + again.stderr
    assert list(into.rglob(".~snapback-*")) == []
    assert os.readlink(into / "d" / "to-outside") == str(outside)
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]


def test_a_restore_force_across_kind_changes_killed_at_each_point_completes_on_the_next(
        backup: Backup) -> None:
    """A folder restored in place over paths that changed kind (a file where a folder
    was, a folder where a file was, a symlink where a file was), killed before each
    rename it makes: the next restore --force gives the exact tree, with no temporary
    file or link left, and never writes through the link."""
    import json
    import shutil
    outside = backup.base / "elsewhere"
    make_tree(outside, {"keep.txt": "untouched\n"})
    then = {"d": {"was-dir": {"x.txt": "x\n"}, "was-file": "f\n", "was-file2": "g\n",
                  "to-out": Link(str(outside)), "plain.txt": "p\n"}}
    make_tree(backup.src, then)
    backup.doit("versioned", check=True)
    run_id = json.loads(backup.runs()[-1])["run_id"]
    want = tree_of(backup.src / "d")

    def changed() -> None:
        shutil.rmtree(backup.src / "d")
        make_tree(backup.src, {"d": {"was-dir": "now a file\n", "was-file": {"y.txt": "y\n"},
                                     "was-file2": Link(str(outside)), "plain.txt": "p2\n"}})

    log = backup.base / "points.log"
    changed()
    counted = backup.doit("restore", str(backup.src / "d"), "--at", run_id, "--force",
                          "--to", str(backup.src), env={"SNAPBACK_FAULT_LOG": str(log)})
    assert counted.returncode == 0, counted.stdout + counted.stderr
    assert tree_of(backup.src / "d") == want
    renames = log.read_text().split().count("rename")
    assert renames == 5, log.read_text()          # four files and a link
    for n in range(1, renames + 1):
        changed()
        killed = backup.doit("restore", str(backup.src / "d"), "--at", run_id, "--force",
                             "--to", str(backup.src), env={"SNAPBACK_FAULT": f"rename:{n}"})
        assert killed.returncode == -signal.SIGKILL, (n, killed.stdout + killed.stderr)
        assert len(list((backup.src / "d").rglob(".~snapback-*"))) == 1, n
        again = backup.doit("restore", str(backup.src / "d"), "--at", run_id, "--force",
                            "--to", str(backup.src))
        assert again.returncode == 0, (n, again.stdout + again.stderr)
        assert tree_of(backup.src / "d") == want, n
        assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
        assert (outside / "keep.txt").read_text() == "untouched\n"


def tree_of(root: Path) -> dict[str, object]:
    """Every path below ``root``: a file's bytes, a link's target, a folder's kind."""
    out: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = path.read_bytes()
    return out
