"""A vanished source is not a deleted one (SPEC): a source that lost most of its
entries since the last run (an unmounted disk, an emptied folder) is backed up
without deleting anything, says so in one FAILED line, and exits 1; the run that
says --allow-mass-delete mirrors the deletion."""

from __future__ import annotations

import shutil

from support import PARTIAL, Backup, lines, make_tree


def _home(backup: Backup) -> None:
    make_tree(backup.src, {"keep.txt": "k\n", **{f"d{i}": {f"f{j}.txt": f"{i} {j}\n"
                                                         for j in range(10)} for i in range(10)}})


def test_an_emptied_source_is_not_mirrored_as_deleted(backup: Backup) -> None:
    _home(backup)
    backup.doit("all", check=True)
    for i in range(10):
        shutil.rmtree(backup.src / f"d{i}")                 # 100 of 101 files gone
    (backup.src / "new.txt").write_text("new\n")
    result = backup.doit("all")
    assert result.returncode == PARTIAL, result.stdout + result.stderr
    assert lines(result.stdout, "deleted") == []
    failed = [line for line in (result.stdout + result.stderr).splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "[mirror+history] src/: holds 2 of the 101 files" in failed[0]
    assert "--allow-mass-delete" in failed[0]
    assert (backup.mirror / "d3" / "f4.txt").read_text() == "3 4\n"      # nothing deleted
    assert (backup.mirror / "new.txt").read_text() == "new\n"            # new files backed up
    into = backup.base / "r"
    backup.doit("restore", str(backup.src / "d3"), "--to", str(into), check=True)
    assert (into / "d3" / "f4.txt").read_text() == "3 4\n"
    import json
    refused = json.loads(backup.runs()[-1])["run_id"]            # history lists it: --at
    into_then = backup.base / "then"                              # gives the state before it
    backup.doit("restore", str(backup.src / "d3"), "--at", refused, "--to", str(into_then),
                check=True)
    assert (into_then / "d3" / "f4.txt").read_text() == "3 4\n"
    for command in ("all", "all", "versioned", "snapshot"):    # on every run after, too
        again = backup.doit(command)                          # (adversary: the guard held
        assert again.returncode == PARTIAL, again.stdout      # for one run only)
        assert lines(again.stdout, "deleted") == []
    allowed = backup.doit("all", "--allow-mass-delete")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert not (backup.mirror / "d3").exists()
    assert "src/d3/ (10 files)" in lines(allowed.stdout, "deleted")


def test_a_few_deletions_are_deletions(backup: Backup) -> None:
    _home(backup)
    backup.doit("all", check=True)
    shutil.rmtree(backup.src / "d0")
    result = backup.doit("all")
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines(result.stdout, "deleted") == ["src/d0/ (10 files)"]


def test_a_latest_restore_gives_back_what_only_the_mirror_holds(backup: Backup) -> None:
    """.git/ is left out of the history by default (git is its own history), but the
    mirror keeps it: restoring the latest state gives it back, and says so."""
    make_tree(backup.src, {"proj": {"main.py": "print(1)\n", ".git": {
        "HEAD": "ref: refs/heads/main\n", "refs": {"heads": {"main": "abc\n"}}}}})
    backup.doit("all", check=True)
    shutil.rmtree(backup.src)
    into = backup.base / "back"
    result = backup.doit("restore", str(backup.src / "proj"), "--to", str(into))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (into / "proj" / ".git" / "refs" / "heads" / "main").read_text() == "abc\n"
    assert (into / "proj" / "main.py").read_text() == "print(1)\n"
    assert "2 files from the mirror, which the history leaves out: proj/.git/" in result.stdout
    only = backup.base / "only"
    backup.doit("restore", str(backup.src / "proj"), "--from", "versioned", "--to", str(only),
                check=True)
    assert not (only / "proj" / ".git").exists()
