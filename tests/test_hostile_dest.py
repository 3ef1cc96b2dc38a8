"""Hostile trees against the destination (issue 13): the backup never backs itself up
however paths name it, a lost catalog never silently starts a second history, and
verify reports what a tampered backup holds without following it or hanging."""

from __future__ import annotations

import os
import shutil
import stat

from support import Backup, make_tree, tree


def test_a_source_named_through_a_link_never_backs_up_the_backup(backup: Backup) -> None:
    real = backup.base / "home"
    make_tree(real, {"notes.txt": "n\n", "d": {"a.txt": "a\n"}})
    os.symlink(str(real), backup.base / "homelink")
    backup.src = backup.base / "homelink"
    backup.dest = real / "backups"                    # inside the real folder
    backup.write_plan()
    for _ in range(3):
        backup.doit("all", check=True)
    mirror = backup.dest / "system_snapshot" / "homelink"
    assert sorted(os.listdir(mirror)) == ["d", "notes.txt"]
    assert not (backup.dest / "versioned_backup" / "homelink" / "backups").exists()


def test_a_source_inside_the_destination_through_a_link_is_refused(backup: Backup) -> None:
    real_dest = backup.base / "dest"
    inner = real_dest / "inner"
    inner.mkdir(parents=True)
    os.symlink(str(inner), backup.base / "innerlink")
    backup.src = backup.base / "innerlink"
    backup.write_plan()
    result = backup.doit("snapshot")
    assert result.returncode == 2
    assert "is inside the destination" in result.stderr
    assert sorted(os.listdir(real_dest)) == ["inner"]


def test_a_source_that_is_a_link_gets_its_folders_mode(backup: Backup) -> None:
    real = backup.base / "real"
    make_tree(real, {"a.txt": "a\n"})
    os.chmod(real, 0o750)
    shutil.rmtree(backup.src)
    os.symlink(str(real), backup.src)
    backup.doit("all", check=True)
    assert stat.S_IMODE(os.stat(backup.mirror).st_mode) == 0o750


def test_a_lost_or_emptied_catalog_is_an_error_and_nothing_is_written(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "1\n"})
    backup.doit("all", check=True)
    (backup.src / "a.txt").write_text("2\n")
    catalog = backup.meta / "catalog.sqlite3"
    saved = catalog.read_bytes()
    for damage in ("empty", "missing"):
        if damage == "empty":
            catalog.write_bytes(b"")
        else:
            catalog.unlink()
        before = tree(backup.dest)
        result = backup.doit("all")
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"the catalog {catalog} is {damage}" in result.stderr
        assert "Traceback" not in result.stderr
        after = tree(backup.dest)
        after.pop(".snapback/catalog.sqlite3", None)
        before.pop(".snapback/catalog.sqlite3", None)
        assert {k: v for k, v in after.items() if k != ".snapback/lock"} == \
            {k: v for k, v in before.items() if k != ".snapback/lock"}
        assert not (backup.versions / "a.txt~2").exists()
        verify = backup.doit("verify", "--deep")
        assert verify.returncode == 1 and f"the catalog {catalog} is {damage}" in verify.stderr
    catalog.write_bytes(saved)                               # put back: all is well again
    backup.doit("all", check=True)
    assert backup.doit("verify", "--deep").returncode == 0


def test_verify_reports_kind_changes_and_never_follows_or_hangs(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "a\n", "b.txt": "b\n", "c.txt": "c\n", "d.txt": "d\n"})
    backup.doit("all", check=True)
    os.unlink(backup.mirror / "a.txt")
    (backup.mirror / "a.txt").mkdir()                       # a file became a folder
    os.unlink(backup.mirror / "b.txt")
    os.symlink("/dev/zero", backup.mirror / "b.txt")       # ... a link to an endless device
    os.unlink(backup.mirror / "c.txt")
    os.symlink("d.txt", backup.mirror / "c.txt")            # ... a link to a good copy
    hist = backup.versions / "d.txt"
    shutil.rmtree(hist)
    os.symlink("/dev", hist)                                # a history folder -> elsewhere
    def unlocked() -> dict:                                 # the lock file is the lock's
        return {k: v for k, v in tree(backup.dest, with_mtime=True).items()
                if k != ".snapback/lock"}
    before = unlocked()
    result = backup.doit("verify", "--deep", timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    out = result.stdout
    assert "src/a.txt" in out and "is a folder, expected a file" in out
    assert "src/b.txt" in out and "is a symlink, expected a file" in out
    assert "src/c.txt" in out
    assert "src/d.txt" in out and "is not a folder" in out
    assert unlocked() == before                             # verify changes nothing, and
    assert os.readlink(hist) == "/dev"                      # leaves the planted links be
