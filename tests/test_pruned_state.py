"""The state as of a run whose versions prune dropped: never an older kept version, or
nothing, in place of the one it had; the rest restores, and what is missing is named."""

from __future__ import annotations

import json
import shutil
import subprocess
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
    # a folder all of whose files went then: refused, not restored as an empty folder
    # (helper-46: status 1 and an empty folder)
    sub = backup.doit("restore", str(backup.src / "sub"), "--at", runs[2], "--to", str(into))
    assert sub.returncode == 2, sub.stderr
    assert sub.stderr.startswith(f"snapback: the versioned backup no longer keeps what "
                                 f"src/sub held (1 path) as of {runs[2]}: "), sub.stderr
    assert not into.exists()
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
    # the last change as kept spans a dropped version: said, on stderr (helper-46)
    assert kept.stderr == ("note: prune dropped 1 version of src/notes.txt between "
                           "2026-10-01_18-00-00 and 2026-10-02_18-00-00: this diff spans "
                           "them\n")
    last = backup.doit("diff", str(backup.src / "notes.txt"))
    assert (last.returncode, last.stderr) == (0, kept.stderr), last.stderr
    assert last.stdout == kept.stdout
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


def one_file_twice_then_pruned(b: Backup) -> list[str]:
    """The source's one file written at 09:00 and 18:00, the first version pruned: the
    two run ids."""
    runs = []
    for i, moment in enumerate(("2026-10-01T09:00:00", "2026-10-01T18:00:00")):
        (b.src / "only.txt").write_text(f"version {i}\n")
        at(b, moment, "versioned")
        runs.append(json.loads(b.runs()[-1])["run_id"])
    assert at(b, "2026-10-03T00:00:00", "prune", "--keep-daily", "5").returncode == 0
    return runs


def test_a_source_whose_every_version_then_went_is_refused(backup: Backup) -> None:
    runs = one_file_twice_then_pruned(backup)
    into = backup.base / "r"
    result = backup.doit("restore", str(backup.src), "--at", runs[0], "--to", str(into))
    assert result.returncode == 2, result.stdout + result.stderr
    refused = (f"snapback: the versioned backup no longer keeps what src held (1 path) as "
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


def expired(b: Backup, spec: dict, gone: list[str]) -> tuple[str, subprocess.CompletedProcess]:
    """``spec`` backed up, the folders ``gone`` deleted and backed up, their history
    expired by prune (``keep_deleted``): (the first run, the source restored as of it
    into ``r``)."""
    make_tree(b.src, spec)
    at(b, "2026-10-01T09:00:00", "versioned")
    first = json.loads(b.runs()[-1])["run_id"]
    for name in gone:
        shutil.rmtree(b.src / name)
    at(b, "2026-10-02T09:00:00", "versioned")
    assert at(b, "2026-10-20T09:00:00", "prune", "--keep-deleted", "3d").returncode == 0
    return first, b.doit("restore", str(b.src), "--at", first, "--to", str(b.base / "r"))


def test_a_deleted_folder_whose_history_expired_is_named_by_its_files(backup: Backup) -> None:
    first, whole = expired(backup, {"keep.txt": "k\n", "d": {"y.txt": "y\n", "z.txt": "z\n"}},
                           ["d"])
    into = backup.base / "r"
    assert whole.returncode == 1, whole.stderr
    assert [line.split(":")[0] for line in whole.stderr.splitlines()
            if line.startswith("PRUNED")] == ["PRUNED   src/d/y.txt", "PRUNED   src/d/z.txt"]
    assert "2 path(s) of src were left out" in whole.stderr
    assert sorted(digests(into)) == ["keep.txt"]
    folder = backup.doit("restore", str(backup.src / "d"), "--at", first,
                         "--to", str(backup.base / "d"))
    assert folder.returncode == 2 and "what src/d held (2 paths) as of" in folder.stderr


def test_a_prune_made_by_an_older_snapback_is_said_where_it_may_hide_a_gap(
        backup: Backup) -> None:
    """A catalog pruned before prunes left a trace: restores and diffs as of a time
    before that prune cannot name what it dropped, and say so (helper-46: an older
    version, silently); after it, nothing is said (helper-47).  The catalog alone
    decides: its prune runs up to ``traced_from``, not the run log."""
    import sqlite3
    runs = four_runs(backup)
    db = sqlite3.connect(backup.meta / "catalog.sqlite3")
    db.execute("delete from pruned")                    # as an older snapback left it,
    db.execute("update traced_from set seq = (select max(seq) from runs)")  # then upgraded
    prune_id = db.execute("select run_id from runs order by seq desc limit 1").fetchone()[0]
    db.commit()
    db.close()
    assert prune_id.startswith("prune-")
    log = backup.meta / "runs.jsonl"
    for record in [json.loads(line) for line in log.read_text().splitlines()]:
        assert record.get("traced") is (True if record["mode"] == "prune" else None)
    log.unlink()          # unreadable (helper-47): the catalog's prune runs still say it
    log.mkdir()
    into = backup.base / "r"
    note = (f"note: prune {prune_id}, made by an older snapback, kept no trace of the "
            f"versions it dropped: a file whose version as of {runs[1]} it dropped is "
            "missing here, or at an older version, and is not named\n")
    before = backup.doit("restore", str(backup.src), "--at", runs[1], "--to", str(into))
    assert (before.returncode, before.stderr) == (0, note)
    diff = backup.doit("diff", str(backup.src / "notes.txt"))
    assert diff.returncode == 0 and diff.stderr == (
        f"note: prune {prune_id}, made by an older snapback, kept no trace of the versions "
        "it dropped: this diff may span some\n"), diff.stderr
    # a time after that prune, with no run since: nothing to say
    shutil.rmtree(into)
    after = backup.doit("restore", str(backup.src), "--at", "2026-10-03T12:00:00",
                        "--to", str(into))
    assert (after.returncode, after.stderr) == (0, "")
    shutil.rmtree(into)
    now = backup.doit("restore", str(backup.src), "--to", str(into))
    assert (now.returncode, now.stderr) == (0, "")


def test_a_trace_table_of_a_development_version_is_mended(backup: Backup) -> None:
    """A ``pruned`` table without its ``entry`` column (21d6614 to 1d6b95e, helper-47:
    every restore failed on it): read as it is, mended by the next writer."""
    import sqlite3
    runs = four_runs(backup)
    db = sqlite3.connect(backup.meta / "catalog.sqlite3")
    db.executescript("drop trigger versions_traced; alter table pruned drop column entry; "
                     "create trigger versions_traced after delete on versions begin "
                     "insert or ignore into pruned (id, source, dir, name, live, run_id) "
                     "values (old.id, old.source, old.dir, old.name, old.kind != 'deleted', "
                     "old.run_id); end;")
    db.close()
    into = backup.base / "r"
    read = backup.doit("restore", str(backup.src), "--at", runs[2], "--to", str(into))
    assert read.returncode == 1 and "PRUNED   src/notes.txt" in read.stderr, read.stderr
    (backup.src / "notes.txt").write_text("version 4\n")
    assert at(backup, "2026-10-04T09:00:00", "versioned").returncode == 0
    assert at(backup, "2026-10-05T09:00:00", "prune", "--keep-last", "1").returncode == 0
    db = sqlite3.connect(backup.meta / "catalog.sqlite3")
    entries = {e for (e,) in db.execute("select entry from pruned")}
    db.close()
    assert entries == {None, "file"}, entries       # (the new prune's traces say it)


def test_empty_folders_whose_history_expired_are_named(backup: Backup) -> None:
    """helper-47: an empty folder deleted and expired was left out silently."""
    _first, result = expired(backup, {"f.txt": "f\n", "E": {}, "G": {"sub": {}}}, ["E", "G"])
    assert result.returncode == 1, result.stderr
    assert sorted(line.split(":")[0] for line in result.stderr.splitlines()
                  if line.startswith("PRUNED")) == ["PRUNED   src/E", "PRUNED   src/G/sub"]


def test_an_automatic_prune_of_an_older_snapback_is_said_and_one_it_cannot_place(
        backup: Backup) -> None:
    """helper-48: a prune made by ``retention.auto`` runs under the `all` run's id, and
    one of a snapback older still has no run in the catalog at all: the log says they
    pruned.  ``traced_from`` has one row however many runs write (it grew by one a run)."""
    import sqlite3
    runs = four_runs(backup)
    db = sqlite3.connect(backup.meta / "catalog.sqlite3")
    db.execute("delete from pruned")
    db.execute("update traced_from set seq = (select max(seq) from runs)")
    prune_id = db.execute("select run_id from runs order by seq desc limit 1").fetchone()[0]
    db.execute("update runs set run_id = ? where run_id = ?", (runs[3] + "-2", prune_id))
    db.commit()
    db.close()
    log = backup.meta / "runs.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    for record in records:
        record.pop("traced", None)
        if record["run_id"] == prune_id:
            record["run_id"] = runs[3] + "-2"       # as `all` with retention.auto names it
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    into = backup.base / "r"
    auto = backup.doit("restore", str(backup.src), "--at", runs[1], "--to", str(into))
    assert auto.returncode == 0
    assert auto.stderr.startswith(f"note: prune {runs[3]}-2, made by an older "), auto.stderr
    # a prune record whose run the catalog does not hold: before the latest, any time
    db = sqlite3.connect(backup.meta / "catalog.sqlite3")
    db.execute("delete from runs where run_id = ?", (runs[3] + "-2",))
    db.commit()
    db.close()
    # placed by the log, after the runs logged before it (helper-49: it was said even as
    # of the last run before it, which it cannot have changed: no later version yet)
    shutil.rmtree(into)
    placeless = backup.doit("restore", str(backup.src), "--at", runs[1], "--to", str(into))
    assert placeless.returncode == 0
    assert placeless.stderr.startswith(f"note: prune {runs[3]}-2, made by an older "), \
        placeless.stderr
    shutil.rmtree(into)
    last = backup.doit("restore", str(backup.src), "--at", runs[3], "--to", str(into))
    assert (last.returncode, last.stderr) == (0, "")
    for when in ("2026-10-04T09:00:00", "2026-10-05T09:00:00"):
        (backup.src / "notes.txt").write_text(when + "\n")
        assert at(backup, when, "all").returncode == 0
    db = sqlite3.connect(backup.meta / "catalog.sqlite3")
    assert db.execute("select count(*) from traced_from").fetchone()[0] == 1
    db.close()


def test_a_source_emptied_by_an_older_snapback_s_prune_is_not_said_empty_alone(
        backup: Backup) -> None:
    """helper-49: every version a source held then dropped by an older snapback's prune
    (no trace): "it was empty then" is all the history can say, and the note says why
    that may not be so."""
    import sqlite3
    runs = one_file_twice_then_pruned(backup)
    db = sqlite3.connect(backup.meta / "catalog.sqlite3")
    db.execute("delete from pruned")
    db.execute("update traced_from set seq = (select max(seq) from runs)")
    prune_id = db.execute("select run_id from runs order by seq desc limit 1").fetchone()[0]
    db.commit()
    db.close()
    assert at(backup, "2026-10-03T00:05:00", "versioned").returncode == 0   # (its folder row)
    result = backup.doit("restore", str(backup.src), "--at", runs[0],
                         "--to", str(backup.base / "r"))
    assert result.returncode == 0, result.stderr
    assert "it was empty then" in result.stdout
    assert result.stderr.startswith(f"note: prune {prune_id}, made by an older "), result.stderr
