"""doit check: the remote against the catalog (sizes, sha256); exit 1 on any problem."""

from __future__ import annotations

from doit.exceptions import TaskFailed

from .. import offsite, rclone
from ..errors import SnapbackError
from .base import Context


def run(ctx: Context, paths: list[str]) -> TaskFailed | None:
    plan = ctx.plan
    if paths:
        raise offsite.OffsiteUsage("check compares the whole remote: it takes no PATH")
    rclone.remote_root(plan)
    if not plan.meta_dir.exists():
        raise SnapbackError(f"no backup at {plan.destination} to compare with "
                            "(on a new machine: snapback fetch first)")
    with ctx.reading() as catalog:
        problems, summary = offsite.check(plan, catalog)
    for line in problems:
        print(line)
    print(summary)
    if problems:
        return TaskFailed(f"the remote {rclone.remote_root(plan)} has {len(problems)} "
                          "problem(s)")
    return None
