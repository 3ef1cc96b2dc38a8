"""The history costs what changed: a renamed, moved or copied file or folder adds no
object bytes (its content is linked to the stored object that holds it already, never
to the mirror), its history says where it came from, and the old path's history and
restores stay as they were (issue 24, item 3)."""

from __future__ import annotations

import os
import shutil

from support import Backup, make_tree, on_disk, rebuilt, whole


def test_a_renamed_and_a_copied_folder_add_no_object_bytes(backup: Backup) -> None:
    big = {f"f{i}.bin": os.urandom(200_000) for i in range(10)}      # 2 MB
    make_tree(backup.src, {"photos": big})
    backup.doit("all", check=True)
    before = on_disk(backup.versions)
    (backup.src / "photos").rename(backup.src / "pictures")           # renamed
    shutil.copytree(backup.src / "pictures", backup.src / "copy")      # and copied
    result = backup.doit("all")
    assert result.returncode == 0, result.stdout + result.stderr
    assert on_disk(backup.versions) - before < 100_000, on_disk(backup.versions) - before
    # never an inode shared with the mirror, which a person may open and edit
    mirror = {os.lstat(p).st_ino for p in backup.mirror.rglob("*") if p.is_file()}
    history = {os.lstat(p).st_ino for p in backup.versions.rglob("*") if p.is_file()}
    assert not mirror & history
    assert whole(backup, "copy/f3.bin").read_bytes() == big["f3.bin"]
    assert rebuilt(backup, "photos/f3.bin") == [big["f3.bin"], None]   # old path: as it was
    out = backup.doit("history", str(backup.src / "pictures" / "f3.bin"), check=True).stdout
    assert "first stored with the bytes of src/photos/f3.bin" in out
    code, deep = backup.run("verify", "--deep")
    assert code == 0, deep


def test_a_damaged_object_is_not_shared(backup: Backup) -> None:
    make_tree(backup.src, {"a.bin": b"x" * 5000})
    backup.doit("versioned", check=True)
    stored = whole(backup, "a.bin")
    stored.write_bytes(b"y" * 5000)                                   # damaged on disk
    shutil.copy(backup.src / "a.bin", backup.src / "b.bin")
    backup.doit("versioned", check=True)
    assert whole(backup, "b.bin").read_bytes() == b"x" * 5000
    assert os.lstat(whole(backup, "b.bin")).st_ino != os.lstat(stored).st_ino


def test_a_stored_object_names_its_file(backup: Backup) -> None:
    """PATH may be any stored object inside the history: its baseline, a diff, a whole
    copy (there is no current copy to name any more)."""
    make_tree(backup.src, {"d": {"a.bin": bytes(range(256)) * 80}})
    backup.doit("versioned", check=True)
    (backup.src / "d" / "a.bin").write_bytes(bytes(range(256)) * 81)      # a delta
    backup.doit("versioned", check=True)
    (backup.src / "d" / "a.bin").write_bytes(os.urandom(20_000))          # a full copy
    backup.doit("versioned", check=True)
    hist = backup.versions / "d" / "a.bin"
    stored_files = [*hist.glob("a-baseline-*"), *(hist / "a.bin_diffs").iterdir(),
                    *(hist / "a.bin_versions").iterdir()]
    assert len(stored_files) == 3, stored_files
    for stored in stored_files:
        out = backup.doit("history", str(stored), check=True).stdout
        assert out.startswith("src/d/a.bin:"), (stored, out)


def test_copies_in_a_first_backup_are_stored_once(backup: Backup) -> None:
    """A first backup answers "no stored file holds these bytes" without asking the
    catalog (it held nothing when opened: ``Catalog._added``), except for bytes this
    run stored already: copies within it are linked, in one folder and across
    folders, and a later run (a catalog that holds versions) links to them too."""
    data = {f"f{i}.bin": os.urandom(30_000) for i in range(40)}
    make_tree(backup.src, {"a": dict(data), "b": dict(data), "c": {"x": "unique"}})
    (backup.src / "a" / "again.bin").write_bytes(data["f7.bin"])
    backup.doit("all", check=True)
    for name in data:
        assert os.lstat(whole(backup, f"a/{name}")).st_ino == \
            os.lstat(whole(backup, f"b/{name}")).st_ino, name
    assert os.lstat(whole(backup, "a/again.bin")).st_ino == \
        os.lstat(whole(backup, "a/f7.bin")).st_ino
    assert on_disk(backup.versions) < 1_400_000, on_disk(backup.versions)   # not 2.4 MB
    (backup.src / "d").mkdir()
    shutil.copy(backup.src / "a" / "f3.bin", backup.src / "d" / "later.bin")
    backup.doit("all", check=True)
    assert os.lstat(whole(backup, "d/later.bin")).st_ino == \
        os.lstat(whole(backup, "a/f3.bin")).st_ino
    code, deep = backup.run("verify", "--deep")
    assert code == 0, deep
