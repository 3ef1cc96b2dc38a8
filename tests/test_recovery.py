"""Getting files back: restore, history, diff and verify on real histories."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
from support import Backup, Link, aged, make_tree, tree, whole

from pipeline import timespec


def five_runs(b: Backup) -> list[tuple[str, dict]]:
    """A history of edits, deletions, re-creation, binary changes and a rename.

    Returns (run id, the source tree as it was at that run) for every run."""
    states = []

    def run(note: str) -> None:
        b.doit("versioned", "--note", note, check=True)
        states.append((json.loads(b.runs()[-1])["run_id"], tree(b.src, with_mtime=True)))

    make_tree(b.src, {"notes.md": "one\r\ntwo\r\n", "img.bin": b"\0\1\2",
                      "docs": {"a.txt": "alpha\n", "empty": {}}, "link": Link("notes.md")})
    os.chmod(b.src / "notes.md", 0o600)
    run("first")
    (b.src / "notes.md").write_text("one\r\ntwo\r\nthree")
    (b.src / "img.bin").write_bytes(b"\0\1\2\3")
    run("edits")
    (b.src / "docs" / "a.txt").rename(b.src / "docs" / "renamed.txt")
    (b.src / "img.bin").unlink()
    run("rename and delete")
    (b.src / "img.bin").write_bytes(b"\0back")
    os.unlink(b.src / "link")
    os.symlink("docs/renamed.txt", b.src / "link")
    run("re-created")
    (b.src / "notes.md").write_bytes("caf\xe9 latin-1\n".encode("latin-1"))
    (b.src / "docs" / "renamed.txt").write_text("alpha\nbeta\n")
    run("latin-1")
    return states


def test_restore_every_run_gives_back_the_source_as_it_was(backup: Backup) -> None:
    states = five_runs(backup)
    for index, (run_id, expected) in enumerate(states):
        into = backup.base / f"restored-{index}"
        result = backup.doit("restore", str(backup.src), "--at", run_id, "--to", str(into))
        assert result.returncode == 0, result.stdout + result.stderr
        assert tree(into, with_mtime=True) == expected, f"run {index}"
        # and each file alone
        for rel, item in expected.items():
            if item[0] != "file":
                continue
            alone = backup.base / f"alone-{index}"
            result = backup.doit("restore", "--at", run_id, str(backup.src / rel),
                                 "--to", str(alone), "--force")
            assert result.returncode == 0, result.stderr
            assert (alone / Path(rel).name).read_bytes() == item[1]


def test_restore_a_deleted_file_and_the_latest_state(backup: Backup) -> None:
    states = five_runs(backup)
    first_run = states[0][0]
    gone = backup.src / "docs" / "a.txt"                     # renamed away in run 3
    result = backup.doit("restore", str(gone), "--at", first_run,
                         "--to", str(backup.base / "r1"))
    assert result.returncode == 0, result.stderr
    assert (backup.base / "r1" / "a.txt").read_text() == "alpha\n"
    result = backup.doit("restore", str(gone), "--to", str(backup.base / "r2"))
    assert result.returncode == 0, result.stderr        # deleted: its last version
    assert "deleted " in result.stdout
    assert (backup.base / "r2" / "a.txt").read_text() == "alpha\n"
    latest = backup.doit("restore", "src", "--to", str(backup.base / "r3"))  # name form
    assert latest.returncode == 0, latest.stderr
    assert tree(backup.base / "r3", with_mtime=True) == states[-1][1]


def test_restore_never_overwrites_without_force(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "backed up\n"})
    backup.doit("versioned", check=True)
    into = backup.base / "out"
    make_tree(into, {"a.txt": "mine, do not touch\n"})
    result = backup.doit("restore", str(backup.src / "a.txt"), "--to", str(into))
    assert result.returncode == 2
    assert "exist already; nothing was written" in result.stderr
    assert str(into / "a.txt") in result.stderr
    assert (into / "a.txt").read_text() == "mine, do not touch\n"
    forced = backup.doit("restore", str(backup.src / "a.txt"), "--to", str(into), "--force")
    assert forced.returncode == 0
    assert (into / "a.txt").read_text() == "backed up\n"


def test_restore_into_a_folder_with_a_hostile_symlink_writes_nothing_outside(backup: Backup) -> None:
    make_tree(backup.src, {"docs": {"a.txt": "a\n"}})
    backup.doit("versioned", check=True)
    outside = backup.base / "outside"
    outside.mkdir()
    into = backup.base / "out"
    into.mkdir()
    os.symlink(outside, into / "docs")                      # DIR/docs -> elsewhere
    result = backup.doit("restore", str(backup.src), "--to", str(into))
    assert result.returncode == 2
    assert list(outside.iterdir()) == []
    forced = backup.doit("restore", str(backup.src), "--to", str(into), "--force")
    assert forced.returncode == 0, forced.stderr
    assert list(outside.iterdir()) == []                      # the link was replaced, not followed
    assert (into / "docs" / "a.txt").read_text() == "a\n" and not (into / "docs").is_symlink()


def test_a_tampered_catalog_cannot_write_outside(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "a\n"})
    backup.doit("versioned", check=True)
    with sqlite3.connect(backup.meta / "catalog.sqlite3") as db:
        db.execute("update versions set name=? where name=?", (b"../../escaped.txt", b"a.txt"))
    into = backup.base / "deep" / "out"
    result = backup.doit("restore", str(backup.src), "--to", str(into))
    assert result.returncode == 1 and "refusing" in result.stderr
    assert not (backup.base / "escaped.txt").exists()
    assert not (backup.base / "deep" / "escaped.txt").exists()


def test_a_tampered_history_folder_is_never_written_or_swept(backup: Backup) -> None:
    """helper-65: a row's history folder that climbs out of the backup by ``..`` made an
    edit's whole copy land outside the destination (status 0), and the orphan sweep of
    that folder would remove what it found there."""
    make_tree(backup.src, {"a.txt": "a\n"})
    backup.doit("all", check=True)
    outside = backup.base / "outside"
    outside.mkdir()
    (outside / "precious").write_bytes(b"mine\n")
    with sqlite3.connect(backup.meta / "catalog.sqlite3") as db:
        db.execute("update versions set store=? where name=?",
                   (b"a.txt/../../../outside", b"a.txt"))
    (backup.src / "a.txt").write_text("b\n" * 50)
    result = backup.doit("all")
    said = result.stdout + result.stderr
    assert result.returncode == 1, said
    assert said.count("refusing a path the catalog names outside the backup (history "
                      "folder 'a.txt/../../../outside')") == 1, said
    assert "Traceback" not in said
    assert sorted(p.name for p in outside.iterdir()) == ["precious"]
    assert (outside / "precious").read_bytes() == b"mine\n"
    for verb in ("verify", "history"):
        said = backup.doit(verb, *([str(backup.src / "a.txt")] if verb == "history" else []))
        assert said.returncode == 1 and "refusing" in said.stdout + said.stderr, said


@pytest.mark.parametrize(("tamper", "commands"), [
    # a source name climbing out: prune wrote and removed there, restore and verify read
    ("update versions set source='../../outside' where name=cast('a.txt' as blob)",
     [["prune", "--keep-last", "1"], ["verify", "--deep"], ["history"]]),
    ("update versions set source='/etc' where name=cast('a.txt' as blob)",
     [["restore", "SRC", "--to", "OUT"], ["verify"]]),
    # a mirror row climbing out: verify opened and hashed the file there
    ("update mirror set dir=cast('../../../outside' as blob), name=cast('canary' as blob) "
     "where name=cast('a.txt' as blob)", [["verify"]]),
    # no path at all: text for a blob, an integer, a NUL byte (tracebacks before)
    ("update versions set dir='' where name=cast('a.txt' as blob)",
     [["verify", "--deep"], ["restore", "SRC", "--to", "OUT"], ["prune", "--keep-last", "1"]]),
    ("update versions set store=7 where name=cast('a.txt' as blob)",
     [["verify"], ["prune", "--keep-last", "1"]]),
    ("update versions set object=cast(x'612e00' as blob) where name=cast('a.txt' as blob)",
     [["verify", "--deep"], ["restore", "SRC", "--to", "OUT"]]),
    ("update mirror set dir=cast(x'00' as blob) where name=cast('a.txt' as blob)",
     [["verify"]]),
    # a version with no object, or an empty one (helper-67: a traceback, status 70)
    ("update versions set object=null where name=cast('a.txt' as blob)",
     [["verify"], ["restore", "SRC", "--to", "OUT"], ["prune", "--keep-last", "1"]]),
    ("update versions set store=cast('' as blob) where name=cast('a.txt' as blob)",
     [["verify"], ["restore", "SRC", "--to", "OUT"]]),
    ("update mirror set name=7 where name=cast('a.txt' as blob)", [["snapshot"]]),
])
def test_rows_naming_no_path_of_the_backup_are_refused(backup: Backup, tamper: str,
                                                        commands: list[list[str]]) -> None:
    """helper-66: rows whose source or mirror paths led out of the backup, or held no
    path at all; each command says one line, status 1, and touches nothing outside."""
    make_tree(backup.src, {"a.txt": "a\n", "b.txt": "b\n"})
    backup.doit("all", check=True)
    (backup.src / "a.txt").write_text("a2\n")
    backup.doit("all", check=True)
    outside = backup.base / "outside"
    (outside / "a.txt").mkdir(parents=True)
    (outside / "canary").write_text("mine\n")
    (outside / "a.txt" / "keep").write_text("mine\n")
    before = tree(outside, with_mtime=True)
    with sqlite3.connect(backup.meta / "catalog.sqlite3") as db:
        db.execute(tamper)
    for command in commands:
        args = [str(backup.src) if a == "SRC" else str(backup.base / "out") if a == "OUT"
                else a for a in command]
        result = backup.doit(*args)
        said = result.stdout + result.stderr
        assert result.returncode == 1, (command, said)
        assert "refusing a path the catalog names outside the backup" in said, (command, said)
        assert "Traceback" not in said, (command, said)
        assert tree(outside, with_mtime=True) == before, command
    assert not (backup.base / "out").exists() or not any((backup.base / "out").iterdir())


@pytest.mark.parametrize("path", ["'text'", "7", "x'7665727300'", "cast('/etc/hosts' as blob)",
                                  "cast('versioned_backup/../../outside/canary' as blob)"])
def test_garbage_rows_naming_no_file_of_the_history_are_left(backup: Backup, path: str) -> None:
    """helper-66: a garbage row that is no path (text, an integer, a NUL byte) ended the
    next run in a traceback; one outside the history was and is left alone."""
    make_tree(backup.src, {"a.txt": "a\n"})
    backup.doit("all", check=True)
    outside = backup.base / "outside"
    outside.mkdir()
    (outside / "canary").write_text("mine\n")
    with sqlite3.connect(backup.meta / "catalog.sqlite3") as db:
        db.execute(f"insert into garbage values ({path})")
    (backup.src / "a.txt").write_text("a2\n")
    result = backup.doit("all")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (outside / "canary").read_text() == "mine\n"
    assert backup.doit("verify").returncode == 0


def test_a_restore_from_the_mirror_reads_nothing_through_a_link(backup: Backup) -> None:
    """helper-67: the mirror holds a source's symlink as a link; a restore of a path
    below it (``restore src/outlink/canary``) read the file it leads to, outside."""
    outside = backup.base / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "canary").write_text("secret\n")
    (outside / "dir" / "x").write_text("secret\n")
    make_tree(backup.src, {"a.txt": "a\n", "outlink": Link(str(outside))})
    backup.doit("all", check=True)
    for rel in ("outlink/canary", "outlink/dir"):
        into = backup.base / f"out-{rel.replace('/', '-')}"
        for extra in ([], ["--from", "snapshot"]):
            result = backup.doit("restore", str(backup.src / rel), "--to", str(into), *extra)
            said = result.stdout + result.stderr
            assert result.returncode == 2, (rel, extra, said)
            assert "Traceback" not in said
            assert not into.exists() or not any(p.is_file() for p in into.rglob("*")), rel


@pytest.mark.parametrize("tamper", [
    "update versions set mode=-1 where name=cast('a.txt' as blob)",
    "update versions set size='abc' where name=cast('a.txt' as blob)",
    "update versions set mtime_ns='x' where name=cast('a.txt' as blob)",
    "update versions set mtime_ns=1.5 where name=cast('a.txt' as blob)",
    "update mirror set mtime_ns='x' where name=cast('a.txt' as blob)",
    # (helper-68: tracebacks, status 70)
    "update versions set kind='junk' where name=cast('a.txt' as blob)",
    "update versions set entry='junk' where name=cast('a.txt' as blob)",
    "update mirror set mode='junk' where name=cast('a.txt' as blob)",
    "update mirror set mode=-7 where name=cast('a.txt' as blob)",
])
def test_values_no_run_wrote_are_one_line(backup: Backup, tamper: str) -> None:
    """helper-67: a mode, size or time that is no number (a catalog edited by hand or
    damaged) ended every reader in a traceback (status 70) and a backup in status 3."""
    make_tree(backup.src, {"a.txt": "a\n", "b.txt": "b\n"})
    backup.doit("all", check=True)
    with sqlite3.connect(backup.meta / "catalog.sqlite3") as db:
        db.execute(tamper)
    (backup.src / "a.txt").write_text("a2\n")
    for command in (["verify"], ["restore", str(backup.src), "--to", str(backup.base / "o")],
                    ["restore", str(backup.src), "--from", "snapshot", "--to",
                     str(backup.base / "o2")], ["all"]):
        result = backup.doit(*command)
        said = result.stdout + result.stderr
        assert "Traceback" not in said and "bug" not in said, (command, said)
        assert result.returncode in (0, 1), (command, said)
        if result.returncode == 1:
            assert "edited by hand or is damaged" in said or "FAILED" in said, (command, said)


@pytest.mark.parametrize("planted", ["versioned_backup/src", "versioned_backup"])
def test_a_history_moved_out_behind_a_link_is_not_read(backup: Backup, planted: str) -> None:
    """helper-68: the history's folder of a source (or the history itself) moved
    elsewhere and a link left in its place: a restore read the versions through it,
    outside the backup."""
    make_tree(backup.src, {"d": {"r.txt": "one\n"}})
    backup.doit("all", check=True)
    (backup.src / "d" / "r.txt").write_text("two\n")
    backup.doit("all", check=True)
    elsewhere = backup.base / "elsewhere"
    os.rename(backup.dest / planted, elsewhere)
    os.symlink(elsewhere, backup.dest / planted)
    into = backup.base / "out"
    result = backup.doit("restore", str(backup.src / "d" / "r.txt"), "--from", "versioned",
                         "--to", str(into))
    said = result.stdout + result.stderr
    assert result.returncode == 1, said
    assert "is not a folder (a link or a file where the backup has a folder)" in said, said
    assert not (into / "r.txt").exists()
    checked = backup.doit("verify")
    assert checked.returncode == 1 and "Traceback" not in checked.stdout + checked.stderr


def test_a_garbage_row_naming_a_live_object_removes_nothing(backup: Backup) -> None:
    """helper-66: a garbage row (the files a commit no longer names, removed after it)
    naming a version's live object, edited in by hand, removed it: that version could
    no longer be restored."""
    make_tree(backup.src, {"d": {"a.txt": "a\n"}})
    backup.doit("all", check=True)
    baseline = next((backup.versions / "d" / "a.txt").glob("a-baseline-*"))
    rel = os.path.relpath(baseline, backup.dest).encode()
    with sqlite3.connect(backup.meta / "catalog.sqlite3") as db:
        db.execute("insert into garbage values (?)", (rel,))
    (backup.src / "d" / "a.txt").write_text("a2\n")
    backup.doit("all", check=True)
    assert baseline.read_text() == "a\n"
    assert backup.doit("verify").returncode == 0


def test_names_with_two_dots_are_names(backup: Backup) -> None:
    """The refusal above looks at path components: ``a..b``, ``..x`` and ``x..`` are
    names like any other, backed up, edited and restored."""
    spec = {"a..b.txt": "1\n", "..hidden": "2\n", "end..": "3\n", "x..y": {"..z": "4\n"}}
    make_tree(backup.src, spec)
    backup.doit("all", check=True)
    for name in ("a..b.txt", "..hidden", "end..", "x..y/..z"):
        (backup.src / name).write_text("changed\n" * 20)
    backup.doit("all", check=True)
    assert backup.doit("verify").returncode == 0
    into = backup.base / "out"
    result = backup.doit("restore", str(backup.src), "--to", str(into))
    assert result.returncode == 0, result.stderr
    assert tree(into) == tree(backup.src)


def test_restore_from_the_snapshot_mirror(backup: Backup) -> None:
    make_tree(backup.src, {"d": {"a.txt": "a\n", "l": Link("a.txt")}})
    backup.doit("snapshot", check=True)
    into = backup.base / "out"
    result = backup.doit("restore", str(backup.src / "d"), "--from", "snapshot", "--to", str(into))
    assert result.returncode == 0, result.stderr
    assert tree(into / "d", with_mtime=True) == tree(backup.src / "d", with_mtime=True)
    refused = backup.doit("restore", str(backup.src / "d"), "--from", "snapshot", "--at",
                          "2026-01-01", "--to", str(backup.base / "x"))
    assert refused.returncode == 2 and "latest state" in refused.stderr


def test_history_lists_runs_and_versions(backup: Backup) -> None:
    states = five_runs(backup)
    runs = backup.doit("history", check=True).stdout
    assert all(run_id in runs for run_id, _ in states)
    assert "rename and delete" in runs
    versions = backup.doit("history", str(backup.src / "img.bin"), check=True).stdout
    kinds = [line.split()[4] for line in versions.splitlines()[2:]]
    assert kinds == ["baseline", "full", "deleted", "full"]
    folder = backup.doit("history", str(backup.src / "docs"), check=True).stdout
    assert "src/docs/a.txt" in folder and "src/docs/renamed.txt" in folder


def test_diff_shows_the_last_change_and_any_two_versions(backup: Backup) -> None:
    states = five_runs(backup)
    last = backup.doit("diff", str(backup.src / "docs" / "renamed.txt"), check=True).stdout
    assert "+beta" in last and "-alpha" not in last
    between = backup.doit("diff", str(backup.src / "notes.md"), "--at", states[1][0],
                          "--against", states[0][0], check=True).stdout
    assert "+three" in between and "\\ No newline at end of file" in between
    code = backup.doit("diff", str(backup.src / "notes.md"), "--vscode",
                       env={"PATH": "/usr/bin:/bin"})
    assert code.returncode == 1 and "code" in code.stderr


def test_verify_passes_then_finds_each_kind_of_damage(backup: Backup) -> None:
    five_runs(backup)
    backup.doit("snapshot", check=True)
    ok = backup.doit("verify", "--deep")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "0 problems" in ok.stdout
    versions = backup.dest / "versioned_backup" / "src"
    diff = next((versions / "notes.md" / "notes.md_diffs").iterdir())
    data = bytearray(diff.read_bytes())
    data[-3] ^= 0x01
    diff.write_bytes(bytes(data))                               # a flipped byte in a diff
    current = whole(backup, "docs/renamed.txt")
    current.write_bytes(current.read_bytes()[:3])        # a truncated copy of the newest
    baseline = next(p for p in (versions / "img.bin").iterdir() if "-baseline-" in p.name)
    baseline.unlink()                                           # a missing baseline
    (backup.mirror / "notes.md").write_text("tampered")         # a changed mirror file
    bad = backup.doit("verify")
    assert bad.returncode == 1
    out = bad.stdout
    assert f"corrupt       src/notes.md: {diff}" in out
    assert f"corrupt       src/docs/renamed.txt: {current}" in out
    assert f"missing       src/img.bin: {baseline}" in out
    assert f"corrupt       src/notes.md: {backup.mirror / 'notes.md'}" in out
    deep = backup.doit("verify", "--deep").stdout
    assert "unrebuildable src/notes.md: version" in deep
    # the version before the damaged diff is still restorable
    first = backup.doit("restore", str(backup.src / "notes.md"), "--at", five_runs_first(backup),
                        "--to", str(backup.base / "r"))
    assert first.returncode == 0, first.stderr
    assert (backup.base / "r" / "notes.md").read_bytes() == b"one\r\ntwo\r\n"


def five_runs_first(b: Backup) -> str:
    return json.loads(b.runs()[0])["run_id"]


def test_options_may_come_before_or_after_path(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "a\n"})
    backup.doit("versioned", check=True)
    for args in (["--to", "o1", str(backup.src / "a.txt")], [str(backup.src / "a.txt"), "--to", "o2"]):
        assert backup.doit("restore", *args).returncode == 0
    assert (backup.base / "o1" / "a.txt").exists() and (backup.base / "o2" / "a.txt").exists()
    bad = backup.doit("restore", str(backup.src / "a.txt"), "--at", "yesterday-ish")
    assert bad.returncode == 2 and "cannot read the time" in bad.stderr
    assert "Traceback" not in bad.stderr
    unknown = backup.doit("restore", str(backup.src / "a.txt"), "--bogus")
    assert unknown.returncode == 2 and "unknown option --bogus" in unknown.stderr


@pytest.mark.parametrize("text, expected", [
    ("2026-11-23", datetime(2026, 11, 24, 0, 0, 0)),
    ("2026-11-23T14:30", datetime(2026, 11, 23, 14, 31, 0)),
    ("2026-11-23 14:30:15", datetime(2026, 11, 23, 14, 30, 16)),
    ("2026-11-23_14-30-15", datetime(2026, 11, 23, 14, 30, 16)),
])
def test_times_name_the_end_of_what_they_say(text, expected) -> None:
    assert timespec.parse(text) == pytest.approx(expected.timestamp() - 1e-6)


def test_times_with_offsets_and_errors() -> None:
    assert timespec.parse("2026-11-23T14:30:00+00:00") == pytest.approx(
        datetime.fromisoformat("2026-11-23T14:30:01+00:00").timestamp() - 1e-6)
    with pytest.raises(timespec.BadTime):
        timespec.parse("last tuesday")


def test_verify_after_a_run_stopped_before_recording_its_mirror_copy(backup: Backup) -> None:
    """A run killed between putting a new mirror copy in place and committing its record
    leaves a copy of the source as it is now: verify says so, as no damage (status 0);
    a mirror file edited by hand (or a source gone) is still damage (helper-26: both
    were "corrupt")."""
    make_tree(backup.src, {"a.txt": "one\n", "b.txt": "bee\n"})
    backup.doit("snapshot", check=True)
    (backup.src / "a.txt").write_text("two, longer\n")
    killed = backup.doit("snapshot", env={"SNAPBACK_FAULT": "commit:1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr     # the fault hook's kill
    assert (backup.mirror / "a.txt").read_text() == "two, longer\n"   # placed, not recorded
    result = backup.doit("verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "unrecorded    src/a.txt: the mirror holds the source's bytes of now" in result.stdout
    assert "corrupt" not in result.stdout
    (backup.mirror / "b.txt").write_text("edited in the mirror\n")
    result = backup.doit("verify")
    assert result.returncode == 1, result.stdout
    assert f"corrupt       src/b.txt: {backup.mirror / 'b.txt'}" in result.stdout
    backup.doit("snapshot", check=True)                  # brings both in line
    result = backup.doit("verify")
    assert result.returncode == 0 and "unrecorded" not in result.stdout, result.stdout


def test_a_copy_of_the_same_size_and_mtime_left_unrecorded_is_recorded_by_its_bytes(
        backup: Backup) -> None:
    """A run killed between putting a new mirror copy in place and committing its record,
    the source rewritten with another content of the same size and mtime: the next run
    records the checksum of the bytes the copy holds (it compares them with the
    source's), not the record's of the bytes before; verify passes (helper-36: `corrupt`
    for a good copy, on every run after)."""
    make_tree(backup.src, {"d": {"a": "one 1\n", "b": "bee\n"}})
    aged(backup.src)
    backup.doit("snapshot", check=True)
    a = backup.src / "d" / "a"
    before = os.lstat(a)
    a.write_text("two 2\n")                                      # same size, same mtime
    os.utime(a, ns=(before.st_atime_ns, before.st_mtime_ns))
    killed = backup.doit("snapshot", env={"SNAPBACK_FAULT": "commit:1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (backup.mirror / "d" / "a").read_text() == "two 2\n"   # placed, not recorded
    backup.doit("snapshot", check=True)
    result = backup.doit("verify")
    assert result.returncode == 0 and "corrupt" not in result.stdout, result.stdout
    result = backup.doit("verify", "--deep")
    assert result.returncode == 0, result.stdout


def _runs(b: Backup) -> list[str]:
    con = sqlite3.connect(b.dest / ".snapback" / "catalog.sqlite3")
    try:
        return [r for (r,) in con.execute("select run_id from runs order by seq")]
    finally:
        con.close()


def _logged(b: Backup) -> list[dict]:
    return [json.loads(line) for line in
            (b.dest / ".snapback" / "runs.jsonl").read_text().splitlines() if line.strip()]


def test_a_run_stopped_before_its_record_is_recorded_by_the_next(backup: Backup) -> None:
    """Every run whose versions the catalog holds is in the run log: one killed after
    some of its folders were committed, before its own record, gets a record from the
    next run ("stopped", with what the catalog holds of it), and history lists it
    (helper-26, helper-28: its versions were in the history, the run nowhere).  A run
    that recorded only a new mtime writes its own record; a retention.auto prune that
    dropped nothing, none: neither is taken for a stopped run."""
    backup.write_plan(retention={"keep_last": 10, "auto": True})
    make_tree(backup.src, {"a.txt": "a\n", "d": {"b.txt": "b\n"}})
    backup.doit("all", check=True)
    (backup.src / "a.txt").write_text("a, edited\n")
    (backup.src / "d" / "b.txt").write_text("b, edited\n")
    killed = backup.doit("all", env={"SNAPBACK_FAULT": "commit:2"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    stopped = _runs(backup)[-1]
    assert stopped not in {r["run_id"] for r in _logged(backup)}
    backup.doit("all", check=True)
    records = {r["run_id"]: r for r in _logged(backup)}
    assert records[stopped]["mode"] == "stopped", records[stopped]
    assert records[stopped]["counts"] == {"new": 0, "updated": 1, "deleted": 0, "failed": 0}
    assert "1 version, 1 mirror copy" in records[stopped]["note"], records[stopped]
    history = backup.doit("history", check=True).stdout
    assert stopped in history and "stopped" in history, history
    # the next runs: nothing taken for a stopped run
    count = len(_logged(backup))
    backup.doit("all", check=True)                            # no change
    os.utime(backup.src / "a.txt", ns=(10**18, 10**18))      # a new mtime alone
    backup.doit("all", check=True)
    assert len(_logged(backup)) == count + 1                 # its own record
    assert _logged(backup)[-1]["mode"] == "all"
    (backup.src / "d" / "c.txt").write_text("c\n")
    backup.doit("all", check=True)                            # retention.auto drops none
    backup.doit("prune", check=True)                          # nor does a prune by hand
    pruned = _runs(backup)[-1]
    assert pruned.startswith("prune-") and pruned not in {r["run_id"] for r in _logged(backup)}
    backup.doit("all", check=True)
    assert [r["mode"] for r in _logged(backup)].count("stopped") == 1, _logged(backup)


def test_every_stopped_run_is_recorded_and_no_other(backup: Backup) -> None:
    """helper-29: a killed run followed by a prune that dropped nothing was never
    recorded (only the newest run was looked at); runs that only failed pushed a finished run's record out of sight and it
    was recorded a second time as stopped; a run whose record could not be written was
    later called stopped; and a log that could not be read failed the mirror."""
    backup.write_plan(retention={"keep_last": 1})
    make_tree(backup.src, {"a.txt": "a\n", "d": {"b.txt": "b\n"}})
    backup.doit("all", check=True)
    (backup.src / "a.txt").write_text("a2\n")
    (backup.src / "d" / "b.txt").write_text("b2\n")
    assert backup.doit("all", env={"SNAPBACK_FAULT": "commit:2"}).returncode == -signal.SIGKILL
    killed = _runs(backup)[-1]
    assert backup.doit("prune", "--keep-last", "100", check=True)     # drops nothing
    (backup.src / "a.txt").write_text("a3\n")
    killed_prune = backup.doit("prune", env={"SNAPBACK_FAULT": "remove:1"})
    assert killed_prune.returncode == -signal.SIGKILL, killed_prune.stderr
    pruned = _runs(backup)[-1]
    assert pruned.startswith("prune-")
    backup.doit("all", check=True)
    modes = {r["run_id"]: r["mode"] for r in _logged(backup)}
    assert modes[killed] == "stopped", modes
    assert pruned not in modes, modes     # (what it dropped leaves no row to count)
    # runs that only fail (a full disk) write records of failures only
    count = len(_logged(backup))
    for n in range(10):
        (backup.src / "a.txt").write_text(f"a, try {n}\n")
        assert backup.doit("all", env={"SNAPBACK_FAULT": "write:1:enospc"}).returncode == 1
    assert [r["mode"] for r in _logged(backup)[count:]].count("stopped") == 0
    # a run whose record cannot be written says so, the mirror is made all the same,
    # and a later run records it from the catalog (helper-30: it was never listed)
    log = backup.dest / ".snapback" / "runs.jsonl"
    log.rename(log.with_suffix(".kept"))
    log.mkdir()
    (backup.src / "d" / "c.txt").write_text("c\n")
    result = backup.doit("all")
    assert result.returncode == 1 and "cannot add this run" in result.stderr + result.stdout
    assert (backup.mirror / "d" / "c.txt").read_text() == "c\n"
    unlogged = _runs(backup)[-1]
    (backup.src / "d" / "c.txt").write_text("c2\n")
    result = backup.doit("all")                       # the log still a folder: said, no harm
    assert result.returncode == 1 and (backup.mirror / "d" / "c.txt").read_text() == "c2\n"
    log.rmdir()
    log.with_suffix(".kept").rename(log)
    (backup.src / "d" / "c.txt").write_text("c3\n")
    backup.doit("all", check=True)
    stopped = [r["run_id"] for r in _logged(backup) if r["mode"] == "stopped"]
    assert stopped[0] == killed and unlogged in stopped, _logged(backup)
    assert len(stopped) == len(set(stopped)) == 3, stopped     # and the run after it
    # a run killed after its own record, and one whose end the catalog could not take:
    # and one whose second folder could not commit: each listed once (helper-30: a
    # second time, as stopped)
    for fault in ("commit:3", "commit:3:enospc", "commit:2:enospc"):
        (backup.src / "a.txt").write_text(f"a, {fault}\n")
        (backup.src / "d" / "b.txt").write_text(f"b, {fault}\n")
        backup.doit("all", env={"SNAPBACK_FAULT": fault})
        backup.doit("all", check=True)
    ids = [r["run_id"] for r in _logged(backup)]
    assert len(ids) == len(set(ids)), ids


def test_a_catalog_from_before_run_ends_records_no_stopped_run(backup: Backup) -> None:
    """A catalog written before runs had an end (no ``runs.ended``): its runs ended as
    they did; the first run after the upgrade takes none of them for a stopped run."""
    make_tree(backup.src, {"a.txt": "a\n"})
    backup.doit("all", check=True)
    (backup.src / "a.txt").write_text("a2\n")
    backup.doit("all", check=True)
    con = sqlite3.connect(backup.dest / ".snapback" / "catalog.sqlite3")
    with con:
        con.execute("drop index runs_unlogged")
        con.execute("alter table runs drop column logged")
    con.close()
    (backup.src / "a.txt").write_text("a3\n")
    backup.doit("all", check=True)
    assert [r["mode"] for r in _logged(backup)] == ["all"] * 3


@pytest.mark.parametrize("log", ["fifo", "endless link"])
def test_a_run_log_that_is_no_plain_file_costs_no_backup(backup: Backup, log: str) -> None:
    """Looking for a run's record never waits on a pipe or follows a link (helper-31: a
    FIFO log hung every run with the lock held; a link to /dev/zero was read whole, a
    MemoryError, status 70): the run is made, says the log cannot be written, and a
    later run records it once the log is back."""
    make_tree(backup.src, {"a.txt": "a\n"})
    backup.doit("all", check=True)
    (backup.src / "a.txt").write_text("a2\n")
    assert backup.doit("all", env={"SNAPBACK_FAULT": "commit:1"}).returncode == -signal.SIGKILL
    path = backup.dest / ".snapback" / "runs.jsonl"
    path.rename(path.with_suffix(".kept"))
    if log == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    (backup.src / "a.txt").write_text("a3\n")
    result = backup.doit("all", timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "cannot add this run" in result.stderr
    assert (backup.mirror / "a.txt").read_text() == "a3\n"
    path.unlink()
    path.with_suffix(".kept").rename(path)
    (backup.src / "a.txt").write_text("a4\n")
    backup.doit("all", check=True)
    ids = [r["run_id"] for r in _logged(backup)]
    assert len(ids) == len(set(ids)) == 3, _logged(backup)    # (the killed one held none)
    assert [r["mode"] for r in _logged(backup)] == ["all", "stopped", "all"]


def test_a_record_across_the_log_s_last_256_kb_is_found(tmp_path: Path) -> None:
    """The lookup reads the log's tail, then what is before it: a record whose run id
    straddles the tail's start is found all the same (else a run with its record would
    get a second one, as stopped)."""
    from pipeline import runlog
    needle = b'"run_id": "20261206-070000-0001",'
    size = 600_000
    for cut in range(1, len(needle)):
        data = bytearray(b"x" * size)
        start = size - (256 << 10) - cut
        data[start:start + len(needle)] = needle
        (tmp_path / "runs.jsonl").write_bytes(bytes(data))
        assert runlog.has_record(tmp_path, "20261206-070000-0001"), cut
    (tmp_path / "runs.jsonl").write_bytes(b"x" * size)
    assert not runlog.has_record(tmp_path, "20261206-070000-0001")


@pytest.mark.parametrize("every", ["0", "1"])
def test_a_run_log_that_cannot_be_written_is_said_beside_failed_files(backup: Backup,
                                                                       every: str) -> None:
    """helper-59: a file's FAILED line among the last folders' lines hid the report
    task's own failure (the run log cannot be written): status 1 and no word of it,
    and the run, whose rows a failed commit can leave out, missing from `history`."""
    make_tree(backup.src, {"c": {"f1.txt": "x\n"}})
    backup.doit("all", check=True)
    log = backup.dest / ".snapback" / "runs.jsonl"
    log.unlink()
    log.mkdir()
    (backup.src / "c" / "f1.txt").write_text("x\nmore\n")
    (backup.src / "c" / "zz.txt").write_text("n\n")
    result = backup.doit("all", env={"SNAPBACK_FAULT": "write:1:enospc",
                                     "SNAPBACK_COMMIT_EVERY": every})
    assert result.returncode == 1, result.stdout + result.stderr
    assert any(line.startswith("FAILED") for line in result.stdout.splitlines()), result.stdout
    said = [line for line in result.stderr.splitlines() if "cannot add this run" in line]
    assert len(said) == 1 and "Is a directory" in said[0], result.stderr
