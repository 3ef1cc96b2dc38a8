"""Errors a user can cause, each with its exit status.

The recovery commands turn them into a failed task whose one-line message our
reporter prints; a plan error exits 2 from dodo.py (``config.load_plan_or_exit``):
a user mistake never shows a traceback.
"""

from __future__ import annotations


class SnapbackError(Exception):
    """Something the user can fix; the message says what (one line)."""


class PlanError(SnapbackError):
    """The plan is invalid; ``problems`` holds one line per problem (exit status 2)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class LockHeld(SnapbackError):
    """Another snapback run holds the destination's lock."""
