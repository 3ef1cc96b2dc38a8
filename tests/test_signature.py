"""Folders answered by their signature (issue 18): a no-change run judges no folder
entry by entry and gives it no task; every change a person makes to a folder, to the
rules or to the mirror makes exactly the folders concerned be judged again, and the
backup comes out right.  (test_life.py lives these changes in random orders.)"""

from __future__ import annotations

import os
import sqlite3

import pytest
from support import OK, PARTIAL, Backup, aged, as_nobody, lines, make_tree, tree

TREE = {"a": {"one.txt": "one\n", "deep": {"two.txt": "two\n"}},
        "b": {"three.txt": "three\n"}, "top.txt": "top\n"}


def judged(b: Backup, *args: str) -> tuple[int, str, dict[str, list[str]]]:
    """Run doit in this process; (status, output, the folders each mode judged entry
    by entry, i.e. those that got a task)."""
    code, out, namespace = b.run_here(*args)
    views = namespace["SESSION"].views
    return code, out, {mode: sorted(f.rel for f in folders if f.kept is None)
                       for (mode, _source), folders in views.items()}


@pytest.fixture
def made(backup: Backup) -> Backup:
    make_tree(backup.src, TREE)
    code, out, seen = judged(backup, "all")
    assert code == OK, out
    assert seen == {"snapshot": ["", "a", "a/deep", "b"], "versioned": ["", "a", "a/deep", "b"]}
    return backup


def test_a_run_with_no_change_judges_no_folder_and_still_counts_every_file(made: Backup
                                                                           ) -> None:
    code, out, seen = judged(made, "all")
    assert (code, seen) == (OK, {"snapshot": [], "versioned": []})
    assert "snapshot: 4 files, 0 new, 0 updated, 0 deleted, 0 failed" in out
    assert "versioned: 4 files, 0 new, 0 updated, 0 deleted, 0 failed" in out


@pytest.mark.parametrize(("change", "folders", "kind", "path"), [
    (lambda s: (s / "a/deep/two.txt").write_text("TWO\n"), ["a/deep"], "updated",
     "src/a/deep/two.txt"),
    (lambda s: os.chmod(s / "b/three.txt", 0o600), ["b"], "updated",
     "src/b/three.txt (mode 0600)"),
    (lambda s: (s / "a/deep/new.txt").write_text("new\n"), ["a/deep"], "new",
     "src/a/deep/new.txt"),
    (lambda s: (s / "b/three.txt").unlink(), ["b"], "deleted", "src/b/three.txt"),
], ids=["edit", "chmod", "add", "delete"])
def test_a_change_makes_its_folder_and_no_other_be_judged(made: Backup, change, folders,
                                                          kind: str, path: str) -> None:
    change(made.src)
    code, out, seen = judged(made, "snapshot")
    assert code == OK, out
    assert seen["snapshot"] == folders
    assert lines(out, kind) == [path]
    assert tree(made.mirror) == tree(made.src)
    code, out, seen = judged(made, "all")        # versioned catches up; then nothing to judge
    assert (code, seen["versioned"]) == (OK, folders), out
    code, out, seen = judged(made, "all")
    assert (code, seen) == (OK, {"snapshot": [], "versioned": []}), out


def test_the_same_size_and_mtime_with_other_bytes_is_seen(made: Backup) -> None:
    """Rewritten in place, mtime put back (an editor, a sync tool): the ctime moved."""
    path = made.src / "a/one.txt"
    st = path.stat()
    path.write_text("ONE\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    code, out, seen = judged(made, "all")
    assert (code, seen["versioned"]) == (OK, ["a"]), out
    assert (made.mirror / "a/one.txt").read_text() == "ONE\n"


def test_a_rule_in_a_parent_ignore_file_reaches_a_folder_whose_listing_did_not_change(
        made: Backup) -> None:
    (made.src / ".backupignore").write_text("deep/\n")
    code, out, _seen = judged(made, "all")
    assert code == OK, out
    assert not (made.mirror / "a/deep").exists()
    assert lines(out, "deleted") == ["src/a/deep/ (1 file)"]
    (made.src / ".backupignore").write_text("# nothing\n")
    code, out, _seen = judged(made, "all")
    assert code == OK, out
    assert (made.mirror / "a/deep/two.txt").read_text() == "two\n"


def test_a_folder_that_stops_being_a_virtualenv_is_backed_up(made: Backup) -> None:
    (made.src / "a/deep/pyvenv.cfg").write_text("home = /usr/bin\n")
    code, out, _seen = judged(made, "all")
    assert code == OK, out
    assert not (made.mirror / "a/deep").exists()
    (made.src / "a/deep/pyvenv.cfg").unlink()       # a/ itself does not change
    code, out, _seen = judged(made, "all")
    assert code == OK, out
    assert (made.mirror / "a/deep/two.txt").read_text() == "two\n"


def test_a_file_removed_from_the_mirror_by_hand_comes_back(made: Backup) -> None:
    (made.mirror / "a/deep/two.txt").unlink()
    code, out, seen = judged(made, "all")
    assert code == OK, out
    assert seen == {"snapshot": ["a/deep"], "versioned": ["a/deep"]}
    assert (made.mirror / "a/deep/two.txt").read_text() == "two\n"


@pytest.mark.parametrize("plan", [
    {"ignore": ["*.md"]},
    {"snapshot": {"ignore": ["*.md"]}},
    {"use_default_ignores": False},
], ids=["ignore", "mode-ignore", "default-ignores"])
def test_a_change_of_the_rules_judges_every_folder_again(made: Backup, plan: dict) -> None:
    made.write_plan(**plan)
    code, out, seen = judged(made, "snapshot")
    assert (code, seen["snapshot"]) == (OK, ["", "a", "a/deep", "b"]), out


def test_cleanup_turned_on_removes_what_it_kept_before(made: Backup) -> None:
    made.write_plan(snapshot={"cleanup": False})
    (made.src / "b/three.txt").unlink()
    code, out, _seen = judged(made, "snapshot")
    assert code == OK, out
    assert (made.mirror / "b/three.txt").exists()            # kept: cleanup is off
    made.write_plan()
    code, out, _seen = judged(made, "snapshot")
    assert code == OK, out
    assert not (made.mirror / "b/three.txt").exists()


def test_verbose_and_a_named_folder_task_judge_everything(made: Backup) -> None:
    code, out, seen = judged(made, "snapshot", "--verbose")
    assert (code, seen["snapshot"]) == (OK, ["", "a", "a/deep", "b"]), out
    code, out, seen = judged(made, "snapshot:src/a")
    assert (code, seen["snapshot"]) == (OK, ["", "a", "a/deep", "b"]), out
    (made.src / "b/three.txt").write_text("THREE\n")    # brought in line by a verbose run:
    code, out, seen = judged(made, "snapshot", "--verbose")     # signed all the same
    assert (code, lines(out, "updated")) == (OK, ["src/b/three.txt"]), out
    code, out, seen = judged(made, "snapshot")
    assert (code, seen["snapshot"]) == (OK, []), out


def test_a_catalog_of_format_2_is_read_and_upgraded(made: Backup) -> None:
    path = made.meta / "catalog.sqlite3"
    with sqlite3.connect(path) as db:
        for column in ("sig", "entered", "count"):
            db.execute(f"alter table folders drop column {column}")
        db.execute("pragma user_version=2")
    code, out = made.run("history", str(made.src / "a/one.txt"))
    assert code == OK, out
    code, out, seen = judged(made, "all")        # upgraded; no signatures yet: judged
    assert (code, seen["snapshot"]) == (OK, ["", "a", "a/deep", "b"]), out
    assert "0 new, 0 updated, 0 deleted" in out
    code, out, seen = judged(made, "all")
    assert (code, seen) == (OK, {"snapshot": [], "versioned": []}), out
    with sqlite3.connect(path) as db:
        assert db.execute("pragma user_version").fetchone()[0] == 4


def test_the_catalog_keeps_a_signature_only_for_folders_in_line(nobody_backup) -> None:
    """An unreadable file: its folder fails, keeps no signature, is judged every run."""
    b, python = nobody_backup
    make_tree(b.src, TREE)
    (b.src / "b/secret.txt").write_text("x\n")
    os.chmod(b.src / "b/secret.txt", 0)
    for _ in range(2):
        result = as_nobody(b, python, "snapshot")
        assert result.returncode == PARTIAL, result.stdout + result.stderr
        assert lines(result.stdout, "FAILED") == ["src/b/secret.txt: Permission denied"]
    with sqlite3.connect(b.meta / "catalog.sqlite3") as db:
        rows = dict(db.execute("select dir, sig from folders where mode='snapshot'"))
    assert set(rows) == {b"", b"a", b"a/deep"}
    assert all(len(sig) == 16 for sig in rows.values())


def test_switching_the_checker_to_hash_looks_at_every_file_again(backup: Backup) -> None:
    """checker: mtime takes a rewrite with the mtime set back as unchanged; once the plan
    says hash, the next run sees it (adversary of issue 18)."""
    backup.write_plan(checker="mtime")
    make_tree(backup.src, {"notes.txt": "hello\n"})
    assert judged(backup, "all")[0] == OK
    path = backup.src / "notes.txt"
    st = path.stat()
    path.write_text("HELLO\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    code, out, _seen = judged(backup, "all")
    assert (code, lines(out, "updated")) == (OK, []), out        # as documented for mtime
    backup.write_plan(checker="hash")
    code, out, _seen = judged(backup, "all")
    assert (code, lines(out, "updated")) == (OK, ["src/notes.txt"]), out
    assert (backup.mirror / "notes.txt").read_text() == "HELLO\n"


@pytest.mark.parametrize("then", ["mtime", "hash"])
def test_a_chmod_under_mtime_does_not_hide_a_swap_from_the_next_run(backup: Backup,
                                                                    then: str) -> None:
    """checker: mtime takes a chmod of a file swapped for other bytes of the same size and
    mtime as a new mode alone (it trusts size and mtime); the record it writes is racily
    clean, so the next run compares the bytes, under either checker (helper-39: its new
    ctime and inode let ``hash`` take it as unchanged for ever, the old bytes kept)."""
    backup.write_plan(checker="mtime")
    make_tree(backup.src, {"notes.txt": "abc\n"})
    aged(backup.src)
    assert judged(backup, "all")[0] == OK
    path = backup.src / "notes.txt"
    st = path.stat()
    fresh = backup.src / "notes.tmp"
    fresh.write_text("cba\n")
    os.utime(fresh, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(fresh, path)
    os.chmod(path, 0o600)
    code, out, _seen = judged(backup, "all")
    assert (code, lines(out, "updated")) == (OK, ["src/notes.txt (mode 0600)"]), out
    backup.write_plan(checker=then)
    code, out, _seen = judged(backup, "all")
    assert code == OK, out
    assert (backup.mirror / "notes.txt").read_text() == "cba\n"
    assert tree(backup.mirror, with_mtime=True) == tree(backup.src, with_mtime=True)
    code, out = backup.run("verify", "--deep")
    assert code == OK, out


@pytest.mark.parametrize("table", ["versions", "mirror"])
def test_records_removed_from_the_catalog_by_hand_are_made_again(made: Backup, table: str
                                                                 ) -> None:
    """The folder's signature is a cache of its records: removing a record drops it."""
    with sqlite3.connect(made.meta / "catalog.sqlite3") as db:
        db.execute(f"delete from {table} where name=?", (b"one.txt",))
    code, out, seen = judged(made, "all")
    assert code == OK, out
    mode = {"versions": "versioned", "mirror": "snapshot"}[table]
    assert seen[mode] == ["a"]
    with sqlite3.connect(made.meta / "catalog.sqlite3") as db:
        assert db.execute(f"select count(*) from {table} where name=?",
                          (b"one.txt",)).fetchone()[0] == 1
    code, out = made.run("verify", "--deep")
    assert code == OK, out
    code, out, seen = judged(made, "all")
    assert (code, seen) == (OK, {"snapshot": [], "versioned": []}), out


def test_a_catalog_whose_format_number_was_set_back_by_hand_is_mended(made: Backup) -> None:
    with sqlite3.connect(made.meta / "catalog.sqlite3") as db:
        db.execute("pragma user_version=2")             # the columns of format 3 are there
    code, out, seen = judged(made, "all")
    assert (code, seen) == (OK, {"snapshot": [], "versioned": []}), out     # read as it is
    (made.src / "top.txt").write_text("TOP\n")
    code, out, seen = judged(made, "all")                # a writer: mended
    assert (code, lines(out, "updated")) == (OK, ["src/top.txt"]), out
    with sqlite3.connect(made.meta / "catalog.sqlite3") as db:
        assert db.execute("pragma user_version").fetchone()[0] == 4
        for column in ("sig", "entered", "count"):
            db.execute(f"alter table folders drop column {column}")   # format 3, without them
    code, out, seen = judged(made, "all")
    assert (code, seen["snapshot"]) == (OK, ["", "a", "a/deep", "b"]), out
    code, out, seen = judged(made, "all")
    assert (code, seen) == (OK, {"snapshot": [], "versioned": []}), out


@pytest.mark.parametrize("plan", [{}, {"snapshot": {"ignore": ["Downloads/"]}}],
                         ids=["versioned-ignores-git", "snapshot-ignore"])
def test_a_folder_one_mode_leaves_out_is_not_judged_every_run(backup: Backup, plan: dict
                                                              ) -> None:
    """versioned leaves .git/ out by default: `doit all` judged every folder of a
    repository on every run, since versioned never signs them (adversary of issue 18)."""
    backup.write_plan(**plan)
    make_tree(backup.src, {"repo": {"a.py": "a\n", ".git": {"objects": {"x": {"1": "1"}},
                                                             "HEAD": "ref\n"}},
                           "Downloads": {"film": {"part1": "p"}}})
    assert judged(backup, "all")[0] == OK
    code, out, seen = judged(backup, "all")
    assert (code, seen) == (OK, {"snapshot": [], "versioned": []}), out
    (backup.src / "repo/.git/objects/x/2").write_text("2")       # snapshot's alone
    (backup.src / "Downloads/film/part2").write_text("p")         # versioned's alone, or both
    code, out, seen = judged(backup, "all")
    assert code == OK, out
    assert seen["versioned"] == ["Downloads/film"]
    assert seen["snapshot"] == ["Downloads/film", "repo/.git/objects/x"] if not plan \
        else ["repo/.git/objects/x"]
    assert (backup.mirror / "repo/.git/objects/x/2").read_text() == "2"
    assert (backup.mirror / "Downloads/film/part2").exists() == (not plan)
    code, out, seen = judged(backup, "all")
    assert (code, seen) == (OK, {"snapshot": [], "versioned": []}), out


@pytest.mark.parametrize("edit", ["entered=cast(entered as text)", "count='x'", "count=-5",
                                  "sig=cast(sig as text)"])
def test_a_folder_row_edited_by_hand_is_judged_again(made: Backup, edit: str) -> None:
    with sqlite3.connect(made.meta / "catalog.sqlite3") as db:
        db.execute(f"update folders set {edit}")
    code, out, seen = judged(made, "all")
    assert (code, seen["snapshot"]) == (OK, ["", "a", "a/deep", "b"]), out
    assert "snapshot: 4 files, 0 new, 0 updated, 0 deleted, 0 failed" in out
    code, out, seen = judged(made, "all")
    assert (code, seen) == (OK, {"snapshot": [], "versioned": []}), out


def test_a_destination_with_coarse_times_is_not_judged_again_every_run(backup: Backup,
                                                                      coarse_disk) -> None:
    """The mirror folder's mtime is kept as its filesystem keeps it (adversary of issue
    18: every run judged and re-read every folder of such a backup)."""
    backup.dest = coarse_disk / "dest"
    backup.write_plan()
    make_tree(backup.src, TREE)
    os.utime(backup.src / "a", ns=(1_700_000_000_123_456_789,) * 2)
    assert judged(backup, "all")[0] == OK
    code, out, seen = judged(backup, "all")
    assert (code, seen) == (OK, {"snapshot": [], "versioned": []}), out
    (backup.mirror / "a/one.txt").unlink()               # still seen when tampered with
    code, out, seen = judged(backup, "all")
    assert (code, seen["snapshot"]) == (OK, ["a"]), out
    assert (backup.mirror / "a/one.txt").read_text() == "one\n"
    code, out, seen = judged(backup, "all")
    assert (code, seen) == (OK, {"snapshot": [], "versioned": []}), out


# A run in a process of its own: did it import pathspec (the rules' matcher, 30 ms of
# imports), and with what status did it end?
PROBE = ("import sys\nfrom pipeline.__main__ import main\n"
         "code = main(sys.argv[1:])\nprint('pathspec' in sys.modules, code)")


def _imports_pathspec(b: Backup, *args: str) -> bool:
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", PROBE, *args, f"--config={b.plan}"],
                          capture_output=True, text=True, cwd=b.base, timeout=120)
    imported, code = done.stdout.split()[-2:]
    assert code == "0", done.stdout + done.stderr
    return imported == "True"


def test_a_run_with_no_change_does_not_import_the_rules_matcher(backup: Backup) -> None:
    """README, "How it works" 2: a folder in line with its signature is not judged,
    and pathspec is imported only when a path is: not for a folder that holds a
    marker file (a virtual environment, a cache), a .git folder (which the versioned
    mode leaves out), an ignore file, or the plan's rules."""
    make_tree(backup.src, {
        "proj": {".git": {"HEAD": "ref\n"}, "main.py": "print()\n",
                 ".backupignore": "*.log\n", "run.log": "noise\n"},
        "env": {"pyvenv.cfg": "home = /usr\n", "lib": {"x.py": "x\n"}},
        "cache": {"CACHEDIR.TAG": "Signature: 8a477f597d28d172789f06886806bc55\n",
                  "blob": "b\n"},
        "site": {"templates": {".git": {"HEAD": "ref\n"}, "page.html": "<p>\n"}},
        "notes.txt": "n\n"})
    backup.write_plan(ignore=["*.tmp", "build/"])
    assert _imports_pathspec(backup, "all")           # a first run judges every folder
    assert not _imports_pathspec(backup, "all")
    assert not _imports_pathspec(backup, "snapshot")
    # what was left out stays left out, what was kept is kept
    mirror = {str(p.relative_to(backup.mirror)) for p in backup.mirror.rglob("*")}
    assert {"proj/.git/HEAD", "proj/main.py", "site/templates/.git/HEAD"} <= mirror
    assert not {"env", "cache", "proj/run.log"} & mirror
    history = {p.parent.relative_to(backup.versions).as_posix()
               for p in backup.versions.rglob("*") if p.is_file()}
    assert "site/templates/.git/HEAD" in history      # re-included by **/templates/**
    assert not any(h.startswith("proj/.git") for h in history)
    # a folder changed: judged, by the rules
    (backup.src / "proj" / "more.log").write_text("noise\n")
    assert _imports_pathspec(backup, "all")
    assert not (backup.mirror / "proj" / "more.log").exists()


def test_a_marker_file_removed_brings_its_folder_in(made: Backup) -> None:
    """A folder left out for its marker file is not entered by a run that finds its
    parent in line; the parent's signature notes the marker, so removing it brings
    the folder in with the next run."""
    make_tree(made.src / "a", {"env": {"pyvenv.cfg": "home = /usr\n", "mod.py": "m\n"}})
    code, out, seen = judged(made, "all")
    assert code == OK, out
    assert not (made.mirror / "a" / "env").exists()
    code, out, seen = judged(made, "all")
    assert (code, seen) == (OK, {"snapshot": [], "versioned": []})
    (made.src / "a" / "env" / "pyvenv.cfg").unlink()
    code, out, seen = judged(made, "all")
    assert code == OK, out
    assert seen["snapshot"] == ["a", "a/env"]
    assert (made.mirror / "a" / "env" / "mod.py").read_text() == "m\n"


def test_a_virtualenv_nobody_can_search_is_looked_at_again_when_its_marker_goes(
        nobody_backup) -> None:
    """A folder readable but not searchable (r--): the walk lists pyvenv.cfg in it and
    leaves it out, but the parent's signature cannot see the marker through it (access
    is denied), so it says "no marker" before and after the marker is removed: such a
    folder is entered again every run (no file in the source: a chown of the run as
    nobody changes a file's ctime, so the parent would be judged anyway)."""
    b, python = nobody_backup
    make_tree(b.src, {"venv": {"pyvenv.cfg": "home = x\n", "lib.py": "x\n"}})
    os.chmod(b.src / "venv", 0o444)
    for _ in range(2):
        result = as_nobody(b, python, "snapshot")
        assert result.returncode == OK, result.stdout + result.stderr
    os.chmod(b.src / "venv", 0o755)
    (b.src / "venv/pyvenv.cfg").unlink()
    os.chmod(b.src / "venv", 0o444)
    result = as_nobody(b, python, "snapshot")
    # no longer a virtualenv, and its file cannot be read: FAILED, never a silent skip
    assert result.returncode == PARTIAL, result.stdout + result.stderr
    assert lines(result.stdout, "FAILED") == ["src/venv/lib.py: cannot stat: Permission denied"]
