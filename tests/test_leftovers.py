"""What a killed prune, restore or backup leaves behind (a temporary file) is named by
verify and removed by the next writer that works there (issue 22)."""

from __future__ import annotations

import signal

from support import Backup, make_tree


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
