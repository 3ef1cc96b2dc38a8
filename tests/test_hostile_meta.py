"""What the adversary of issues 13 and 14 found: links planted beside the catalog,
--report into a shared folder, a tampered current copy, a bind-mounted destination,
an empty config=, times out of range.  Each: nothing outside changes, no hang, one line."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest
from support import SNAPBACK, Backup, history_of, make_tree, whole


@pytest.mark.parametrize("planted", ["lock", "runs.jsonl", "catalog.sqlite3"])
def test_a_link_planted_in_snapback_is_never_followed(backup: Backup, tmp_path, planted) -> None:
    make_tree(backup.src, {"a.txt": "a\n"})
    backup.doit("all", check=True)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    place = backup.meta / planted
    saved = place.read_bytes() if planted == "catalog.sqlite3" else None
    place.unlink(missing_ok=True)
    os.symlink(victim, place)
    (backup.src / "a.txt").write_text("b\n")
    result = backup.doit("all")
    assert victim.read_bytes() == b"precious\n"
    assert "precious" not in result.stdout + result.stderr
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    os.unlink(place)
    if saved is not None:
        place.write_bytes(saved)
    backup.doit("all", check=True)


def test_snapback_folder_as_a_link_is_never_followed(backup: Backup, tmp_path) -> None:
    make_tree(backup.src, {"a.txt": "a\n"})
    backup.doit("all", check=True)
    elsewhere = tmp_path / "elsewhere"
    os.rename(backup.meta, elsewhere)
    os.symlink(elsewhere, backup.meta)
    before = sorted(os.listdir(elsewhere))
    (backup.src / "a.txt").write_text("b\n")
    result = backup.doit("all")
    assert result.returncode == 1 and "not followed" in result.stderr
    assert sorted(os.listdir(elsewhere)) == before


def test_report_into_a_link_or_a_fifo(backup: Backup, tmp_path) -> None:
    make_tree(backup.src, {"a.txt": "a\n"})
    victim = tmp_path / "victim"
    victim.write_text("secret\n")
    report = tmp_path / "report.json"
    os.symlink(victim, report)
    backup.doit("all", "--report", str(report), check=True)
    assert victim.read_text() == "secret\n"
    assert not report.is_symlink() and '"run_id"' in report.read_text()
    report.unlink()
    os.mkfifo(report)
    result = backup.doit("all", "--report", str(report), timeout=60)   # no hang
    assert result.returncode == 0
    assert '"run_id"' in report.read_text()


@pytest.mark.parametrize("mounted_folder", ["destination", ".snapback",
                                            ".snapback, beside a mount named in other bytes"])
def test_report_into_the_destination_by_another_path_keeps_the_catalog(
        backup: Backup, mounted_folder: str) -> None:
    """helper-61: the destination bind-mounted elsewhere passed the check on the report's
    path, and `--report ALIAS/.snapback/catalog.sqlite3` replaced the catalog with the
    report (every later command: "not a database"); helper-62: so did a bind mount of
    `.snapback` alone, whose `..` leaves the destination.  The folder the report goes in
    is compared with the destination by device and inode, and a mount's root by where
    it is in its filesystem, when the report is written."""
    make_tree(backup.src, {"a.txt": "a\n"})
    backup.doit("all", check=True)
    alias = backup.base / "alias"
    alias.mkdir()
    source = backup.dest if mounted_folder == "destination" else backup.meta
    odd = os.path.join(os.fsencode(backup.base), b"caf\xe9")     # (helper-63: mountinfo
    if "bytes" in mounted_folder:                               # read as UTF-8 stopped)
        os.mkdir(odd)
        if subprocess.run([b"mount", b"-t", b"tmpfs", b"none", odd]).returncode != 0:
            pytest.skip("cannot mount a tmpfs here")
    mounted = subprocess.run(["mount", "--bind", str(source), str(alias)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {mounted.stderr.decode().strip()}")
    target = alias / ".snapback" if mounted_folder == "destination" else alias
    try:
        (backup.src / "a.txt").write_text("a2\n")
        result = backup.doit("all", "--quiet", "--report", str(target / "catalog.sqlite3"))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "inside the backup destination" in result.stderr, result.stderr
    finally:
        subprocess.run(["umount", str(alias)], check=True)
        if "bytes" in mounted_folder:
            subprocess.run([b"umount", odd], check=True)
    assert backup.doit("verify", "--deep").returncode == 0
    assert [r.kind for r in history_of(backup, "a.txt")] == ["baseline", "diff"]


def test_report_through_a_link_another_user_owns_is_not_written(backup: Backup,
                                                                 tmp_path) -> None:
    """helper-61: as root, `--report /tmp/x/snap/last.json` with `snap` a link another
    user made to root's 0700 folder replaced a file there.  A link on the way is followed
    only when this user or root owns it."""
    make_tree(backup.src, {"a.txt": "a\n"})
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    planted = tmp_path / "planted"
    os.symlink(private, planted)
    try:
        os.lchown(planted, 65534, 65534)                 # nobody's link
    except PermissionError:
        pytest.skip("lchown to another user needs root")
    result = backup.doit("all", "--quiet", "--report", str(planted / "last.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "a link another user owns" in result.stderr, result.stderr
    assert list(private.iterdir()) == []
    own = tmp_path / "own"
    os.symlink(private, own)                             # one's own link is followed
    (backup.src / "a.txt").write_text("a2\n")
    backup.doit("all", "--quiet", "--report", str(own / "sub" / "last.json"), check=True)
    assert '"run_id"' in (private / "sub" / "last.json").read_text()


def test_report_at_links_to_the_destination(backup: Backup, tmp_path) -> None:
    """helper-62: another user's link to the destination, on the way of root's report,
    made the whole run exit 2 with nothing backed up (the check on the command line
    followed it); `--report` at a link to the destination replaced it (when the plan
    names the destination by it, every later run failed).  Both: the backup done, one warning, nothing replaced.
    And a report that replaces a private one stays private."""
    dest_link = tmp_path / "destlink"
    os.symlink(backup.dest, dest_link)
    make_tree(backup.src, {"a.txt": "a\n"})
    backup.doit("all", check=True)
    planted = tmp_path / "planted"
    os.symlink(backup.dest, planted)
    try:
        os.lchown(planted, 65534, 65534)                 # nobody's link
    except PermissionError:
        pytest.skip("lchown to another user needs root")
    (backup.src / "a.txt").write_text("a2\n")
    result = backup.doit("all", "--quiet", "--report", str(planted / "last.json"))
    assert result.returncode == 0 and "a link another user owns" in result.stderr, \
        result.stdout + result.stderr
    (backup.src / "a.txt").write_text("a3\n")
    result = backup.doit("all", "--quiet", "--report", str(dest_link))
    assert result.returncode == 0 and "a link to a folder" in result.stderr, \
        result.stdout + result.stderr
    assert dest_link.is_symlink()
    assert [r.kind for r in history_of(backup, "a.txt")] == ["baseline", "diff", "diff"]
    private = tmp_path / "private.json"
    private.write_text("{}\n")
    private.chmod(0o600)
    (backup.src / "a.txt").write_text("a4\n")
    backup.doit("all", "--quiet", "--report", str(private), check=True)
    assert '"run_id"' in private.read_text() and (private.stat().st_mode & 0o777) == 0o600


def test_report_makes_no_folder_in_the_destination_and_keeps_folders_and_modes(
        backup: Backup, tmp_path) -> None:
    """helper-63: a report through one's own link into a missing folder of `.snapback`
    made that folder before the check refused the report (`catalog.sqlite3-journal/` as
    a folder: the catalog no longer opened); a link at FILE to a folder above the
    destination was replaced (the next run: the destination cannot be made); a report
    over another user's setuid file kept its mode (root's report writable by all)."""
    make_tree(backup.src, {"a.txt": "a\n"})
    backup.doit("all", check=True)
    mine = tmp_path / "mine"
    os.symlink(backup.dest, mine)
    (backup.src / "a.txt").write_text("a2\n")
    result = backup.doit("all", "--quiet", "--report",
                         str(mine / ".snapback" / "catalog.sqlite3-journal" / "x"))
    assert result.returncode == 0 and "inside the backup destination" in result.stderr
    assert not (backup.meta / "catalog.sqlite3-journal").exists()
    assert backup.doit("history", str(backup.src / "a.txt")).returncode == 0
    real = tmp_path / "real"
    real.mkdir()
    above = tmp_path / "above"
    os.symlink(real, above)
    backup.write_plan(destination=str(above / "dest"))
    backup.doit("all", check=True)
    (backup.src / "a.txt").write_text("a3\n")
    result = backup.doit("all", "--quiet", "--report", str(above))
    assert result.returncode == 0 and "a link to a folder" in result.stderr, result.stderr
    assert above.is_symlink()
    backup.doit("all", check=True)
    theirs = tmp_path / "theirs.json"
    theirs.write_text("{}\n")
    os.chmod(theirs, 0o6777)
    try:
        os.chown(theirs, 65534, 65534)
    except PermissionError:
        pytest.skip("chown to another user needs root")
    os.chmod(theirs, 0o6777)
    (backup.src / "a.txt").write_text("a4\n")
    backup.doit("all", "--quiet", "--report", str(theirs), check=True)
    assert stat.S_IMODE(theirs.stat().st_mode) & 0o7022 == 0, oct(theirs.stat().st_mode)


def test_report_into_an_area_on_a_disk_of_its_own_by_another_path(backup: Backup,
                                                                    tmp_path) -> None:
    """helper-64: `.snapback` on a filesystem of its own (README "Power loss"), bind-
    mounted elsewhere: the report went over the catalog (only mounts of the
    destination's own device were judged).  Each filesystem mounted in the destination
    is judged as the destination is."""
    backup.meta.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(backup.meta)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    alias = tmp_path / "alias"
    alias.mkdir()
    try:
        make_tree(backup.src, {"a.txt": "a\n"})
        backup.doit("all", check=True)
        subprocess.run(["mount", "--bind", str(backup.meta), str(alias)], check=True)
        try:
            (backup.src / "a.txt").write_text("a2\n")
            result = backup.doit("all", "--quiet", "--report", str(alias / "catalog.sqlite3"))
            assert result.returncode == 0 and "inside the backup destination" in \
                result.stderr, result.stdout + result.stderr
        finally:
            subprocess.run(["umount", str(alias)], check=True)
        assert backup.doit("verify", "--deep").returncode == 0
    finally:
        subprocess.run(["umount", str(backup.meta)], check=True)


def test_report_with_the_current_folder_gone_and_a_dry_run_before_the_destination(
        backup: Backup, tmp_path) -> None:
    """helper-64: the current folder removed under a run with an absolute --report: a
    traceback, status 3, though the backup was made; a dry run whose report went through
    a link to the destination not made yet made it (0755)."""
    make_tree(backup.src, {"a.txt": "a\n"})
    gone = tmp_path / "gone"
    gone.mkdir()
    report = tmp_path / "r.json"
    words = " ".join(f"'{w}'" for w in [*SNAPBACK, "all", "--quiet", "--report", str(report),
                                         f"config={backup.plan}"])
    result = subprocess.run(["sh", "-c", f"cd '{gone}' && rmdir '{gone}' && exec {words}"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"run_id"' in report.read_text()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    os.symlink("backups", fresh / "l")
    backup.write_plan(destination=str(fresh / "backups"))
    result = backup.doit("all", "--dry-run", "--quiet", "--report", str(fresh / "l" / "r.json"))
    assert result.returncode == 0 and "would make the backup destination" in result.stderr, \
        result.stdout + result.stderr
    assert not (fresh / "backups").exists()


def test_a_current_copy_turned_into_a_link_to_dev_zero(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "one\n"})
    backup.doit("versioned", check=True)
    current = whole(backup, "a.txt")              # the newest version, whole
    current.unlink()
    os.symlink("/dev/zero", current)
    (backup.src / "a.txt").write_text("one\ntwo\n")
    result = backup.doit("versioned", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    # not read through the link: the new version is stored whole, and stored objects
    # are never rewritten (verify names the link)
    assert [r.kind for r in history_of(backup, "a.txt")] == ["baseline", "full"]
    assert whole(backup, "a.txt").read_text() == "one\ntwo\n"
    assert current.is_symlink()
    into = backup.base / "back"
    backup.doit("restore", str(backup.src / "a.txt"), "--to", str(into), check=True, timeout=60)
    assert (into / "a.txt").read_text() == "one\ntwo\n"


def test_a_source_that_is_the_destination_through_a_bind_mount_is_refused(backup: Backup
                                                                         ) -> None:
    home = backup.base / "home"
    make_tree(home, {"a.txt": "a\n"})
    other = backup.base / "bindm"
    other.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(home), str(other)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {mounted.stderr.decode().strip()}")
    try:
        backup.src, backup.dest = home, other
        backup.write_plan()
        result = backup.doit("all")
        assert result.returncode == 2 and "is inside the destination" in result.stderr
        assert sorted(os.listdir(home)) == ["a.txt"]
    finally:
        subprocess.run(["umount", str(other)], check=True)


def test_an_empty_config_is_refused(backup: Backup) -> None:
    result = subprocess.run([*SNAPBACK, "snapshot", "config="], capture_output=True,
                            text=True, cwd=backup.base, timeout=60)
    assert result.returncode == 2
    assert "config= names no file" in result.stderr


@pytest.mark.parametrize("when", ["9999-12-31", "0001-01-01", "9999-12-31T23:59:59-12:00"])
def test_a_time_out_of_range_is_one_line(backup: Backup, when: str) -> None:
    make_tree(backup.src, {"a.txt": "a\n"})
    backup.doit("versioned", check=True)
    result = backup.doit("restore", str(backup.src / "a.txt"), "--at", when)
    assert result.returncode == 2
    assert "out of range" in result.stderr and "Traceback" not in result.stderr
