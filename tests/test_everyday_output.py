"""What a person sees every day (issue 16) and what the adversary of issue 17 found:
one line per file in `doit all`, folder-only changes reported and recorded, one set
of options per run, no report written into the backup, human sizes and plurals."""

from __future__ import annotations

import json
import os
import signal

from support import Backup, hold_with_stopped_run, lines, make_tree


def test_doit_all_prints_each_file_once_labelled_by_the_modes_that_stored_it(
        backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "a\n", "d": {"b.txt": "b\n"}, ".git": {"HEAD": "x\n"}})
    out = backup.doit("all", check=True).stdout
    file_lines = [line for line in out.splitlines() if line.startswith("new ")]
    assert sorted(file_lines) == ["new      [mirror+history] src/a.txt",
                                  "new      [mirror+history] src/d/b.txt",
                                  "new      [mirror]         src/.git/HEAD"]
    single = backup.doit("snapshot", check=True)          # one mode: no label
    assert lines(single.stdout, "new") == []
    (backup.src / "a.txt").write_text("a2\n")
    assert "updated  src/a.txt" in backup.doit("snapshot", check=True).stdout


def test_a_new_empty_folder_and_a_folder_chmod_are_reported_and_recorded(
        backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "a\n", "m": {"x.txt": "x\n"}})
    backup.doit("all", check=True)
    runs = len(backup.runs())
    (backup.src / "empty").mkdir()
    out = backup.doit("all", check=True).stdout
    assert "new      [mirror+history] src/empty/" in out.splitlines()
    assert len(backup.runs()) == runs + 1                  # the run is in the history
    os.chmod(backup.src / "m", 0o750)
    out = backup.doit("all", "--note", "chmod", check=True).stdout
    assert "updated  [mirror+history] src/m/ (mode 0750)" in out.splitlines()
    assert json.loads(backup.runs()[-1])["note"] == "chmod"
    assert os.stat(backup.mirror / "m").st_mode & 0o777 == 0o750


def test_options_belong_to_the_whole_run_so_they_are_written_once(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "a\n"})
    result = backup.doit("snapshot", "--note", "N1", "versioned", "--note", "N2")
    assert result.returncode == 2
    assert "write them once, after the last command" in result.stderr
    assert not backup.dest.exists()                        # nothing was done
    backup.doit("snapshot", "versioned", "--note", "N2", check=True)
    assert [json.loads(r)["note"] for r in backup.runs()] == ["N2", "N2"]


def test_a_report_inside_the_destination_is_refused(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "a\n"})
    backup.doit("snapshot", check=True)
    result = backup.doit("snapshot", "--report", str(backup.dest / "r.json"))
    assert result.returncode == 2
    assert "inside the backup destination" in result.stderr
    assert not (backup.dest / "r.json").exists()


def test_keep_counts_of_zero_are_usage_errors(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "a\n"})
    backup.doit("versioned", check=True)
    for value in ("0", "-1"):
        result = backup.doit("prune", "--keep-last", value)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "1 or more" in result.stderr


def test_the_history_grows_by_the_diff_not_by_the_file(backup: Backup) -> None:
    big = "".join(f"line {n}\n" for n in range(3000))           # ~26 KB of text
    make_tree(backup.src, {"big.txt": big})
    backup.doit("versioned", check=True)
    (backup.src / "big.txt").write_text(big + "one more\n")
    backup.doit("versioned", check=True)
    # the second version: a diff (the newest version is rebuilt from the baseline)
    assert 0 < json.loads(backup.runs()[-1])["bytes"] < 1000
    (backup.src / "big.txt").write_text(big + "one more\ntwo more\n")
    backup.doit("versioned", check=True)
    record = json.loads(backup.runs()[-1])
    assert 0 < record["bytes"] < 1000       # and the next
    out = backup.doit("history", check=True).stdout
    assert " KB" in out and "versioned" in out


def test_history_lists_prunes_with_plurals_and_human_sizes(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "v1\n"})
    for n in range(2, 5):
        backup.doit("versioned", check=True)
        (backup.src / "a.txt").write_text(f"v{n}\n")
    backup.doit("versioned", check=True)
    out = backup.doit("prune", "--keep-last", "1", check=True).stdout
    assert out.splitlines()[-1].startswith("prune: 3 versions of 1 file pruned, ")
    history = backup.doit("history", check=True).stdout
    assert "3 versions of 1 file dropped" in history


def test_the_diff_error_names_the_first_stored_version(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "v1\n"})
    backup.doit("versioned", check=True)
    first = backup.catalog()[-1].time
    result = backup.doit("diff", "src/a.txt")
    assert result.returncode == 2
    assert f"(first stored {first})" in result.stderr


def test_a_note_on_a_run_that_changed_nothing_is_said_to_be_dropped(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "a\n"})
    backup.doit("snapshot", check=True)
    out = backup.doit("snapshot", "--note", "why", check=True).stdout
    assert "its --note was not kept" in out


def test_the_lock_names_the_command_that_holds_it(backup: Backup) -> None:
    make_tree(backup.src, {f"f{n}.txt": "x\n" for n in range(50)})
    holder = hold_with_stopped_run(backup, "all")
    try:
        result = backup.doit("snapshot")
        assert result.returncode == 75
        assert "doit all)" in result.stderr
    finally:
        os.kill(holder.pid, signal.SIGCONT)
        holder.communicate(timeout=120)
