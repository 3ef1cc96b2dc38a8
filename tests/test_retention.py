"""pipeline/retention.py: which versions the keep rules keep, on synthetic version lists
(and keep_deleted, which prune.plan_history applies to a whole history)."""

from __future__ import annotations

from datetime import datetime

import pytest

from pipeline.catalog import Row
from pipeline.prune import plan_history
from pipeline.retention import Policy, duration, from_mapping

DAY = 86400


def row(id: int, when: datetime, kind: str = "diff") -> Row:
    """A version recorded at ``when`` (local time, as the rules bucket it)."""
    return Row(id=id, source="src", dir=b"", name=b"f", entry="file", kind=kind,
               time=when.strftime("%Y-%m-%d_%H-%M-%S"), run_id=f"r{id}", note="",
               store=b"f", object=None, size=1, sha256=None, mode=0o644, mtime_ns=0,
               target=None, recorded=when.timestamp(), object_sha256=None)


def versions(*stamps: str) -> list[Row]:
    """Versions oldest first, ids 1..n, the first a baseline."""
    return [row(i, datetime.fromisoformat(s), "baseline" if i == 1 else "diff")
            for i, s in enumerate(stamps, 1)]


def kept_ids(policy: Policy, rows: list[Row], now: str = "2026-12-31T23:00") -> list[int]:
    return [r.id for r in policy.keep(rows, datetime.fromisoformat(now).timestamp())]


@pytest.mark.parametrize("text, seconds", [
    ("30d", 30 * DAY), ("12h", 12 * 3600), ("2w", 14 * DAY), ("6m", 180 * DAY),
    ("1y", 365 * DAY), (" 7 d ", 7 * DAY), ("0d", 0),
])
def test_durations(text: str, seconds: int) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "d", "1.5d", "30 days", "-1d", "3D", "", 30, None,
                                  ["1d"]])
def test_what_is_not_a_duration(text) -> None:
    assert duration(text) is None


def test_no_rule_keeps_everything_and_no_version_keeps_nothing() -> None:
    rows = versions("2026-01-01T10:00", "2026-01-02T10:00")
    assert Policy().empty and not Policy().prunes_versions
    assert kept_ids(Policy(), rows) == [1, 2]
    assert Policy(keep_last=1).keep([], 0) == []


def test_keep_deleted_alone_prunes_no_version() -> None:
    policy = Policy(keep_deleted=DAY)
    assert not policy.prunes_versions and not policy.empty
    rows = versions("2026-01-01T10:00", "2026-01-02T10:00", "2026-01-03T10:00")
    assert kept_ids(policy, rows) == [1, 2, 3]


def test_keep_last() -> None:
    rows = versions(*(f"2026-01-{d:02d}T10:00" for d in range(1, 8)))
    assert kept_ids(Policy(keep_last=3), rows) == [5, 6, 7]
    assert kept_ids(Policy(keep_last=1), rows) == [7]
    assert kept_ids(Policy(keep_last=50), rows) == [1, 2, 3, 4, 5, 6, 7]


def test_the_newest_version_is_always_kept() -> None:
    rows = versions("2020-01-01T10:00", "2020-06-01T10:00")
    assert kept_ids(Policy(keep_within=3600), rows, now="2026-01-01T00:00") == [2]


def test_keep_within_keeps_every_version_newer_than_the_duration() -> None:
    rows = versions("2026-03-01T10:00", "2026-03-08T09:59", "2026-03-08T10:01",
                    "2026-03-09T10:00", "2026-03-10T10:00")
    # now - 2d = 03-08 10:00: the version one minute older goes, one minute newer stays
    assert kept_ids(Policy(keep_within=2 * DAY), rows, now="2026-03-10T10:00") == [3, 4, 5]


def test_keep_daily_keeps_the_newest_of_each_of_the_last_days_that_have_versions() -> None:
    rows = versions("2026-05-01T09:00", "2026-05-01T18:00",     # 1, 2
                    "2026-05-03T08:00",                           # 3   (05-02: no version)
                    "2026-05-04T07:00", "2026-05-04T08:00",     # 4, 5
                    "2026-05-04T23:59")                           # 6
    assert kept_ids(Policy(keep_daily=1), rows) == [6]
    assert kept_ids(Policy(keep_daily=2), rows) == [3, 6]
    assert kept_ids(Policy(keep_daily=3), rows) == [2, 3, 6]    # days without versions skipped
    assert kept_ids(Policy(keep_daily=9), rows) == [2, 3, 6]


def test_keep_weekly_counts_iso_weeks() -> None:
    rows = versions("2026-06-07T10:00",                  # Sunday, ISO week 23
                    "2026-06-08T10:00",                  # Monday, week 24
                    "2026-06-14T10:00",                  # Sunday, week 24
                    "2026-12-31T10:00",                  # Thursday, 2026-W53
                    "2027-01-01T10:00")                  # Friday, 2026-W53 as well
    assert kept_ids(Policy(keep_weekly=1), rows, now="2027-01-02T00:00") == [5]
    assert kept_ids(Policy(keep_weekly=2), rows, now="2027-01-02T00:00") == [3, 5]
    assert kept_ids(Policy(keep_weekly=3), rows, now="2027-01-02T00:00") == [1, 3, 5]


def test_keep_monthly_counts_calendar_months() -> None:
    rows = versions("2025-12-31T23:00", "2026-01-01T00:30", "2026-01-31T10:00",
                    "2026-03-01T10:00", "2026-03-02T10:00")
    assert kept_ids(Policy(keep_monthly=2), rows) == [3, 5]     # February has none
    assert kept_ids(Policy(keep_monthly=3), rows) == [1, 3, 5]


def test_a_version_is_kept_when_any_rule_keeps_it() -> None:
    rows = versions("2026-01-01T10:00", "2026-02-01T10:00", "2026-02-20T10:00",
                    "2026-02-27T10:00", "2026-02-28T10:00")
    policy = Policy(keep_last=1, keep_monthly=2, keep_within=2 * DAY)
    assert kept_ids(policy, rows, now="2026-02-28T12:00") == [1, 4, 5]


def test_from_mapping_takes_the_rules_and_leaves_out_what_is_unset() -> None:
    policy = from_mapping({"keep_last": 3, "keep_within": 7 * DAY, "keep_daily": None,
                           "auto": True})
    assert policy == Policy(keep_last=3, keep_within=7 * DAY, auto=True)
    assert from_mapping({}) == Policy()


# ---- keep_deleted: the whole history of a file deleted long enough ago ----

def test_keep_deleted_expires_a_history_deleted_long_enough_ago() -> None:
    rows = versions("2026-01-01T10:00", "2026-01-02T10:00")
    rows.append(row(3, datetime(2026, 1, 3, 10), "deleted"))
    policy = Policy(keep_deleted=7 * DAY)
    now = datetime(2026, 1, 10, 11).timestamp()                # 7 days and 1 hour later
    kept, dropped, expires = plan_history(rows, policy, now)
    assert expires and kept == [] and [r.id for r in dropped] == [1, 2]
    soon = datetime(2026, 1, 10, 9).timestamp()                # 1 hour short of 7 days
    kept, dropped, expires = plan_history(rows, policy, soon)
    assert not expires and [r.id for r in kept] == [1, 2] and dropped == []


def test_keep_deleted_never_expires_a_file_that_came_back() -> None:
    rows = versions("2026-01-01T10:00")
    rows.append(row(2, datetime(2026, 1, 2, 10), "deleted"))
    rows.append(row(3, datetime(2026, 1, 3, 10), "diff"))      # back in the source
    kept, dropped, expires = plan_history(rows, Policy(keep_deleted=DAY),
                                          datetime(2027, 1, 1).timestamp())
    assert not expires and [r.id for r in kept] == [1, 3] and dropped == []


def test_a_mode_change_goes_with_the_version_whose_bytes_it_has() -> None:
    rows = versions("2026-01-01T10:00", "2026-01-02T10:00", "2026-01-03T10:00")
    rows.insert(1, row(9, datetime(2026, 1, 1, 12), "meta"))   # after version 1
    kept, dropped, _ = plan_history(rows, Policy(keep_last=2), datetime(2026, 2, 1).timestamp())
    assert [r.id for r in kept] == [2, 3]
    assert sorted(r.id for r in dropped) == [1, 9]
