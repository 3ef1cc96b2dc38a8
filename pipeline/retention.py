"""Retention rules: which versions of a file a prune keeps.

As restic and borg count them: ``keep_last`` N newest versions;
``keep_daily``/``keep_weekly``/``keep_monthly`` N: the newest version in each
of the last N days (ISO weeks, months) that have versions; ``keep_within`` D:
every version newer than D; ``keep_deleted`` D: how long the history of a
file deleted from the source is kept after its deletion.  A version is kept
when any rule keeps it; a file's newest version is always kept.  No rule at
all: nothing is pruned.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

from .catalog import Row

_DURATION = re.compile(r"^\s*(\d+)\s*([hdwmy])\s*$")
_UNIT = {"h": 3600, "d": 86400, "w": 7 * 86400, "m": 30 * 86400, "y": 365 * 86400}


def duration(text: Any) -> int | None:
    """Seconds in ``30d``, ``12h``, ``2w``, ``6m``, ``1y``; None if not a duration."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    return int(match.group(1)) * _UNIT[match.group(2)] if match else None


class Policy(NamedTuple):
    keep_within: int | None = None        # seconds
    keep_last: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_deleted: int | None = None       # seconds
    auto: bool = False

    @property
    def prunes_versions(self) -> bool:
        return any(v is not None for v in (self.keep_within, self.keep_last, self.keep_daily,
                                            self.keep_weekly, self.keep_monthly))

    @property
    def empty(self) -> bool:
        return not self.prunes_versions and self.keep_deleted is None

    def keep(self, versions: list[Row], now: float) -> list[Row]:
        """The versions (oldest first, as given) that this policy keeps."""
        if not versions:
            return []
        if not self.prunes_versions:
            return list(versions)
        newest_first = list(reversed(versions))
        kept = {newest_first[0].id}
        if self.keep_last:
            kept.update(r.id for r in newest_first[: self.keep_last])
        if self.keep_within is not None:
            kept.update(r.id for r in versions if r.recorded >= now - self.keep_within)
        for count, bucket in ((self.keep_daily, _day), (self.keep_weekly, _week),
                              (self.keep_monthly, _month)):
            if count:
                kept.update(_newest_per_bucket(newest_first, count, bucket))
        return [r for r in versions if r.id in kept]


def _day(row: Row) -> tuple[int, ...]:
    return datetime.fromtimestamp(row.recorded).date().timetuple()[:3]


def _week(row: Row) -> tuple[int, ...]:
    return tuple(datetime.fromtimestamp(row.recorded).isocalendar()[:2])


def _month(row: Row) -> tuple[int, ...]:
    stamp = datetime.fromtimestamp(row.recorded)
    return stamp.year, stamp.month


def _newest_per_bucket(newest_first: list[Row], count: int,
                       bucket: Callable[[Row], tuple[int, ...]]) -> set[int]:
    out: set[int] = set()
    seen: set[tuple[int, ...]] = set()
    for row in newest_first:
        key = bucket(row)
        if key in seen:
            continue
        seen.add(key)
        out.add(row.id)
        if len(seen) == count:
            break
    return out


RULES = ("keep_within", "keep_last", "keep_daily", "keep_weekly", "keep_monthly", "keep_deleted")


def from_mapping(data: dict[str, Any]) -> Policy:
    """A Policy from checked plan values (durations already in seconds)."""
    values: dict[str, Any] = {k: data[k] for k in (*RULES, "auto") if data.get(k) is not None}
    return Policy(**values)


def check_duration(value: Any) -> tuple[Any, str | None]:
    seconds = duration(value)
    if seconds is None:
        return None, f"expected a duration such as 30d, 12h, 2w, 6m or 1y, got {value!r}"
    return seconds, None


def check_count(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value, None
    return None, f"expected a whole number of 1 or more, got {value!r}"


CHECKS: dict[str, Callable[[Any], tuple[Any, str | None]]] = {
    "keep_within": check_duration, "keep_last": check_count, "keep_daily": check_count,
    "keep_weekly": check_count, "keep_monthly": check_count, "keep_deleted": check_duration,
}


def from_options(base: Policy, given: dict[str, Any]) -> Policy:
    """``base`` (the plan's rules) with the rules given on the command line
    (``--keep-last 3``...), each checked as the plan's are; UsageError names the first
    bad one."""
    from .errors import UsageError
    changes: dict[str, Any] = {}
    for key, check in CHECKS.items():
        if given.get(key) in (None, ""):
            continue
        raw = given[key]
        if check is check_count and isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
            raw = int(raw)                       # options written after PATH come as words
        value, problem = check(raw)
        if problem is not None:
            raise UsageError(f"--{key.replace('_', '-')}: {problem}")
        changes[key] = value
    return base._replace(**changes)
