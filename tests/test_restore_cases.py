"""Restore and the other recovery commands when things are gone or damaged."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import time

import pytest
import yaml
from support import SNAPBACK, Backup, make_tree


def test_a_deleted_file_without_at_restores_its_last_version(backup: Backup) -> None:
    make_tree(backup.src, {"gone.txt": "first\n"})
    backup.doit("versioned", check=True)
    (backup.src / "gone.txt").write_text("last words\n")
    backup.doit("versioned", check=True)
    (backup.src / "gone.txt").unlink()
    backup.doit("versioned", check=True)
    history = backup.doit("history", "src/gone.txt", check=True)
    deleted_stamp = next(l for l in history.stdout.splitlines() if "deleted" in l).split()[2]
    out = backup.base / "out"
    result = backup.doit("restore", "src/gone.txt", "--to", str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "gone.txt").read_text() == "last words\n"
    assert f"deleted {deleted_stamp}" in result.stdout


def test_every_stamp_history_prints_is_that_exact_version(backup: Backup) -> None:
    versions = ["one\n", "two\n", "three\n"]
    for text in versions:                        # three versions in one second
        (backup.src / "f.txt").write_text(text)
        backup.doit("versioned", env={"SNAPBACK_NOW": "2026-11-20T10:00:00"}, check=True)
    history = backup.doit("history", "src/f.txt", check=True)
    stamps = [l.split()[2] for l in history.stdout.splitlines()[2:]]
    assert stamps == ["2026-11-20_10-00-00", "2026-11-20_10-00-00_2", "2026-11-20_10-00-00_3"]
    for stamp, text in zip(stamps, versions, strict=False):
        out = backup.base / stamp
        result = backup.doit("restore", "src/f.txt", "--at", stamp, "--to", str(out))
        assert result.returncode == 0, result.stderr
        assert (out / "f.txt").read_text() == text
    diff = backup.doit("diff", "src/f.txt", "--at", stamps[1], "--against", stamps[0])
    assert diff.returncode == 0 and "-one" in diff.stdout and "+two" in diff.stdout


def _damage_baseline(b: Backup, name: str) -> None:
    folder = b.versions / name
    baseline = next(p for p in folder.iterdir() if "-baseline-" in p.name)
    os.chmod(baseline, 0o644)
    baseline.write_text("garbage\n")


def test_a_folder_restore_goes_past_a_file_it_cannot_rebuild(backup: Backup) -> None:
    make_tree(backup.src, {"d": {"a.txt": "a1\n", "b.txt": "b1\n", "c.txt": "c1\n"}})
    backup.doit("versioned", check=True)
    first = next(l.split()[0] for l in backup.doit("history").stdout.splitlines()[1:])
    for name in ("a.txt", "b.txt", "c.txt"):
        (backup.src / "d" / name).write_text(name[0] + "2\n")
    backup.doit("versioned", check=True)
    _damage_baseline(backup, "d/a.txt")
    out = backup.base / "out"
    result = backup.doit("restore", "src/d", "--at", first, "--to", str(out))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "d/a.txt" in result.stderr and "Traceback" not in result.stderr
    assert not (out / "d" / "a.txt").exists()
    assert (out / "d" / "b.txt").read_text() == "b1\n"
    assert (out / "d" / "c.txt").read_text() == "c1\n"


def test_the_latest_version_comes_from_the_current_copy_when_the_chain_is_broken(backup: Backup) -> None:
    from pipeline.versioned import COPY_AFTER
    for n in range(COPY_AFTER + 1):              # the newest version is kept whole too
        (backup.src / "f.txt").write_text(f"v{n}\n")
        code, out = backup.run("versioned")
        assert code == 0, out
    _damage_baseline(backup, "f.txt")
    out = backup.base / "out"
    result = backup.doit("restore", "src/f.txt", "--to", str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "f.txt").read_text() == f"v{COPY_AFTER}\n"
    older = backup.doit("restore", "src/f.txt", "--at", backup.doit("history", "src/f.txt")
                        .stdout.splitlines()[2].split()[2], "--to", str(backup.base / "o2"))
    assert older.returncode == 1                         # v1 itself is gone: said, not faked


def test_restore_from_a_protected_snapshot_gives_the_source_modes(backup: Backup) -> None:
    make_tree(backup.src, {"d": {"a.txt": "a\n", "x.sh": "#!/bin/sh\n"}})
    os.chmod(backup.src / "d" / "x.sh", 0o750)
    os.chmod(backup.src / "d" / "a.txt", 0o640)
    backup.write_plan(protect=True)
    backup.doit("all", check=True)
    assert os.stat(backup.mirror / "d" / "a.txt").st_mode & 0o777 == 0o440
    out = backup.base / "out"
    result = backup.doit("restore", "src/d", "--from", "snapshot", "--to", str(out))
    assert result.returncode == 0, result.stderr
    assert os.stat(out / "d" / "a.txt").st_mode & 0o777 == 0o640
    assert os.stat(out / "d" / "x.sh").st_mode & 0o777 == 0o750
    assert os.stat(out / "d").st_mode & 0o777 == os.stat(backup.src / "d").st_mode & 0o777


def test_recovery_works_with_the_source_folder_gone(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "precious\n"})
    backup.doit("all", check=True)
    shutil.rmtree(backup.src)
    run = backup.doit("snapshot")
    assert run.returncode == 2 and "does not exist" in run.stderr
    for args in (["history"], ["history", "src/a.txt"], ["verify"], ["diff", "src/a.txt"]):
        result = backup.doit(*args)
        assert result.returncode in ((0,) if args[0] != "diff" else (2,)), result.stderr
        assert "plan is invalid" not in result.stderr
    out = backup.base / "out"
    result = backup.doit("restore", str(backup.src), "--to", str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "a.txt").read_text() == "precious\n"     # a whole source: its content


def test_a_renamed_source_keeps_its_history_reachable(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "old name\n"})
    backup.doit("all", check=True)
    data = yaml.safe_load(backup.plan.read_text())
    data["sources"] = [{"path": str(backup.src), "name": "renamed"}]
    backup.plan.write_text(yaml.safe_dump(data))
    backup.doit("all", check=True)
    history = backup.doit("history", check=True)
    assert "no longer in the plan: src" in history.stdout
    assert "a.txt" in backup.doit("history", "src/a.txt", check=True).stdout
    by_backup_path = backup.doit("history", str(backup.dest / "versioned_backup" / "src" / "a.txt"))
    assert by_backup_path.returncode == 0 and "baseline" in by_backup_path.stdout
    out = backup.base / "out"
    result = backup.doit("restore", "src/a.txt", "--to", str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "a.txt").read_text() == "old name\n"
    cleanup = backup.doit("cleanup")
    assert cleanup.returncode == 0
    assert "system_snapshot/src" in cleanup.stdout and "rm -r" in cleanup.stdout
    assert (backup.dest / "system_snapshot" / "src" / "a.txt").exists()   # never silently


def test_prune_works_after_unprotect_with_protect_true(backup: Backup) -> None:
    backup.write_plan(protect=True, retention={"keep_last": 1})
    for hour, text in enumerate(("1\n", "2\n", "3\n")):
        (backup.src / "f.txt").write_text(text)
        backup.doit("versioned", env={"SNAPBACK_NOW": f"2026-10-01T1{hour}:00:00"}, check=True)
    refused = backup.doit("prune")
    assert refused.returncode == 2 and "snapback unprotect" in refused.stderr
    backup.doit("unprotect", check=True)
    pruned = backup.doit("prune")
    assert pruned.returncode == 0, pruned.stderr
    assert "2 of 3 versions pruned" in pruned.stdout


def test_a_killed_restore_leaves_no_partial_file(backup: Backup) -> None:
    big = os.urandom(64 << 20)
    (backup.src / "big.bin").write_bytes(big)
    backup.doit("versioned", check=True)
    out = backup.base / "out"
    out.mkdir()
    cmd = [*SNAPBACK, "restore", "src/big.bin", "--to", str(out),
           f"config={backup.plan}"]
    proc = subprocess.Popen(cmd, cwd=backup.base, env={**os.environ, "PWD": str(backup.base)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not any(out.iterdir()) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    final = out / "big.bin"
    assert not final.exists() or final.read_bytes() == big
    again = backup.doit("restore", "src/big.bin", "--to", str(out), "--force")
    assert again.returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["big.bin"]   # no temporary file left


def test_the_id_of_a_run_that_changed_only_the_mirror_is_the_history_as_it_left_it(
        backup: Backup) -> None:
    """doit history lists it, so --at with it is that run's state: the history as the
    runs before it left it (adversary of issue 18; runs in sequence, issue 22)."""
    import json
    make_tree(backup.src, {"f.txt": "a\n"})
    backup.doit("all", check=True)
    (backup.src / "g.txt").write_text("b\n")
    backup.doit("snapshot", check=True)
    run_id = json.loads(backup.runs()[-1])["run_id"]
    backup.doit("restore", str(backup.src), "--at", run_id, "--to", str(backup.base / "out"),
                check=True)
    assert sorted(os.listdir(backup.base / "out")) == ["f.txt"]
    result = backup.doit("restore", str(backup.src), "--at", "20200101-000000-0001",
                         "--to", str(backup.base / "out2"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no run '20200101-000000-0001'" in result.stderr
    assert not (backup.base / "out2").exists()


def test_a_source_empty_at_a_run_restores_as_an_empty_folder(backup: Backup) -> None:
    """(issue 22: it said 'did not exist', exit 2; the adversary: also by time)"""
    os.chmod(backup.src, 0o750)
    backup.doit("versioned", env={"SNAPBACK_NOW": "2030-02-01T10:00:00"}, check=True)
    into = backup.base / "back"
    result = backup.doit("restore", str(backup.src), "--to", str(into))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "it was empty then" in result.stdout
    assert into.is_dir() and list(into.iterdir()) == []
    (backup.src / "later.txt").write_text("later\n")
    backup.doit("versioned", env={"SNAPBACK_NOW": "2030-02-01T11:00:00"}, check=True)
    then = backup.base / "then"
    result = backup.doit("restore", str(backup.src), "--at", "2030-02-01T10:30", "--to", str(then))
    assert result.returncode == 0, result.stdout + result.stderr
    assert then.is_dir() and list(then.iterdir()) == []
    assert stat.S_IMODE(os.stat(then).st_mode) == 0o750
    before = backup.doit("restore", str(backup.src), "--at", "2030-01-01", "--to", str(into / "x"))
    assert before.returncode == 2, before.stdout          # before any run: it did not exist
    mine = backup.base / "mine"                 # a folder of the user's keeps its mode
    mine.mkdir(mode=0o755)
    os.chmod(mine, 0o755)
    result = backup.doit("restore", str(backup.src), "--at", "2030-02-01T10:30", "--to", str(mine))
    assert result.returncode == 0, result.stdout + result.stderr
    assert stat.S_IMODE(os.stat(mine).st_mode) == 0o755


@pytest.mark.parametrize("then", ["folder", "file"])
def test_restore_force_into_place_replaces_a_path_of_another_kind(backup: Backup,
                                                                  then: str) -> None:
    """A file where the old version had a folder, or back (issue 22: it restored
    nothing, with one 'Not a directory' line)."""
    import json
    import shutil
    notes = backup.src / "notes"
    if then == "folder":
        make_tree(notes, {"a.txt": "a\n"})
    else:
        notes.write_text("a file\n")
    backup.doit("all", check=True)
    run_id = json.loads(backup.runs()[-1])["run_id"]
    if then == "folder":
        shutil.rmtree(notes)
        notes.write_text("now a file\n")
    else:
        notes.unlink()
        make_tree(notes, {"b.txt": "b\n"})
    backup.doit("all", check=True)
    refused = backup.doit("restore", str(notes), "--at", run_id, "--to", str(backup.src))
    assert refused.returncode == 2, refused.stdout + refused.stderr   # not without --force
    result = backup.doit("restore", str(notes), "--at", run_id, "--force",
                         "--to", str(backup.src))
    assert result.returncode == 0, result.stdout + result.stderr
    if then == "folder":
        assert (notes / "a.txt").read_text() == "a\n"
    else:
        assert notes.read_text() == "a file\n"


def _make(path, what: str, outside) -> None:
    """``path`` as a folder, a file, or a symlink (to a folder outside the source)."""
    if what == "folder":
        make_tree(path, {"a.txt": "in the folder\n"})
    elif what == "file":
        path.write_text("a file\n")
    else:
        os.symlink(outside, path)


@pytest.mark.parametrize("then,now", [("folder", "link"), ("file", "link"),
                                      ("link", "folder"), ("link", "file")])
def test_restore_force_into_place_replaces_a_symlink_or_puts_one_back(
        backup: Backup, then: str, now: str) -> None:
    """A symlink where the old version had a folder or a file (never written through:
    what it points to is untouched), or a folder or file where it had a symlink."""
    import json
    outside = backup.base / "elsewhere"
    make_tree(outside, {"a.txt": "outside, untouched\n"})
    notes = backup.src / "notes"
    _make(notes, then, outside)
    backup.doit("all", check=True)
    run_id = json.loads(backup.runs()[-1])["run_id"]
    if notes.is_dir() and not notes.is_symlink():
        shutil.rmtree(notes)
    else:
        notes.unlink()
    _make(notes, now, outside)
    backup.doit("all", check=True)
    refused = backup.doit("restore", str(notes), "--at", run_id, "--to", str(backup.src))
    assert refused.returncode == 2, refused.stdout + refused.stderr   # not without --force
    result = backup.doit("restore", str(notes), "--at", run_id, "--force",
                         "--to", str(backup.src))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (outside / "a.txt").read_text() == "outside, untouched\n"
    assert sorted(p.name for p in outside.iterdir()) == ["a.txt"]
    if then == "link":
        assert os.readlink(notes) == str(outside)
    elif then == "folder":
        assert not notes.is_symlink() and (notes / "a.txt").read_text() == "in the folder\n"
    else:
        assert not notes.is_symlink() and notes.read_text() == "a file\n"


def test_the_latest_state_of_a_path_only_the_mirror_holds_restores_from_the_mirror(
        backup: Backup) -> None:
    """SPEC: a latest restore gives back everything the backup holds for that path.
    A path inside what the history leaves out (.git/), or a source only `doit snapshot`
    backs up, said 'did not exist in the versioned backup' (exit 2)."""
    make_tree(backup.src, {"f.txt": "f\n", ".git": {"config": "[core]\n"}})
    backup.doit("all", check=True)
    for path, want in ((".git/config", {"config": "[core]\n"}),
                       (".git", {".git/config": "[core]\n"})):
        into = backup.base / f"back-{path.replace('/', '-')}"
        result = backup.doit("restore", str(backup.src / path), "--to", str(into))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 file from the mirror, which the history leaves out" in result.stdout
        assert {str(p.relative_to(into)): p.read_text()
                for p in into.rglob("*") if p.is_file()} == want
    only = backup.base / "only-snapshot"
    make_tree(only, {"g.txt": "g\n", "sub": {"h.txt": "h\n"}})
    backup.write_plan(sources=[{"path": str(backup.src)}, {"path": str(only)}])
    backup.doit("snapshot", check=True)
    into = backup.base / "back-only"
    result = backup.doit("restore", str(only), "--to", str(into))
    assert result.returncode == 0, result.stdout + result.stderr
    assert {str(p.relative_to(into)): p.read_text() for p in into.rglob("*")
            if p.is_file()} == {"g.txt": "g\n", "sub/h.txt": "h\n"}
    one = backup.doit("restore", str(only / "sub" / "h.txt"), "--to", str(backup.base / "one"))
    assert one.returncode == 0, one.stdout + one.stderr
    assert (backup.base / "one" / "h.txt").read_text() == "h\n"
    versioned = backup.doit("restore", str(only), "--from", "versioned",
                            "--to", str(backup.base / "none"))
    assert versioned.returncode == 2, versioned.stdout + versioned.stderr
    assert "did not exist in the versioned backup" in versioned.stderr
    assert not (backup.base / "none").exists()


def test_a_source_empty_in_the_mirror_restores_as_an_empty_folder(backup: Backup) -> None:
    """(issue 22: the mirror's empty source 'did not exist', exit 2, by default when
    only `doit snapshot` runs and with --from snapshot always)"""
    os.chmod(backup.src, 0o750)
    backup.doit("snapshot", check=True)
    for n, args in enumerate([(), ("--from", "snapshot")]):
        into = backup.base / f"back{n}"
        result = backup.doit("restore", str(backup.src), *args, "--to", str(into))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "it was empty then; 0 files" in result.stdout
        assert into.is_dir() and list(into.iterdir()) == []
        assert stat.S_IMODE(os.stat(into).st_mode) == 0o750
    backup.doit("all", check=True)
    result = backup.doit("restore", str(backup.src), "--from", "snapshot",
                         "--to", str(backup.base / "after-all"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert list((backup.base / "after-all").iterdir()) == []


def test_restore_into_a_folder_that_became_a_file_says_which_and_writes_nothing(
        backup: Backup) -> None:
    """In place below a folder that is a file now: one line naming it, status 2 (it
    was 'Not a directory', status 1); restoring that folder with --force puts it back."""
    import json
    make_tree(backup.src, {"a": {"b": {"c.txt": "c\n"}}})
    backup.doit("all", check=True)
    run_id = json.loads(backup.runs()[-1])["run_id"]
    shutil.rmtree(backup.src / "a")
    (backup.src / "a").write_text("a file now\n")
    backup.doit("all", check=True)
    for path, to, why in (
            ("a/b/c.txt", "a/b", f"{backup.src / 'a'} is not a folder; restore a itself "
             "(--force replaces it) to put the folder back"),
            ("a/b", "a", "exists and is not a folder")):
        result = backup.doit("restore", str(backup.src / path), "--at", run_id, "--force",
                             "--to", str(backup.src / to))
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.splitlines() == [f"snapback: --to {backup.src / to}: {why}"]
        assert (backup.src / "a").read_text() == "a file now\n"
    result = backup.doit("restore", str(backup.src / "a"), "--at", run_id, "--force",
                         "--to", str(backup.src))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (backup.src / "a" / "b" / "c.txt").read_text() == "c\n"


def test_restore_force_keeps_the_path_of_another_kind_when_the_version_cannot_be_rebuilt(
        backup: Backup) -> None:
    """--force replaces a folder with the file only once the file is written: a version
    that cannot be rebuilt leaves the folder as it is (it was removed first, and
    nothing put in its place)."""
    import json
    notes = backup.src / "notes"
    notes.write_text("v1\n")
    backup.doit("versioned", check=True)
    run_id = json.loads(backup.runs()[-1])["run_id"]
    notes.write_text("v2\n")
    backup.doit("versioned", check=True)
    _damage_baseline(backup, "notes")
    notes.unlink()
    make_tree(notes, {"keep.txt": "mine\n"})
    backup.doit("versioned", check=True)
    result = backup.doit("restore", str(notes), "--at", run_id, "--force",
                         "--to", str(backup.src))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED   notes: cannot rebuild notes" in result.stderr
    assert (notes / "keep.txt").read_text() == "mine\n"
    assert sorted(os.listdir(backup.src)) == ["notes"]       # no temporary file either


def test_a_restore_as_of_a_run_says_what_the_history_leaves_out(backup: Backup) -> None:
    """.git/ is in the mirror only: a restore --at says so and how to get it, and a
    restore of .git/ itself is not "did not exist" (adversary of issue 23)."""
    import json
    make_tree(backup.src, {"a.txt": "a\n", ".git": {"HEAD": "ref\n"}})
    backup.doit("all", check=True)
    run_id = json.loads(backup.runs()[-1])["run_id"]
    out = backup.base / "out"
    result = backup.doit("restore", str(backup.src), "--at", run_id, "--to", str(out))
    assert result.returncode == 0, result.stderr
    assert "(the history leaves out .git/; their latest state: snapback restore " in result.stdout
    result = backup.doit("restore", str(backup.src / ".git"), "--at", run_id, "--to", str(out))
    assert result.returncode == 2
    assert "is left out of the history (versioned.ignore); the mirror holds" in result.stderr
