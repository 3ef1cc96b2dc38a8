"""Errors a user can cause, each with its exit status.

One handler at the top (``pipeline.cli.fail``) turns them into a one-line
message on stderr: a user mistake never shows a traceback.
"""

from __future__ import annotations


class SnapbackError(Exception):
    """Something the user can fix; the message says what."""

    exit_code = 1


class PlanError(SnapbackError):
    """The plan is invalid; ``problems`` holds one line per problem."""

    exit_code = 2

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class LockHeld(SnapbackError):
    """Another snapback run holds the destination's lock."""

    exit_code = 3
