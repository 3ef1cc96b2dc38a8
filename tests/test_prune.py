"""doit prune: retention rules on simulated histories of days and weeks."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

from support import (
    Backup,
    at,
    digests,
    gnu_patch_chain,
    history_of,
    make_tree,
    on_disk,
    rebuilt,
    tree,
)


def daily_history(b: Backup, days: list[str], per_day: int = 1) -> list[bytes]:
    """One text file changed per_day times on each day; returns every version."""
    out = []
    for day in days:
        for hour in range(per_day):
            data = f"{day} {hour}\n".encode() * 3 + b"".join(out[-1:])[:200]
            (b.src / "notes.txt").write_bytes(data)
            at(b, f"{day}T{10 + hour:02d}:00:00", "versioned")
            out.append(data)
    return out


def kept_versions(b: Backup) -> list[bytes]:
    return [v for v in rebuilt(b, "notes.txt") if v is not None]


DAYS = [f"2026-10-{d:02d}" for d in range(1, 29)]


def test_keep_last_rebases_the_baseline_and_patch_still_applies(backup: Backup, tmp_path: Path) -> None:
    versions = daily_history(backup, DAYS[:8])
    result = at(backup, "2026-11-01T00:00:00", "prune", "--keep-last", "3")
    assert "src/notes.txt: 5 of 8 versions pruned" in result.stdout
    assert kept_versions(backup) == versions[-3:]
    assert [r.kind for r in history_of(backup, "notes.txt")] == ["baseline", "diff", "diff"]
    assert gnu_patch_chain(backup, "notes.txt", tmp_path) == versions[-3:]
    hist = backup.versions / "notes.txt"
    # the rebased baseline has a name of its own (objects are never rewritten), marked
    # with the prune's run number; a short chain of diffs keeps no whole copy
    names = sorted(p.name for p in hist.iterdir())
    assert names[1:] == ["notes.txt_diffs"]
    assert re.fullmatch(r"notes-baseline-2026-10-06-p\d+\.txt", names[0]), names
    assert len(list((hist / "notes.txt_diffs").iterdir())) == 2
    assert backup.doit("verify", "--deep").returncode == 0


def test_keep_daily_weekly_monthly_and_within(backup: Backup) -> None:
    versions = daily_history(backup, DAYS, per_day=2)       # 56 versions over 4 weeks
    by_day = {d: versions[2 * i + 1] for i, d in enumerate(DAYS)}  # the newest of each day
    at(backup, "2026-10-28T23:00:00", "prune", "--keep-daily", "3")
    assert kept_versions(backup) == [by_day[d] for d in DAYS[-3:]]
    # a second prune with weekly on what is left changes nothing more
    at(backup, "2026-10-28T23:00:00", "prune", "--keep-weekly", "1")
    assert kept_versions(backup) == [by_day[DAYS[-1]]]


def test_keep_weekly_and_monthly_count_calendar_buckets(backup: Backup) -> None:
    days = ["2026-08-03", "2026-08-20", "2026-09-07", "2026-09-09", "2026-09-21", "2026-10-05"]
    versions = daily_history(backup, days)
    at(backup, "2026-10-06T00:00:00", "prune", "--keep-monthly", "2")
    assert kept_versions(backup) == [versions[4], versions[5]]   # newest of Sep and of Oct


def test_keep_within(backup: Backup) -> None:
    versions = daily_history(backup, DAYS[:10])
    at(backup, "2026-10-10T12:00:00", "prune", "--keep-within", "3d")
    assert kept_versions(backup) == versions[-3:]


def test_keep_deleted_expires_old_deletions_only(backup: Backup) -> None:
    make_tree(backup.src, {"old.txt": "old\n", "recent.txt": "recent\n", "live.txt": "live\n"})
    at(backup, "2026-10-01T10:00:00", "versioned")
    (backup.src / "old.txt").unlink()
    at(backup, "2026-10-02T10:00:00", "versioned")
    (backup.src / "recent.txt").unlink()
    at(backup, "2026-10-20T10:00:00", "versioned")
    result = at(backup, "2026-10-25T10:00:00", "prune", "--keep-deleted", "7d")
    assert "src/old.txt: deleted from the source long enough ago" in result.stdout
    assert history_of(backup, "old.txt") == []
    assert not (backup.versions / "old.txt").exists()
    assert [r.kind for r in history_of(backup, "recent.txt")] == ["baseline", "deleted"]
    assert [r.kind for r in history_of(backup, "live.txt")] == ["baseline"]
    assert backup.doit("verify", "--deep").returncode == 0


def test_dry_run_changes_nothing_and_no_rules_prune_nothing(backup: Backup) -> None:
    daily_history(backup, DAYS[:5])

    def state() -> dict:                                        # the lock file is the lock's
        return {k: v for k, v in tree(backup.dest, with_mtime=True).items()
                if k != ".snapback/lock"}

    before = state()
    dry = at(backup, "2026-11-01T00:00:00", "prune", "--dry-run", "--keep-last", "1")
    assert "src/notes.txt: 4 of 5 versions would go" in dry.stdout
    assert state() == before
    none = at(backup, "2026-11-01T00:00:00", "prune")
    assert "nothing is pruned" in none.stdout
    assert state() == before


def test_plan_retention_and_auto_prune_after_all(backup: Backup) -> None:
    backup.write_plan(retention={"keep_last": 2, "auto": True})
    versions = daily_history(backup, DAYS[:3])                 # versioned: no auto prune
    assert len(kept_versions(backup)) == 3
    (backup.src / "notes.txt").write_text("last\n")
    result = at(backup, "2026-10-05T10:00:00", "all")
    assert "pruned   src/notes.txt: 2 of 4 versions pruned" in result.stdout
    assert kept_versions(backup) == [versions[-1], b"last\n"]
    # the run's lines first, then what its prune did (helper-61: the other way round)
    lines = result.stdout.splitlines()
    changed = [i for i, line in enumerate(lines) if line.startswith(("updated", "new"))]
    pruned = [i for i, line in enumerate(lines) if line.startswith(("pruned", "prune:"))]
    assert changed and pruned and max(changed) < min(pruned), result.stdout


def test_a_prune_killed_midway_is_finished_by_a_rerun(backup: Backup) -> None:
    for day in DAYS[:6]:
        for i in range(60):
            (backup.src / f"f{i}.txt").write_text(f"{day} {i}\n" * (20 + i))
        at(backup, f"{day}T10:00:00", "versioned")
    expected = {f"f{i}.txt": [v for v in rebuilt(backup, f"f{i}.txt")][-2:] for i in range(60)}
    # killed at fault-hook points spread over the prune (tests/test_crash_points.py
    # kills a small one at every point), each run going on from where the last stopped
    for kind, nth in (("rename", 1), ("remove", 3), ("rename", 10), ("remove", 25),
                      ("rename", 40), ("remove", 80)):
        killed = backup.doit("prune", "--keep-last", "2", env={"SNAPBACK_FAULT": f"{kind}:{nth}"})
        assert killed.returncode in (-signal.SIGKILL, 0), killed.stdout + killed.stderr
        for name, want in expected.items():                    # never a lost kept version
            got = [v for v in rebuilt(backup, name) if v is not None]
            assert got[-2:] == want, name
    backup.doit("prune", "--keep-last", "2", check=True)
    for name, want in expected.items():
        assert [v for v in rebuilt(backup, name)] == want
    objects = {p for p in backup.versions.rglob("*") if p.is_file() and (
        p.parent.name.endswith(("_diffs", "_versions")) or "-baseline-" in p.name)}
    referenced = {backup.versions / os.fsdecode(r.store) / os.fsdecode(o)
                  for r in backup.catalog() if r.kind in ("baseline", "diff", "full")
                  for o in (r.object, r.copy) if o is not None}
    assert objects == referenced
    assert [p for p in backup.versions.rglob(".~snapback-*")] == []
    assert backup.doit("verify", "--deep").returncode == 0
    stored, rows = digests(backup.versions), backup.catalog()   # finished: a rerun has
    again = backup.doit("prune", "--keep-last", "2", check=True)  # nothing left to do
    assert "prune: 0 versions of 0 files pruned" in again.stdout, again.stdout
    assert digests(backup.versions) == stored and backup.catalog() == rows




def test_prune_reports_the_bytes_it_releases_and_never_grows_the_history(
        backup: Backup) -> None:
    """(issue 24, item 5: the dry run said 15.0 MB, the prune freed 10 MB; small files
    said 0 B; the kept version and the current copy became two files)"""
    import json
    for i in range(6):
        (backup.src / "big.bin").write_bytes(bytes([i]) * 300_000)      # full copies
        (backup.src / "notes.txt").write_text("".join(f"line {n} {i}\n" for n in range(500)))
        at(backup, f"2026-10-0{i + 1}T10:00:00", "versioned")
    before = on_disk(backup.versions)
    dry = at(backup, "2026-11-01T00:00:00", "prune", "--keep-last", "1", "--dry-run").stdout
    at(backup, "2026-11-01T00:00:00", "prune", "--keep-last", "1")
    after = on_disk(backup.versions)
    freed = json.loads(backup.runs()[-1])["bytes"]
    assert after < before                                # never grows
    assert freed == before - after, (freed, before, after)
    said = float(re.search(r"([\d.]+) (KB|MB) freed", dry).group(1))
    unit = 1000 if "KB freed" in dry else 1000_000
    assert abs(said * unit - freed) <= 0.05 * freed + 8192, (dry, freed)


def test_two_prunes_in_one_second_are_two_runs_under_the_catalog_s_ids(backup: Backup) -> None:
    # runs.jsonl and `history` name a prune as the catalog does (what --at takes), one id
    # each, at the time it pruned by (SNAPBACK_NOW too), never the wall clock's second
    daily_history(backup, DAYS[:5])
    for keep in ("3", "2"):
        assert at(backup, "2026-11-01T00:00:00", "prune", "--keep-last", keep).returncode == 0
    records = [json.loads(line) for line in backup.runs()]
    prunes = [r for r in records if r["mode"] == "prune"]
    from pipeline.catalog import Catalog
    cat = Catalog(backup.meta / "catalog.sqlite3", writable=False)
    try:
        order = [run_id for run_id, _started, _upto in cat.run_order()]
    finally:
        cat.close()
    assert [p["run_id"] for p in prunes] == order[-2:]
    assert len(set(order)) == len(order) == 7
    assert [p["started"][:19] for p in prunes] == ["2026-11-01T00:00:00"] * 2
    shown = backup.doit("history", check=True).stdout
    assert all(p["run_id"] in shown for p in prunes), shown


def test_restore_at_a_run_whose_versions_were_pruned_says_so(backup: Backup) -> None:
    daily_history(backup, DAYS[:4])
    first = json.loads(backup.runs()[0])["run_id"]
    assert at(backup, "2026-11-01T00:00:00", "prune", "--keep-last", "2").returncode == 0
    gone = backup.doit("restore", str(backup.src / "notes.txt"), "--at", first,
                       "--to", str(backup.base / "r"))
    assert gone.returncode == 2, gone.stdout + gone.stderr
    assert "snapback: the versioned backup no longer keeps src/notes.txt as of " \
        f"{first}: prune dropped the versions from then (the oldest kept is from " \
        "2026-10-03_10-00-00; doit history " in gone.stderr, gone.stderr
