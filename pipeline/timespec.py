"""TIME as users write it: ISO dates and times, version stamps, run ids.

A time is the *end* of what it names: ``2026-11-23`` is the end of that day,
``2026-11-23 14:30`` the end of that minute, so "as it was on the 23rd"
includes every backup taken that day.  Local time unless an offset is given.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from .errors import UsageError

RUN_ID = re.compile(r"^\d{8}-\d{6}-\d{4}$")
STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2})_(\d{2})-(\d{2})-(\d{2})(?:_\d+)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MINUTE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?:[+-]\d{2}:?\d{2}|Z)?$")


class BadTime(UsageError):
    """A TIME that cannot be read."""


def parse(text: str) -> float:
    """The unix time that ``text`` ends at (a run id is not a time: see
    ``commands.base.when``)."""
    text = text.strip()
    stamp = STAMP.match(text)
    if stamp:
        text = f"{stamp.group(1)}T{stamp.group(2)}:{stamp.group(3)}:{stamp.group(4)}"
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadTime(f"cannot read the time {text!r}: use 2026-11-23, 2026-11-23T14:30, "
                      "'2026-11-23 14:30:15' or a run id from doit history") from None
    if _DATE.match(text):
        span = timedelta(days=1)
    elif _MINUTE.match(text):
        span = timedelta(minutes=1)
    else:
        span = timedelta(seconds=1)
    try:
        if moment.tzinfo is None:
            moment = moment.astimezone()      # local time
        return (moment + span).timestamp() - 1e-6
    except (OverflowError, ValueError, OSError):
        raise BadTime(f"the time {text!r} is out of range") from None
