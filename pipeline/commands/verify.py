"""doit verify [--deep]: every stored file against its checksum."""

from __future__ import annotations

from doit.exceptions import TaskFailed

from .. import verify
from ..show import plural
from .base import Context, needs_backup, no_paths


def run(ctx: Context, paths: list[str], deep: bool = False) -> TaskFailed | None:
    """Check every stored object against its checksum (--deep: rebuild every version)."""
    plan = ctx.plan
    no_paths(paths, "verify checks the whole backup")
    needs_backup(plan)
    with ctx.reading() as catalog:
        checked, problems, unrecorded = verify.verify(
            plan.destination, catalog, deep, {s.name: s.path for s in plan.sources})
        left = verify.leftovers(plan.destination, catalog)
    for problem in problems:
        print(f"{problem.what:<13} {problem.path}: {problem.detail}")
    for label in unrecorded:             # not damage (status 0): a stopped run's copy
        print(f"{'unrecorded':<13} {label}: the mirror holds the source's bytes of now, "
              "copied by a run that stopped before recording them (the next run does)")
    for found in left:                   # not damage (status 0): what a killed run left
        print(f"{'leftover':<13} {found.path}: " + (
            "a partial file of a doit fetch that was killed (the next doit fetch removes it)"
            if found.what == "partial" else "a temporary file of a run that was killed "
            "(the next run that writes there removes it)"))
    ctx.say(f"verify{' --deep' if deep else ''}: {plural(checked, 'object')} checked, "
            f"{plural(len(problems), 'problem')}")
    if problems:
        return TaskFailed(f"the backup at {plan.destination} has "
                          f"{plural(len(problems), 'problem')}")
    return None
