"""prune removes the version folders it empties (``<name>_diffs/``,
``<name>_versions/``), never one that holds anything, never through a link; and
``retention.keep_last: 0`` in the plan and ``--keep-last 0`` are refused, not
read as "no rule"."""

from __future__ import annotations

import os
import re
from pathlib import Path

from support import Backup, at, rebuilt

DAYS = [f"2026-10-{d:02d}" for d in range(1, 29)]


def daily_history(b: Backup, days: list[str]) -> list[bytes]:
    """One text file changed once a day (each later version a diff); every version."""
    out: list[bytes] = []
    for day in days:
        data = f"{day}\n".encode() * 3 + b"".join(out[-1:])[:200]
        (b.src / "notes.txt").write_bytes(data)
        at(b, f"{day}T10:00:00", "versioned")
        out.append(data)
    return out


def kept_versions(b: Backup) -> list[bytes]:
    return [v for v in rebuilt(b, "notes.txt") if v is not None]


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def binary_history(b: Backup, days: list[str]) -> list[bytes]:
    """A binary file changed once a day: each later version is a full copy."""
    out = []
    for day in days:
        data = b"\x00\x01" + day.encode() * 50
        (b.src / "photo.raw").write_bytes(data)
        at(b, f"{day}T10:00:00", "versioned")
        out.append(data)
    return out


def test_a_prune_that_drops_every_diff_removes_the_diffs_folder(backup: Backup) -> None:
    versions = daily_history(backup, DAYS[:4])
    hist = backup.versions / "notes.txt"
    assert "notes.txt_diffs" in entries(hist)
    result = at(backup, "2026-11-01T00:00:00", "prune", "--keep-last", "1")
    assert "src/notes.txt: 3 of 4 versions pruned" in result.stdout
    (baseline,) = entries(hist)               # the newest version, now the baseline, whole
    assert re.fullmatch(r"notes-baseline-2026-10-04-p\d+\.txt", baseline), baseline
    assert kept_versions(backup) == versions[-1:]
    assert backup.doit("verify", "--deep").returncode == 0


def test_a_prune_that_drops_every_full_copy_removes_the_versions_folder(backup: Backup) -> None:
    versions = binary_history(backup, DAYS[:3])
    hist = backup.versions / "photo.raw"
    assert "photo.raw_versions" in entries(hist)
    at(backup, "2026-11-01T00:00:00", "prune", "--keep-last", "1")
    (baseline,) = entries(hist)
    assert re.fullmatch(r"photo-baseline-2026-10-03-p\d+\.raw", baseline), baseline
    assert (hist / baseline).read_bytes() == versions[-1]
    assert backup.doit("verify", "--deep").returncode == 0


def test_a_folder_that_still_holds_a_diff_stays(backup: Backup) -> None:
    daily_history(backup, DAYS[:4])
    at(backup, "2026-11-01T00:00:00", "prune", "--keep-last", "2")
    hist = backup.versions / "notes.txt"
    assert "notes.txt_diffs" in entries(hist)
    assert len(entries(hist / "notes.txt_diffs")) == 1


def test_an_empty_diffs_folder_left_earlier_goes_at_the_next_prune_not_in_a_dry_run(
        backup: Backup) -> None:
    binary_history(backup, DAYS[:2])
    hist = backup.versions / "photo.raw"
    (hist / "photo.raw_diffs").mkdir()                   # as an earlier prune left it
    dry = at(backup, "2026-11-01T00:00:00", "prune", "--dry-run", "--keep-last", "5")
    assert dry.returncode == 0
    assert "photo.raw_diffs" in entries(hist)
    at(backup, "2026-11-01T00:00:00", "prune", "--keep-last", "5")   # drops nothing
    assert "photo.raw_diffs" not in entries(hist)
    assert "photo.raw_versions" in entries(hist)         # it holds the second version


def test_a_link_where_the_diffs_folder_was_is_not_followed(backup: Backup, tmp_path: Path) -> None:
    binary_history(backup, DAYS[:3])
    outside = tmp_path / "outside"
    outside.mkdir()
    hist = backup.versions / "photo.raw"
    os.symlink(outside, hist / "photo.raw_diffs")
    result = at(backup, "2026-11-01T00:00:00", "prune", "--keep-last", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert outside.is_dir() and entries(outside) == []
    assert os.readlink(hist / "photo.raw_diffs") == str(outside)


def test_keep_last_0_in_the_plan_is_a_one_line_error(backup: Backup) -> None:
    daily_history(backup, DAYS[:3])
    before = entries(backup.versions / "notes.txt")
    backup.write_plan(retention={"keep_last": 0})
    result = backup.doit("prune")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{backup.plan}:" in result.stderr
    assert "retention.keep_last: expected a whole number of 1 or more, got 0" in result.stderr
    assert "Traceback" not in result.stderr
    assert entries(backup.versions / "notes.txt") == before


def test_keep_last_0_on_the_command_line_is_a_one_line_error(backup: Backup) -> None:
    daily_history(backup, DAYS[:3])
    before = entries(backup.versions / "notes.txt")
    result = backup.doit("prune", "--keep-last", "0")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "snapback: --keep-last: expected a whole number of 1 or more, got 0"]
    assert entries(backup.versions / "notes.txt") == before
