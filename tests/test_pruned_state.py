"""The state as of a run whose versions prune dropped: never an older kept version, or
nothing, in place of the one it had; the rest restores, and what is missing is named."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from support import Backup, at, digests, make_tree


def four_runs(b: Backup) -> list[str]:
    """notes.txt changed in every run (two a day), keep.txt written once: run ids."""
    make_tree(b.src, {"keep.txt": "kept all along\n", "sub": {"deep.txt": "deep 0\n"}})
    states = []
    for i, moment in enumerate(("2026-10-01T09:00:00", "2026-10-01T18:00:00",
                                "2026-10-02T09:00:00", "2026-10-02T18:00:00")):
        (b.src / "notes.txt").write_text(f"version {i}\n" * 3)
        (b.src / "sub" / "deep.txt").write_text(f"deep {i}\n")
        at(b, moment, "versioned")
        states.append(json.loads(b.runs()[-1])["run_id"])
    # the newest of each day stays: the runs at 09:00 lose notes.txt's and deep.txt's
    # versions, and no older one of the same day stands for them
    assert at(b, "2026-10-03T00:00:00", "prune", "--keep-daily", "5").returncode == 0
    return states


def test_a_folder_as_of_a_run_whose_versions_went_restores_the_rest_and_names_them(
        backup: Backup) -> None:
    runs = four_runs(backup)
    into = backup.base / "r"
    result = backup.doit("restore", str(backup.src), "--at", runs[2], "--to", str(into))
    assert result.returncode == 1, result.stdout + result.stderr
    # the kept file is there, exactly; the two whose version then went are not there at
    # all (before: version 1 of each, a state that never existed, with status 0)
    assert digests(into) == {"keep.txt": digests(backup.src)["keep.txt"]}
    assert "PRUNED   src/notes.txt: its version as of " + runs[2] + " is no longer kept" \
        in result.stderr, result.stderr
    assert "PRUNED   src/sub/deep.txt: its version as of " in result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == (
        f"snapback: 2 path(s) of src were left out: prune dropped their versions as of "
        f"{runs[2]} (first: src/notes.txt); everything else was restored")
    # a run whose every version is kept restores whole, status 0
    shutil.rmtree(into)
    whole = backup.doit("restore", str(backup.src), "--at", runs[1], "--to", str(into))
    assert whole.returncode == 0, whole.stderr
    assert (into / "notes.txt").read_text() == "version 1\n" * 3
    assert (into / "sub" / "deep.txt").read_text() == "deep 1\n"


def test_a_file_as_of_such_a_run_is_refused_and_diff_too(backup: Backup) -> None:
    runs = four_runs(backup)
    into = backup.base / "r"
    one = backup.doit("restore", str(backup.src / "notes.txt"), "--at", runs[2],
                      "--to", str(into))
    assert one.returncode == 2, one.stdout + one.stderr
    assert one.stderr == (f"snapback: the versioned backup no longer keeps src/notes.txt as "
                          f"of {runs[2]}: prune dropped the versions from then (the oldest "
                          f"kept is from 2026-10-01_18-00-00; doit history "
                          f"{backup.src / 'notes.txt'} lists the versions kept)\n")
    assert not into.exists()
    # the first run: no version from then or before is kept
    first = backup.doit("restore", str(backup.src / "notes.txt"), "--at", runs[0],
                        "--to", str(into))
    assert first.returncode == 2 and "no longer keeps src/notes.txt as of" in first.stderr
    # a folder all of whose files went then: the folder, and what went is named
    sub = backup.doit("restore", str(backup.src / "sub"), "--at", runs[2], "--to", str(into))
    assert sub.returncode == 1, sub.stderr
    assert "PRUNED   src/sub/deep.txt: its version as of" in sub.stderr
    assert os.listdir(into) == ["sub"] and os.listdir(into / "sub") == []
    shutil.rmtree(into)
    # diff refuses the time too, and still shows the kept versions
    diff = backup.doit("diff", str(backup.src / "notes.txt"), "--at", runs[2])
    assert diff.returncode == 2, diff.stdout + diff.stderr
    assert diff.stderr == (f"snapback: src/notes.txt: its version as of {runs[2]} is no "
                           "longer kept (prune dropped it); doit history lists the versions "
                           "kept\n")
    against = backup.doit("diff", str(backup.src / "notes.txt"), "--at", runs[3],
                          "--against", runs[2])
    assert against.returncode == 2 and "as of " + runs[2] in against.stderr
    kept = backup.doit("diff", str(backup.src / "notes.txt"), "--at", runs[3],
                       "--against", runs[1])
    assert kept.returncode == 0 and "+version 3" in kept.stdout, kept.stderr
    # a kept run of the file restores exactly
    ok = backup.doit("restore", str(backup.src / "notes.txt"), "--at", runs[3],
                     "--to", str(into))
    assert ok.returncode == 0 and (into / "notes.txt").read_text() == "version 3\n" * 3


def test_an_expired_deleted_file_is_absent_at_a_later_time_and_lost_before(
        backup: Backup) -> None:
    make_tree(backup.src, {"old.txt": "old\n", "live.txt": "live\n"})
    at(backup, "2026-10-01T10:00:00", "versioned")
    first = json.loads(backup.runs()[-1])["run_id"]
    (backup.src / "old.txt").unlink()
    at(backup, "2026-10-02T10:00:00", "versioned")
    second = json.loads(backup.runs()[-1])["run_id"]
    assert at(backup, "2026-10-25T10:00:00", "prune", "--keep-deleted", "7d").returncode == 0
    into: Path = backup.base / "r"
    # after its deletion: absent, as it was; nothing is missing
    after = backup.doit("restore", str(backup.src), "--at", second, "--to", str(into))
    assert after.returncode == 0, after.stderr
    assert sorted(digests(into)) == ["live.txt"]
    # before it: it was there, and its history expired: named, not silently left out
    shutil.rmtree(into)
    before = backup.doit("restore", str(backup.src), "--at", first, "--to", str(into))
    assert before.returncode == 1, before.stderr
    assert "PRUNED   src/old.txt: its version as of " + first in before.stderr
    assert sorted(digests(into)) == ["live.txt"]
    # the file itself: as of then, refused as pruned; now, said to be gone with its
    # history (helper-45: "nothing of it is in the backup")
    one = backup.doit("restore", str(backup.src / "old.txt"), "--at", first,
                      "--to", str(backup.base / "one"))
    assert one.returncode == 2 and "no longer keeps src/old.txt as of " + first in one.stderr
    now = backup.doit("restore", str(backup.src / "old.txt"), "--to", str(backup.base / "one"))
    assert (now.returncode, now.stderr) == (2, "snapback: the versioned backup no longer "
                                            "keeps src/old.txt: it was deleted, and prune "
                                            "dropped its history (keep_deleted)\n")
    later = backup.doit("restore", str(backup.src / "old.txt"), "--at", second,
                        "--to", str(backup.base / "one"))
    assert later.returncode == 2 and "did not exist at " + second in later.stderr
    shown = backup.doit("history", str(backup.src / "old.txt"))
    assert (shown.returncode, shown.stdout) == (0, "src/old.txt: no versions kept: it was "
                                                "deleted, and prune dropped its history "
                                                "(keep_deleted)\n"), shown.stderr
    assert not (backup.base / "one").exists()


def test_a_source_whose_every_version_then_went_is_refused(backup: Backup) -> None:
    runs = []
    for i, moment in enumerate(("2026-10-01T09:00:00", "2026-10-01T18:00:00")):
        (backup.src / "only.txt").write_text(f"version {i}\n")
        at(backup, moment, "versioned")
        runs.append(json.loads(backup.runs()[-1])["run_id"])
    assert at(backup, "2026-10-03T00:00:00", "prune", "--keep-daily", "5").returncode == 0
    into = backup.base / "r"
    result = backup.doit("restore", str(backup.src), "--at", runs[0], "--to", str(into))
    assert result.returncode == 2, result.stdout + result.stderr
    refused = (f"snapback: the versioned backup no longer keeps what src held (1 file) as "
               f"of {runs[0]}: prune dropped the versions from then (the oldest kept is from "
               f"2026-10-01_18-00-00; doit history {backup.src} lists the versions kept)\n")
    assert result.stderr == refused
    assert not into.exists()
    # once a later run has brought the source's folder in line again (helper-45: "it
    # was empty then", status 0), the same
    assert at(backup, "2026-10-03T00:05:00", "all").returncode == 0
    again = backup.doit("restore", str(backup.src), "--at", runs[0], "--to", str(into))
    assert (again.returncode, again.stderr) == (2, refused)
    assert not into.exists()
