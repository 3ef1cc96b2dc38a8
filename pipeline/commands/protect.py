"""doit protect: make the backup read-only (backup runs still update it)."""

from __future__ import annotations

from doit.exceptions import TaskFailed

from .. import protect
from .base import Context, known_format, needs_backup


def run(ctx: Context, paths: list[str]) -> TaskFailed | None:
    plan = ctx.plan
    needs_backup(plan)
    with ctx.locked(required=False):
        known_format(plan)
        changed = protect.protect(plan.destination)
    ctx.say(f"protected {plan.destination}: {changed} files and folders made read-only")
    return None
