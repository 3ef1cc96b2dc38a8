"""doit unprotect: make the backup writable again."""

from __future__ import annotations

from doit.exceptions import TaskFailed

from .. import protect
from .base import Context, known_format, needs_backup


def run(ctx: Context, paths: list[str]) -> TaskFailed | None:
    plan = ctx.plan
    needs_backup(plan)
    if plan.protect:
        print("note: the plan says protect: true, so the next backup run protects it again")
    with ctx.locked(required=False):
        known_format(plan)
        changed = protect.unprotect(plan.destination)
    ctx.say(f"unprotected {plan.destination}: {changed} files and folders made writable")
    return None
