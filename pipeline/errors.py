"""Errors a user can cause, each with its exit status, and the status table.

The exit status of every command is decided in one place, the reporter's
``complete_run``, from what the run did; this module
names the statuses and carries them from where a problem is found to there.

| status | meaning                                                                 |
|--------|-------------------------------------------------------------------------|
| 0      | everything was done                                                     |
| 1      | some files or folders could not be handled (everything else was),       |
|        | or verify found damage                                                  |
| 2      | the plan or the command line is invalid; nothing was done               |
| 75     | another run holds the lock; nothing was done (EX_TEMPFAIL)              |
| 70     | a bug in snapback (EX_SOFTWARE): the only case with a traceback         |
"""

from __future__ import annotations

from doit.exceptions import TaskFailed

OK, PARTIAL, INVALID, BUG, LOCKED = 0, 1, 2, 70, 75


class SnapbackError(Exception):
    """Something the user can fix; the message says what (one line).

    By default something could not be done (status 1); the subclasses say
    when the command itself was wrong (2) or the backup was busy (75)."""

    status = PARTIAL


class UsageError(SnapbackError):
    """The command line asks for something invalid: nothing is done (status 2)."""

    status = INVALID


class PlanError(UsageError):
    """The plan is invalid; ``problems`` holds one line per problem (exit status 2)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class LockHeld(SnapbackError):
    """Another snapback run holds the destination's lock (status 75)."""

    status = LOCKED


class Failed(TaskFailed):  # type: ignore[misc]  # doit ships no types
    """A task's one-line failure with the exit status it stands for."""

    def __init__(self, message: str, status: int = PARTIAL):
        super().__init__(message)
        self.status = status

    @classmethod
    def of(cls, exc: SnapbackError) -> Failed:
        return cls(str(exc), exc.status)
